"""Memory's verdicts from what gather measured: slopes, their causes and what they cost (pure: no TensorFlow)."""
from __future__ import annotations

from string import Template
from typing import Any, Iterator

import numpy as np

from tfaudit.api import Measure, Metric, Sample, Support, Yielded

from . import catalogue as text
from .catalogue import RULES
from .growth import (
    KIB,
    MIB,
    MIN_BYTES_PER_CALL,
    MIN_BYTES_PER_SHAPE,
    Growth,
    Slope,
    beyond,
    fit_growth,
    horizon_bytes,
    mb,
    per_1000_calls,
    sustained_rate,
)

MEMORY_MEASURED = "anonymous resident memory (RssAnon: allocated by the process, not its mapped libraries)"


def severity_from_hours(hours: float) -> str:
    return next((severity for severity, limit in text.HOURS_TO_EXHAUST if hours < limit), "low")


def severity_from_shape_bytes(nbytes: float) -> str:
    return next((severity for severity, limit in text.BYTES_PER_SHAPE if nbytes >= limit), "info")


def judge(m: dict[str, Any]) -> Iterator[Yielded]:
    """Metrics, the peaks per batch size, and the findings (``memory/stable`` when nothing grew)."""
    fixed = m["fixed"]
    memory_growth = fit_growth(fixed["calls"], fixed["memory"])
    yield per_1000_calls("growth_bytes_per_1000_calls", memory_growth)
    gpu_growth = fit_growth(fixed["calls"], fixed["gpu"]) if fixed["gpu"] is not None else None
    if gpu_growth is not None:
        yield per_1000_calls("gpu_growth_bytes_per_1000_calls", gpu_growth)
    for batch, peak in m["batch_peaks"]:
        yield Sample("peak_mb_by_batch", batch, mb(peak), "batch")
    yield Metric("peak_memory_mb", mb(max(peak for _, peak in m["batch_peaks"])), "MB")

    heap_growth = fit_growth(m["heap"]["calls"], m["heap"]["bytes"], min_step_bytes=0) if m["heap"] else None
    rate = sustained_rate(fixed["calls"], fixed["t"], fixed["seconds"])
    evidence = base_evidence(m, memory_growth, gpu_growth, heap_growth, rate)
    per_shape, shape_growth_significant, wrapper = None, False, None
    if m["varied_memory"] is not None:
        varied_growth = fit_growth(np.arange(len(m["varied_memory"])), m["varied_memory"], min_step_bytes=MIN_BYTES_PER_SHAPE)
        wrapper_growth = fit_growth(np.arange(len(m["wrapper_memory"])), m["wrapper_memory"], min_step_bytes=MIN_BYTES_PER_SHAPE)
        # Every call of the varied stream is also a call: take the fixed-shape growth per call out.
        per_shape = beyond(varied_growth.slope, memory_growth.slope)
        wrapper = {
            "shapes": len(m["wrapper_memory"]) - 1,
            "traces": m["wrapper_traces"],
            "growth": wrapper_growth.summary(),
            "bytes_per_new_shape_beyond_fixed": measure_list(beyond(wrapper_growth.slope, memory_growth.slope)),
        }
        evidence["new_shapes"] = {
            "varies": m["varies"],
            "shapes": len(m["varied_memory"]) - 1,
            "growth_per_call_with_new_shapes": varied_growth.summary(),
            "bytes_per_new_shape_beyond_fixed": measure_list(per_shape),
            "wrapper": wrapper,
        }
        shape_growth_significant = varied_growth.significant and per_shape.low >= MIN_BYTES_PER_SHAPE
    else:
        evidence["new_shapes"] = "not measured: the signature has no dynamic dims, so every request has one shape"

    found = False
    if memory_growth.significant:
        found = True
        yield growth_finding(m, "ram", memory_growth, rate, m["available_bytes"], evidence, heap_growth)
    if gpu_growth is not None and gpu_growth.significant:
        found = True
        yield growth_finding(m, "gpu", gpu_growth, rate, m["gpu_total_bytes"] - fixed["gpu"][-1], evidence, None)
    if shape_growth_significant and per_shape is not None:
        found = True
        yield new_shape_finding(m, per_shape, len(m["varied_memory"]) - 1, wrapper, evidence)
    if not found:
        growth = memory_growth.slope
        yield RULES["memory/stable"].finding(
            evidence, slope=f"{growth.value:,.0f}", low=f"{growth.low:,.0f}", high=f"{growth.high:,.0f}",
            steps=f"{memory_growth.steps:,}", threshold=f"{MIN_BYTES_PER_CALL:,}", peak=f"{evidence['peak_memory_mb']:,.1f}",
        )


def base_evidence(m: dict, memory_growth: Growth, gpu_growth: Growth | None, heap_growth: Growth | None, rate: float) -> dict:
    fixed = m["fixed"]
    evidence: dict[str, Any] = {
        "memory_measured": MEMORY_MEASURED,
        "baseline_memory_mb": mb(fixed["memory"][0]),
        "peak_memory_mb": mb(m["peak_memory_bytes"]),
        "peak_rss_mb": mb(m["peak_rss_bytes"]),
        "warmup_calls": m["warmup_calls"],
        "fixed_shape": {
            **memory_growth.summary(), "calls": fixed["calls"][-1], "seconds": round(fixed["seconds"], 3),
            "calls_per_second": round(rate, 1), "stopped_early_at_growth_cap": fixed["stopped_early"],
        },
        "python_heap_bytes_per_call": heap_growth.summary() if heap_growth else "not measured: tracemalloc was already running",
        "peak_memory_mb_by_batch": {str(b): mb(p) for b, p in m["batch_peaks"]},
        "gpu_status": "ok" if gpu_growth is not None else (m["gpu_reason"] or "no GPU"),
        "check_seconds": round(m["seconds"], 2),
        "budget": m["budget"],
    }
    if gpu_growth is not None:
        evidence["gpu"] = {"baseline_mb": mb(fixed["gpu"][0]), "peak_mb": mb(m["peak_gpu_bytes"]), "fixed_shape": gpu_growth.summary()}
    if any(m["tf_gpu"].values()):
        evidence["tf_gpu_allocator_by_phase"] = m["tf_gpu"]
    return evidence


def measure_list(measure: Slope) -> list[int]:
    return [round(measure.value), round(measure.low), round(measure.high)]


def shape_text(shape: list | None) -> str:
    return "unknown" if shape is None else "[" + ", ".join("None" if d is None else str(d) for d in shape) + "]"


def growth_finding(m: dict, which: str, growth: Growth, rate: float, available: int | None, evidence: dict, heap: Growth | None):
    """``which`` is "ram" (anonymous memory) or "gpu" (NVML)."""
    slope = growth.slope
    per_hour = Measure(slope.value * rate * 3600, slope.low * rate * 3600, slope.high * rate * 3600)
    hours = available / per_hour.value if available else float("inf")
    writes = m["state_writes"]
    python_share = heap.slope.value / slope.value if heap is not None and slope.value > 0 else 0.0
    if which == "gpu":
        cause = text.CAUSE_GPU
    elif writes:
        cause = Template(text.CAUSE_STATE).substitute(writes=", ".join(f"{op} ×{n}" for op, n in writes.items()))
    elif python_share >= 0.5:
        cause = Template(text.CAUSE_PYTHON).substitute(share=f"{python_share:.0%}")
    else:
        cause = text.CAUSE_NATIVE
    per_1000 = slope.value * 1000
    week, week_low, week_high = (horizon_bytes(b, rate, available) for b in (slope.value, slope.low, slope.high))
    horizon = Measure(week, week_low, week_high, projected=True)
    lasts = Template(text.LASTS).substitute(available_mb=f"{available / MIB:,.0f}", hours=f"{hours:,.1f}") if available else "."
    exhausts = text.EXHAUSTS if available and horizon.value >= available else "."
    inputs = m["inputs"]
    return RULES["memory/gpu-growth-fixed-shape" if which == "gpu" else "memory/growth-fixed-shape"].finding(
        {
            **evidence,
            "series": which,
            "cause": cause,
            "state_writes_in_serving_graph": writes,
            "bytes_per_call": growth.summary(),
            "mb_per_1000_calls": round(per_1000 / MIB, 3),
            "mb_per_hour": round(per_hour.value / MIB, 1),
            "calls_per_second": round(rate, 1),
            "available_mb": mb(available) if available else None,
            "hours_to_exhaust_available": round(hours, 2) if available else None,
            "mb_per_serving_week": mb(horizon.value),
            "savings_memory_bytes_means": "growth over a week of serving at the measured call rate, at most the memory available",
        },
        severity=severity_from_hours(hours), savings={"memory_bytes": horizon},
        support=Support.interval(Measure(slope.value, slope.low, slope.high), growth.min_step_bytes, text.SLOPE_METHOD),
        memory="GPU memory" if which == "gpu" else "memory", kib=f"{slope.value / KIB:,.1f}", low_kib=f"{slope.low / KIB:,.1f}",
        high_kib=f"{slope.high / KIB:,.1f}", calls=f"{growth.steps:,}", mb_per_1000=f"{per_1000 / MIB:,.1f}",
        mb_per_hour=f"{per_hour.value / MIB:,.0f}", rate=f"{rate:,.0f}", lasts=lasts, week_mb=f"{horizon.value / MIB:,.0f}",
        exhausts=exhausts, cause=cause, path=m["model"]["path"], signature=m["model"]["signature"],
        input_lines="\n".join(f"#   {i['name']}: {i['dtype']} {shape_text(i['shape'])}" for i in inputs),
        args=", ".join(f'{i["name"]}=tf.constant(request["{i["name"]}"])' for i in inputs),
    )


def new_shape_finding(m: dict, per_shape: Slope, shapes: int, wrapper: dict | None, evidence: dict):
    inputs = m["inputs"]
    retraced = ""
    if wrapper and wrapper["growth"]["growth"]:
        retraced = Template(text.WRAPPER_RETRACES).substitute(kib=f"{wrapper['bytes_per_new_shape_beyond_fixed'][0] / KIB:,.0f}")
    specs = ",\n".join(
        f'    tf.TensorSpec([{", ".join("None" if d is None else str(d) for d in (i["shape"] or ()))}], tf.{i["dtype"]}, name="{i["name"]}")'
        for i in inputs
    )
    return RULES["memory/growth-per-new-shape"].finding(
        {**evidence, "bytes_per_new_shape": [round(per_shape.value), round(per_shape.low), round(per_shape.high)], "wrapper": wrapper},
        severity=severity_from_shape_bytes(per_shape.low),  # the whole interval past a level: a point estimate near 1 MiB flipped BERT's
        support=Support.interval(Measure(per_shape.value, per_shape.low, per_shape.high), MIN_BYTES_PER_SHAPE, text.SLOPE_METHOD),
        kib=f"{per_shape.value / KIB:,.0f}", kib_1=f"{per_shape.value / KIB:,.1f}", low_kib=f"{per_shape.low / KIB:,.1f}",
        high_kib=f"{per_shape.high / KIB:,.1f}", shapes=shapes, varies=m["varies"], mb_per_1000=f"{per_shape.value * 1000 / MIB:,.0f}",
        wrapper=retraced, specs=specs, names=", ".join(i["name"] for i in inputs), signature=m["model"]["signature"],
        args=", ".join(f"{i['name']}={i['name']}" for i in inputs),
    )
