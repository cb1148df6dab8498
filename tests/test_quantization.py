"""The quantization check: fidelity metrics, int8 that breaks on huge activation ranges, float64, MobileNetV2, LSTM."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

import checkrun
from tfaudit.checks._compression import Measured, fidelity, pareto_frontier, top1_verdict, within_bound
from conftest import run_cli
from tfaudit.api import HOST_INDEX_METRIC, severity_rank


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
    from tfaudit.engine.measure import Timing

    def variant(name, size, ms, loss):
        return Measured(name, size_bytes=size, timing=Timing((ms,) * 5, 0), fidelity={"relative_l2": loss})

    results = [variant("float32", 100, 1.0, 0.0), variant("float16", 50, 1.0, 0.0), variant("int8", 25, 2.0, 0.1), variant("bad", 60, 3.0, 0.2)]
    assert pareto_frontier(results) == ["float16", "int8"]


def near_tie_scores(rng, n=32, classes=1000):
    """Class scores whose sample 0 has a near tie (margin 5e-4) and sample 1 a clear winner (margin 3)."""
    scores = 10 * rng.standard_normal((n, classes))
    scores[0, :2] = [50.0005, 50.0]
    scores[1, :2] = [80.0, 77.0]
    return scores


def test_a_flip_on_a_near_tie_is_not_counted_but_a_clear_flip_is():
    rng = np.random.default_rng(0)
    scores = near_tie_scores(rng)
    candidate = scores + 1e-3 * rng.standard_normal(scores.shape)  # a variant with ~1e-3 output error
    candidate[0, :2] = [50.0, 50.0005]  # the near tie swaps: within what a 1e-3 error can do
    fid = fidelity([{"scores": scores}], [{"scores": candidate}])
    top1 = fid["top1"]
    assert (top1["samples"], top1["flips"], top1["near_tie_flips"], top1["counted_flips"]) == (32, 1, 1, 0)
    assert 5e-4 < top1["near_tie_margin"] < 3.0
    assert fid["top1_agreement"] == pytest.approx(31 / 32)  # the raw agreement is still reported
    # Before: 31/32 = 96.9 % < 99 % vetoed the variant. Now the near tie does not count, and
    # 32 flip-free samples cannot resolve 99 %: unresolved, judged on the point estimate.
    assert within_bound(fid, 0.01)
    verdict = top1_verdict(top1, 0.01)
    assert verdict["verdict"] == "unresolved" and verdict["agreement_ci95"][0] < 0.99 and verdict["flip_free_samples_to_resolve"] > 32

    clear = candidate.copy()
    clear[1, 1] = 80.01  # sample 1's winner (margin 3) loses: a real change, though a small one overall
    fid = fidelity([{"scores": scores}], [{"scores": clear}])
    assert fid["top1"]["counted_flips"] == 1 and fid["relative_l2"] < 0.01
    assert not within_bound(fid, 0.01)  # 1/32 > 1 %, and nothing says it is a near tie


def test_top1_verdict_needs_samples_to_resolve_the_bound():
    def stats(n, k):
        return {"samples": n, "counted_flips": k}

    assert top1_verdict(stats(1000, 0), 0.01)["verdict"] == "within"  # upper end 0.4 %
    assert top1_verdict(stats(32, 8), 0.01)["verdict"] == "beyond"  # lower end ~13 %
    assert top1_verdict(stats(400, 2), 0.01)["verdict"] == "unresolved"
    assert top1_verdict(stats(400, 2), 0.01)["passes"]  # 0.5 % on the point estimate
    low, high = top1_verdict(stats(32, 0), 0.01)["agreement_ci95"]
    assert high == 1.0 and 0.85 < low < 0.95


def timing(rng, median_ms, spread_ms, n=50):
    from tfaudit.engine.measure import Timing

    return Timing(tuple(median_ms + spread_ms * rng.standard_normal(n)), 5)


def test_variants_tied_within_noise_go_to_the_lower_loss_whatever_their_order():
    from tfaudit.checks.quantization.ranking import rank_variants

    rng = np.random.default_rng(0)
    base = Measured("float32", size_bytes=1000, timing=timing(rng, 10.0, 0.2), fidelity={"relative_l2": 0.0})
    # ~20 % faster (an interval of a few points) and half the size: ~35-45 points.
    faster = Measured("float16", size_bytes=500, timing=timing(rng, 8.0, 1.0), fidelity={"relative_l2": 0.0001})
    # A tenth of the size, no speed-up: 45 points, exactly.
    smaller = Measured("dynamic-range-int8", size_bytes=100, timing=timing(rng, 10.0, 0.2), fidelity={"relative_l2": 0.002})
    for order in ((faster, smaller), (smaller, faster)):
        results = {"float32": base, **{r.name: r for r in order}}
        chosen, tied, ranking = rank_variants(base, results, 0.01)
        points = {row["name"]: (row["points"], row["points_high"]) for row in ranking}
        assert points["dynamic-range-int8"] == (45.0, 45.0)
        assert points["float16"][0] < 45.0 <= points["float16"][1]  # the intervals overlap
        assert chosen["name"] == "float16" and tied == ["float16", "dynamic-range-int8"]
    # Apart beyond noise: the larger saving wins, whatever its loss.
    plain = Measured("float16", size_bytes=500, timing=timing(rng, 10.0, 0.2), fidelity={"relative_l2": 0.0001})
    chosen, tied, _ = rank_variants(base, {"float32": base, "float16": plain, "dynamic-range-int8": smaller}, 0.01)
    assert chosen["name"] == "dynamic-range-int8" and tied == ["dynamic-range-int8"]


def test_modules_do_not_import_tensorflow():
    code = "import sys, checks.quantization, checks.pruning; assert 'tensorflow' not in sys.modules and 'ai_edge_litert' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


# --- the check, in process ------------------------------------------------------------------------


@pytest.mark.slow
def test_huge_activation_range_gets_no_full_int8_recommendation(huge_range):
    from tfaudit.checks.quantization import QuantizationCheck

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
    index = outcome.metrics[HOST_INDEX_METRIC]  # the reference timed in turn with it in the LiteRT process: --baseline scales by it
    assert 0 < index.low <= index.value <= index.high and index.unit == "ms"
    chosen = variants[recommended[0].evidence["recommended"]]
    assert outcome.metrics["tflite_recommended_size_bytes"].value == chosen["size_bytes"] < float32["size_bytes"]
    assert outcome.metrics["tflite_recommended_fidelity_loss"].value == recommended[0].risk.fidelity_loss
    # A baseline compares the recommended size only with the same variant's.
    assert {outcome.metrics[m].subject for m in ("tflite_recommended_size_bytes", "tflite_recommended_fidelity_loss")} == {recommended[0].evidence["recommended"]}
    # Latency is claimed only when measured faster.
    for f in outcome.findings.values():
        if "latency_ms" in f.savings:
            assert f.savings["latency_ms"].low > 0 and f.evidence["latency_vs_baseline"]["verdict"] == "faster"
            assert "faster past" in f.evidence["latency_vs_baseline"]["decision"]  # decided in ABBA rounds, past 10 % and 0.05 ms
    labels = {s.label for s in outcome.series("variant_latency_vs_size")}
    assert {"float32", "float16", "dynamic-range-int8", "full-int8"} <= labels
    assert {s.label for s in outcome.series("variant_fidelity_vs_size")} >= labels - {"int16x8"}
    print(f"huge range: full int8 rel L2 {variants['full-int8']['fidelity']['relative_l2']:.3g}; {outcome.seconds:.1f} s")


@pytest.mark.slow
def test_float64_model_is_flagged(built_model):
    from tfaudit.checks.quantization import QuantizationCheck

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

    from tfaudit.checks.quantization import QuantizationCheck

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


@pytest.mark.slow
def test_a_model_tflite_crashes_on_gives_a_finding_with_the_trigger(tmp_path):
    from tfaudit.checks.quantization import QuantizationCheck
    from test_pruning import build_growing_state

    outcome = audit(build_growing_state(str(tmp_path / "model")), QuantizationCheck)
    assert outcome.skipped is None
    finding = outcome.findings["quantization/not-convertible"]
    crash = finding.evidence["crash"]
    assert crash["signal"].startswith("SIG") and crash["signal"] in finding.title
    assert crash["suspects"] == ["variable h shape [None, 64]"] and "h shape [None, 64]" in finding.summary
    assert "from_saved_model" in finding.fix.code and crash["signal"] in finding.fix.code
    variants = finding.evidence["variants"]
    assert variants["float32"]["error"] and all("not attempted" in variants[n]["error"] for n in variants if n != "float32")
    # It converted (the size is a measurement) but never ran: no latency, no recommendation.
    assert set(outcome.metrics) <= {"tflite_float32_size_bytes"}


def build_mobilenet_v2(path: str) -> str:
    import keras

    keras.utils.set_random_seed(0)
    model = keras.applications.MobileNetV2(alpha=0.35, input_shape=(96, 96, 3), weights=None)
    model.export(path, verbose=False)
    return path


@pytest.mark.slow
def test_mobilenet_v2_dynamic_range_int8_size_saving(tmp_path):
    from tfaudit.checks.quantization import QuantizationCheck

    outcome = audit(build_mobilenet_v2(str(tmp_path / "mnv2")), QuantizationCheck)
    finding = next(f for f in outcome.findings.values() if "variants" in f.evidence)
    variants = finding.evidence["variants"]
    float32, dynamic = variants["float32"], variants["dynamic-range-int8"]
    assert dynamic["size_bytes"] < 0.35 * float32["size_bytes"]  # int8 weights: ~1/4, measured
    assert dynamic["latency"]["n"] >= 5 and dynamic["latency"]["p90_ms"] >= dynamic["latency"]["median_ms"]
    assert finding.evidence["pareto_frontier"]
    points = [s for s in outcome.series("variant_latency_vs_size") if s.label == "dynamic-range-int8"]
    assert points and points[0].y == pytest.approx(dynamic["size_mb"])
    # 1000 random-weight classes: top-1 is judged per sample, near ties apart, with more
    # samples where the first 16 cannot resolve 99 %.
    for name, row in variants.items():
        top1 = (row["fidelity"] or {}).get("top1")
        if top1 is None:
            continue
        assert top1["counted_flips"] == top1["flips"] - top1["near_tie_flips"] >= 0
        if "top1_more_samples" in row:
            more = row["top1_more_samples"]
            assert more["samples"] == top1["samples"] > more["first_samples"] == 16, name
    if finding.id.startswith("quantization/") and "recommended" in finding.evidence:
        assert "top-1 class:" in finding.summary and "95 % interval" in finding.summary
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


# --- a Keras 3 model inside a tf.Module: the converter loses the weights ------------------------------


@pytest.fixture(scope="module")
def keras_in_module(tmp_path_factory):
    from odd_models import build_keras_in_module

    return build_keras_in_module(str(tmp_path_factory.mktemp("keras_in_module") / "model"))


def variants_of(outcome) -> dict:
    return next(f for f in outcome.findings.values() if "variants" in f.evidence).evidence["variants"]


@pytest.mark.slow
def test_a_keras_model_inside_a_module_converts_with_its_weights(keras_in_module, huge_range):
    """Converted as written, the flatbuffer has no weights (READ_VARIABLE, NaN outputs); the check converts a re-export."""
    from tfaudit.checks._compression import unrestored_variables
    from tfaudit.checks.quantization import QuantizationCheck

    diagnosis = unrestored_variables(keras_in_module, "serving_default")
    assert diagnosis and diagnosis["not_restored"] == diagnosis["signature_variables"] == 10
    assert unrestored_variables(huge_range, "serving_default") is None  # variables of the module itself: restored

    outcome = audit(keras_in_module, QuantizationCheck)
    assert "quantization/float32-mismatch" not in outcome.findings
    variants = variants_of(outcome)
    float32 = variants["float32"]
    assert float32["fidelity"]["relative_l2"] <= 1e-5, float32
    assert "resource_variable_ops" not in float32
    for name in ("float16", "dynamic-range-int8"):
        assert variants[name]["fidelity"]["relative_l2"] < 0.05, (name, variants[name])
    finding = next(f for f in outcome.findings.values() if "variants" in f.evidence)
    assert finding.evidence["converted_from"]["not_restored"] == 10
    if finding.fix.code and "from_saved_model" in finding.fix.code:
        assert "tf.saved_model.save(loaded" in finding.fix.code  # the snippet the user pastes re-exports too


@pytest.mark.slow
def test_a_float32_conversion_that_loses_the_weights_is_a_finding(keras_in_module, monkeypatch):
    """When no conversion path reproduces the SavedModel, the check says so instead of "no variant is worth it"."""
    import importlib

    import tfaudit.checks._compression.savedmodel as savedmodel
    import tfaudit.checks.quantization as quantization

    gather = importlib.import_module("tfaudit.checks.quantization.gather")  # the module, not the function the package exports
    monkeypatch.setattr(savedmodel, "unrestored_variables", lambda *args: None)  # conversion_source converts as written
    monkeypatch.setattr(gather, "retry_reexported", lambda *args: None)  # and nothing recovers it
    outcome = audit(keras_in_module, quantization.QuantizationCheck)
    assert set(outcome.findings) == {"quantization/float32-mismatch"}, {f.id: f.summary for f in outcome.findings.values()}
    finding = outcome.findings["quantization/float32-mismatch"]
    evidence = finding.evidence
    assert finding.severity == "high" and finding.risk.level == "high"
    assert not evidence["weights_in_flatbuffer"] and evidence["resource_variable_ops"]["READ_VARIABLE"] == 10
    assert evidence["flatbuffer_bytes"] < evidence["savedmodel_size_bytes"]
    assert evidence["diagnosis"]["not_restored"] == 10 and "restore op" in finding.summary
    fid = evidence["fidelity"]
    assert fid is None or not fid["relative_l2"] <= 0.01
    for name, error in evidence.get("calibration_failures", {}).items():
        assert "READ_VARIABLE" in error and name in finding.summary
    assert "from_concrete_functions([serve], loaded)" in finding.fix.code and "export" in finding.fix.text


@pytest.mark.slow
def test_a_float32_mismatch_is_retried_from_a_reexport(keras_in_module, monkeypatch):
    """Not diagnosed up front, the mismatch is caught on the float32 variant and fixed by saving the loaded model again."""
    import tfaudit.checks._compression.savedmodel as savedmodel
    from tfaudit.checks.quantization import QuantizationCheck

    monkeypatch.setattr(savedmodel, "unrestored_variables", lambda *args: None)  # conversion_source converts as written
    outcome = audit(keras_in_module, QuantizationCheck)
    assert "quantization/float32-mismatch" not in outcome.findings
    float32 = variants_of(outcome)["float32"]
    assert float32["fidelity"]["relative_l2"] <= 1e-5
    as_written = float32["as_written"]
    assert as_written["resource_variable_ops"]["READ_VARIABLE"] == 10
    assert as_written["fidelity"] is None or not as_written["fidelity"]["relative_l2"] <= 0.01
    assert "saved again" in float32["note"]


@pytest.mark.parametrize("base_ms, ms, claimed", [(1.0, 0.5, True), (1.0, 0.95, False), (1.0, 1.5, False)])
def test_a_variants_latency_is_claimed_only_when_decided_faster_past_the_minimum(base_ms, ms, claimed):
    """Timed in ABBA rounds with its baseline: 5 % faster over 200 steady calls a side is significant, but not a claim."""
    import numpy as np

    from tfaudit.api import Timing, rounds_of_calls
    from tfaudit.checks._compression.variants import Measured, saving_support, savings

    rng = np.random.default_rng(0)
    before, after = ([float(v) for v in median * (1 + 0.01 * rng.standard_normal(200))] for median in (base_ms, ms))
    base = Measured("float32", timing=Timing(tuple(before), 1))
    variant = Measured("float16", timing=Timing(tuple(after), 1), baseline_timing=Timing(tuple(before), 1),
                       compared={"rounds": rounds_of_calls(before, after), "confidence": 0.95})
    saved, evidence = savings(base, variant)
    assert ("latency_ms" in saved) == claimed
    timed = evidence["latency_vs_baseline"]
    assert timed["verdict"] == ("faster" if claimed else "slower" if ms > base_ms else "no significant difference")
    if claimed:
        support = saving_support(saved, "bytes", variant)  # no size saving here: the decision is the evidence
        assert support.value > 0.95 and support.basis == timed["decided_by"] and "faster past" in timed["decision"]
    assert Measured.from_data(variant.to_data()).compared == variant.compared
