"""The quantization check: fidelity metrics, int8 that breaks on huge activation ranges, float64, MobileNetV2, LSTM."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

import checkrun
from checks._compression import Measured, fidelity, pareto_frontier, within_bound
from conftest import run_cli
from tfaudit.api import severity_rank


def audit(path: str, check_class, budget: str = "quick", options: dict | None = None) -> checkrun.Outcome:
    return checkrun.run_in_process(check_class(), path, budget, options)


def build_huge_range(path: str) -> str:
    """x [None, 32] -> scores [None, 32]; one hidden unit is scaled 10^4 times larger than the others.

    The huge unit does not reach the output, but it sets the int8 scale of the hidden activations
    (one scale per tensor), which rounds every other unit to a step or two: full-integer int8
    wipes out most of the signal, while float16 keeps it.
    """
    import tensorflow as tf

    rng = np.random.default_rng(0)

    class HugeRange(tf.Module):
        def __init__(self):
            super().__init__()
            self.w1 = tf.Variable(rng.standard_normal((32, 64)).astype(np.float32))
            scale = np.ones(64, np.float32)
            scale[0] = 1e4
            self.scale = tf.Variable(scale)
            self.w2 = tf.Variable(rng.standard_normal((63, 32)).astype(np.float32))

        @tf.function(input_signature=[tf.TensorSpec([None, 32], tf.float32, name="x")])
        def serve(self, x):
            hidden = tf.nn.relu(tf.matmul(x, self.w1)) * self.scale
            return {"scores": tf.matmul(hidden[:, 1:], self.w2)}

    module = HugeRange()
    tf.saved_model.save(module, path, signatures={"serving_default": module.serve})
    return path


@pytest.fixture(scope="module")
def huge_range(tmp_path_factory):
    return build_huge_range(str(tmp_path_factory.mktemp("huge") / "model"))


# --- pure functions -----------------------------------------------------------------------------


def test_fidelity_metrics_and_top1():
    rng = np.random.default_rng(0)
    reference = [{"scores": rng.standard_normal((50, 10)).astype(np.float32)}]
    same = fidelity(reference, reference)
    assert {k: same[k] for k in ("relative_l2", "max_abs", "cosine", "top1_agreement")} == {"relative_l2": 0.0, "max_abs": 0.0, "cosine": 1.0, "top1_agreement": 1.0}
    assert same["top1"]["samples"] == 50 and same["top1"]["flips"] == 0
    noisy = [{"scores": reference[0]["scores"] + 0.001 * rng.standard_normal((50, 10)).astype(np.float32)}]
    small = fidelity(reference, noisy)
    assert 0 < small["relative_l2"] < 0.01 and small["cosine"] > 0.9999 and within_bound(small, 0.01)
    flipped = [{"scores": -reference[0]["scores"]}]
    bad = fidelity(reference, flipped)
    assert bad["relative_l2"] == pytest.approx(2.0) and bad["cosine"] == pytest.approx(-1.0) and bad["top1_agreement"] < 0.2
    assert not within_bound(bad, 0.01)
    # Not class scores (rank 3): no top-1.
    assert fidelity([{"y": np.ones((2, 3, 4))}], [{"y": np.ones((2, 3, 4))}])["top1_agreement"] is None


def test_pareto_frontier_drops_dominated_variants():
    from tfaudit.measure import Timing

    def variant(name, size, ms, loss):
        return Measured(name, size_bytes=size, timing=Timing((ms,) * 5, 0), fidelity={"relative_l2": loss})

    results = [variant("float32", 100, 1.0, 0.0), variant("float16", 50, 1.0, 0.0), variant("int8", 25, 2.0, 0.1), variant("bad", 60, 3.0, 0.2)]
    assert pareto_frontier(results) == ["float16", "int8"]


def test_modules_do_not_import_tensorflow():
    code = "import sys, checks.quantization, checks.pruning; assert 'tensorflow' not in sys.modules and 'ai_edge_litert' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


# --- the check, in process ------------------------------------------------------------------------


@pytest.mark.slow
def test_huge_activation_range_gets_no_full_int8_recommendation(huge_range):
    from checks.quantization import QuantizationCheck

    outcome = audit(huge_range, QuantizationCheck)
    assert "quantization/full-int8" not in outcome.findings
    finding = outcome.findings["quantization/full-int8-fidelity"]
    variants = finding.evidence["variants"]
    assert variants["full-int8"]["fidelity"]["relative_l2"] > 0.1  # measured, far beyond the 0.01 bound
    assert finding.risk.fidelity_loss == variants["full-int8"]["fidelity"]["relative_l2"]
    assert finding.evidence["debugger"]["layers"], "the debugger names layers"
    assert "rmse/scale" in finding.summary and "selective" in finding.evidence
    # A weight-only variant is within the bound and recommended instead, with a measured size saving.
    recommended = [f for f in outcome.findings.values() if f.id in ("quantization/float16", "quantization/dynamic-range-int8")]
    assert len(recommended) == 1 and recommended[0].savings["size_pct"].value > 0
    assert recommended[0].risk.fidelity_loss <= 0.01
    assert "tf.lite.TFLiteConverter.from_saved_model" in recommended[0].fix.code
    # The metrics are the numbers the evidence reports.
    float32 = variants["float32"]
    assert outcome.metrics["tflite_float32_size_bytes"].value == float32["size_bytes"] > 0
    latency = outcome.metrics["tflite_float32_latency_ms"]
    assert latency.value == pytest.approx(float32["latency"]["median_ms"], abs=1e-4)
    assert 0 < latency.low <= latency.value <= latency.high and latency.unit == "ms"
    chosen = variants[recommended[0].evidence["recommended"]]
    assert outcome.metrics["tflite_recommended_size_bytes"].value == chosen["size_bytes"] < float32["size_bytes"]
    assert outcome.metrics["tflite_recommended_fidelity_loss"].value == recommended[0].risk.fidelity_loss
    # Latency is claimed only when measured faster.
    for f in outcome.findings.values():
        if "latency_ms" in f.savings:
            assert f.savings["latency_ms"].low > 0 and f.evidence["latency_vs_baseline"]["verdict"] == "faster"
    labels = {s.label for s in outcome.series("variant_latency_vs_size")}
    assert {"float32", "float16", "dynamic-range-int8", "full-int8"} <= labels
    assert {s.label for s in outcome.series("variant_fidelity_vs_size")} >= labels - {"int16x8"}
    print(f"huge range: full int8 rel L2 {variants['full-int8']['fidelity']['relative_l2']:.3g}; {outcome.seconds:.1f} s")


@pytest.mark.slow
def test_float64_model_is_flagged(built_model):
    from checks.quantization import QuantizationCheck

    outcome = audit(built_model("float64"), QuantizationCheck)
    finding = outcome.findings["quantization/float64"]
    assert finding.evidence["float64_variables"]["bytes"] == 36 * 8
    assert finding.savings["size_bytes"].value == 36 * 4
    assert "inputs x" in finding.evidence["float64_signature_tensors"]
    assert "median_ms" in finding.evidence["latency"] or "not measurable" in finding.evidence["latency"]["reason"]
    # TFLite has no float64 kernels: the conversion needs SELECT_TF_OPS, said so, and no error.
    unconvertible = outcome.findings["quantization/not-convertible"]
    assert "SELECT_TF_OPS" in unconvertible.summary
    assert severity_rank(unconvertible.severity) >= severity_rank("low")
    # Only what was measured: the Flex flatbuffer's size, its latency only if LiteRT ran it, no recommendation.
    float32 = unconvertible.evidence["variants"]["float32"]
    if float32["size_bytes"]:
        assert outcome.metrics["tflite_float32_size_bytes"].value == float32["size_bytes"]
    assert ("tflite_float32_latency_ms" in outcome.metrics) == (float32["latency"] is not None)
    assert not any(name.startswith("tflite_recommended") for name in outcome.metrics)


@pytest.mark.slow
def test_variable_length_lstm_converts_or_fails_with_a_reason(tmp_path):
    import tf_keras

    from checks.quantization import QuantizationCheck

    tf_keras.utils.set_random_seed(0)
    inputs = tf_keras.Input(shape=(None, 4), name="seq")
    model = tf_keras.Model(inputs, tf_keras.layers.Dense(3)(tf_keras.layers.LSTM(8)(inputs)))
    path = str(tmp_path / "lstm")
    model.save(path, save_format="tf")
    outcome = audit(path, QuantizationCheck)
    assert outcome.findings
    for finding in outcome.findings.values():
        for name, row in finding.evidence["variants"].items():
            assert row["fidelity"] is not None or row["error"], name  # measured, or a reason
    if "quantization/not-convertible" in outcome.findings:
        summary = outcome.findings["quantization/not-convertible"].summary
        assert "SELECT_TF_OPS" in summary and "sequence length" in summary
    print({f.id: f.summary[:200] for f in outcome.findings.values()})


def build_mobilenet_v2(path: str) -> str:
    import keras

    keras.utils.set_random_seed(0)
    model = keras.applications.MobileNetV2(alpha=0.35, input_shape=(96, 96, 3), weights=None)
    model.export(path, verbose=False)
    return path


@pytest.mark.slow
def test_mobilenet_v2_dynamic_range_int8_size_saving(tmp_path):
    from checks.quantization import QuantizationCheck

    outcome = audit(build_mobilenet_v2(str(tmp_path / "mnv2")), QuantizationCheck)
    finding = next(f for f in outcome.findings.values() if "variants" in f.evidence)
    variants = finding.evidence["variants"]
    float32, dynamic = variants["float32"], variants["dynamic-range-int8"]
    assert dynamic["size_bytes"] < 0.35 * float32["size_bytes"]  # int8 weights: ~1/4, measured
    assert dynamic["latency"]["n"] >= 5 and dynamic["latency"]["p90_ms"] >= dynamic["latency"]["median_ms"]
    assert finding.evidence["pareto_frontier"]
    points = [s for s in outcome.series("variant_latency_vs_size") if s.label == "dynamic-range-int8"]
    assert points and points[0].y == pytest.approx(dynamic["size_mb"])
    print(
        "mnv2: " + "; ".join(
            f"{n} {v['size_bytes']:,} B, {v['latency']['median_ms'] if v['latency'] else None} ms, "
            f"L2 {v['fidelity']['relative_l2'] if v['fidelity'] else v.get('error')}"
            for n, v in variants.items()
        ) + f"; {outcome.seconds:.1f} s"
    )


# --- end to end ------------------------------------------------------------------------------------


@pytest.mark.slow
def test_cli_runs_both_checks(huge_range, tmp_path):
    out = tmp_path / "out.json"
    result = run_cli(huge_range, "--headless", "--checks", "quantization,pruning", "--budget", "quick", "--json", str(out))
    assert result.returncode == 0, result.stderr
    report = json.loads(out.read_text())
    assert {c["id"]: c["status"] for c in report["checks"]} == {"quantization": "findings", "pruning": "findings"}
    ids = {f["id"] for f in report["findings"]}
    assert "quantization/full-int8-fidelity" in ids and any(i.startswith("pruning/") for i in ids)
    series = {(s["check"], s["series"]) for s in report["samples"]}
    assert ("quantization", "variant_fidelity_vs_size") in series and ("pruning", "sparsity_vs_fidelity") in series
