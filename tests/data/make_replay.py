"""Builds audit_replay.jsonl, the event stream the TUI tests replay.

It starts from recorded_mlp.jsonl, a real ``--record`` of build_mlp audited by
the retracing check and tests/fake_checks.py (LowFinding, Raises, TimedFinding),
and adds hand-made memory, quantization and pruning events (those checks were not
written yet) plus a plugin's unknown series. Each check's start carries the charts the
installed check declares. Findings arrive in an order the
ranking must change: the best one comes last. Run: python tests/data/make_replay.py
"""
from __future__ import annotations

import dataclasses
import math
import os

from tfaudit.engine.registry import discover_checks
from tfaudit.events import CheckFinished, CheckProgress, CheckStarted, FindingEmitted, SampleEmitted, from_json, to_json

HERE = os.path.dirname(os.path.abspath(__file__))


def finding(check, slug, severity, title, savings, effort, risk=None, confidence=0.9, code="", evidence=None):
    return FindingEmitted(check, {
        "id": f"{check}/{slug}", "check": check, "severity": severity, "title": title,
        "summary": f"{title} (measured on this host).", "evidence": evidence or {"runs": 5},
        "savings": savings, "effort": effort, "risk": risk or {"level": "none", "note": "", "fidelity_loss": None},
        "confidence": confidence, "why": "It costs every request.", "verify": "Run tfaudit again and compare.",
        "fix": {"text": "Apply the change below.", "code": code, "language": "python"},
    })


def measure(value, low=None, high=None):
    return {"value": value, "low": low, "high": high}


CHARTS = {spec.id: spec.charts for spec in discover_checks()}  # what each built-in check declares (tfaudit.api.Chart)


def started(check: str, title: str) -> CheckStarted:
    return CheckStarted(check, title, CHARTS.get(check, ()))


def memory_events():
    yield started("memory", "Memory timeline")
    for i in range(40):
        t = i * 0.15
        ram = 310 + 60 * (1 - math.exp(-t)) + (25 if 18 <= i < 24 else 0)
        yield SampleEmitted("memory", "ram_mb", round(t, 2), round(ram, 1))
        yield SampleEmitted("memory", "delta_mb", round(t, 2), round(ram - 310, 1))
        if i % 10 == 9:
            yield CheckProgress("memory", (i + 1) / 50, f"sampling {t:.1f} s")
    for batch, peak in ((1, 2.1), (2, 2.3), (4, 2.9), (8, 4.2), (16, 6.8), (32, 12.5)):
        yield SampleEmitted("memory", "peak_mb_by_batch", batch, peak)
    yield finding("memory", "graph-growth", "medium", "Memory grows while serving new shapes",
                  {"memory_bytes": measure(24 * 2**20, 20 * 2**20, 28 * 2**20)},
                  {"level": "hours", "hours": 6, "note": "cache one concrete function"},
                  code="serve = tf.function(model.serve, input_signature=[tf.TensorSpec([None, 8], tf.float32, name='x')])")
    yield CheckFinished("memory", "findings", 6.2)


VARIANTS = {  # name: (latency ms, size MB, fidelity loss)
    "float32": (0.42, 0.055, 0.0),
    "float16": (0.44, 0.031, 0.0004),
    "dynamic_range": (0.39, 0.018, 0.004),
    "int8": (0.61, 0.016, 0.021),
    "16x8": (0.70, 0.024, 0.006),  # dominated by dynamic_range
}


def quantization_events():
    yield started("quantization", "Post-training quantization")
    for position, (name, (latency, size, loss)) in enumerate(VARIANTS.items(), 1):
        yield SampleEmitted("quantization", "variant_latency_vs_size", latency, size, name)
        yield SampleEmitted("quantization", "variant_fidelity_vs_size", loss, size, name)
        yield CheckProgress("quantization", position / len(VARIANTS), f"variant {name}")
    yield finding("quantization", "int8", "low", "Full int8 quantization is smaller but slower here",
                  {"size_pct": measure(70.9, 70.9, 70.9)}, {"level": "days", "hours": 16, "note": "calibrate and validate"},
                  risk={"level": "medium", "note": "int8 changes outputs", "fidelity_loss": 0.021})
    yield finding("quantization", "float16", "high", "Float16 weights halve the model for no measured loss",
                  {"size_pct": measure(43.6, 43.6, 43.6)}, {"level": "hours", "hours": 1, "note": "one converter flag"},
                  risk={"level": "low", "note": "float16 rounding", "fidelity_loss": 0.0004},
                  code="converter = tf.lite.TFLiteConverter.from_saved_model('/models/mlp')\n"
                       "converter.optimizations = [tf.lite.Optimize.DEFAULT]\n"
                       "converter.target_spec.supported_types = [tf.float16]\n"
                       "open('model_fp16.tflite', 'wb').write(converter.convert())")
    yield CheckFinished("quantization", "findings", 9.8)


def pruning_events():
    yield started("pruning", "Magnitude pruning")
    yield SampleEmitted("pruning", "variant_latency_vs_size", 0.41, 0.030, "pruned-50%")
    yield CheckProgress("pruning", 0.4, "pruning 50%")
    yield CheckFinished("pruning", "errored", 2.4, "ValueError: prune_low_magnitude cannot wrap a Keras 3 layer",
                        "Traceback (most recent call last):\n  File \"checks/pruning.py\", line 88, in run\n"
                        "ValueError: prune_low_magnitude cannot wrap a Keras 3 layer")


def plugin_events():
    yield started("batch-one", "Batch-1 latency")
    yield SampleEmitted("batch-one", "per_row_ms", 1, 0.44)
    yield SampleEmitted("batch-one", "per_row_ms", 32, 0.02)
    yield CheckFinished("batch-one", "passed", 1.1)


def main() -> None:
    with open(os.path.join(HERE, "recorded_mlp.jsonl"), encoding="utf-8") as stream:
        recorded = [from_json(line) for line in stream if line.strip()]
    by_check: dict[str, list] = {}
    for event in recorded[1:]:
        if isinstance(event, CheckStarted):  # recorded before checks declared their charts
            event = dataclasses.replace(event, charts=CHARTS.get(event.check, ()))
        by_check.setdefault(event.check, []).append(event)
    events = [recorded[0], *by_check["retracing"], *memory_events(), *by_check["fake-low"],
              *pruning_events(), *plugin_events(), *quantization_events(), *by_check["fake-raises"]]
    with open(os.path.join(HERE, "audit_replay.jsonl"), "w", encoding="utf-8") as out:
        out.writelines(to_json(event) + "\n" for event in events)


if __name__ == "__main__":
    main()
