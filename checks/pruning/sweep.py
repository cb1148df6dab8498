"""The sparsities swept, their names, and a measured model as plain data: shared by gather, judge and catalogue (no TensorFlow)."""
from __future__ import annotations

from typing import Any, Iterator

import numpy as np

from tfaudit.api import Sample, Timing

from .._compression import Measured, samples_for, within_bound

SPARSITIES = {"quick": (0.5, 0.75, 0.9), "standard": (0.5, 0.75, 0.9), "thorough": (0.5, 0.6, 0.7, 0.75, 0.8, 0.9, 0.95)}
TWO_FOUR = "2:4"
PERCENTS = sorted({round(s * 100) for sweep in SPARSITIES.values() for s in sweep})  # of the pruning/magnitude-N findings
SAMPLE_DECIMALS = 6  # milliseconds to the nanosecond: perf_counter's resolution, so rounding loses nothing measured


def label(sparsity: float | str) -> str:
    return f"pruned-{sparsity}" if isinstance(sparsity, str) else f"pruned-{round(sparsity * 100)}%"


def slug(name: str) -> str:
    """A variant's name as a file or folder name ("pruned-75%" → "pruned-75pct")."""
    return name.replace("%", "pct").replace(":", "-")


def pick(results: list[tuple[float | str, Measured]], bound: float) -> tuple[float, Measured] | None:
    """The largest fraction sparsity within the bound, as (sparsity, Measured); 2:4 is measured, never recommended."""
    within = [(float(s), r) for s, r in results if not isinstance(s, str) and within_bound(r.fidelity, bound)]
    return max(within, key=lambda item: item[0]) if within else None


def sweep_samples(sparsity: float | str, result: Measured) -> Iterator[Sample]:
    """The chart points of one swept sparsity."""
    loss = result.loss
    if loss is not None and np.isfinite(loss) and not isinstance(sparsity, str):
        yield Sample("sparsity_vs_fidelity", round(sparsity * 100, 1), loss, result.name)
    yield from samples_for(result, result.zipped_bytes)


def timing_data(timing: Timing | None) -> dict[str, Any] | None:
    if timing is None:
        return None
    return {"warmup": timing.warmup, "samples_ms": [round(x, SAMPLE_DECIMALS) for x in timing.samples_ms]}


def timing_from(data: dict[str, Any] | None) -> Timing | None:
    return None if data is None else Timing(tuple(data["samples_ms"]), data["warmup"])


def as_data(result: Measured) -> dict[str, Any]:
    """What the judge needs of a measured model: sizes, every timed call (and its baseline's, timed in turn), fidelity."""
    return {
        "name": result.name, "size_bytes": result.size_bytes, "zipped_bytes": result.zipped_bytes,
        "latency": timing_data(result.timing), "baseline_latency": timing_data(result.baseline_timing),
        "fidelity": result.fidelity, "error": result.error, "note": result.note, "extra": result.extra,
        **({"latency_compared": result.compared} if result.compared else {}),
    }


def from_data(data: dict[str, Any]) -> Measured:
    return Measured(
        data["name"], size_bytes=data["size_bytes"], zipped_bytes=data["zipped_bytes"], timing=timing_from(data["latency"]),
        fidelity=data["fidelity"], error=data["error"], note=data["note"], extra=dict(data["extra"]),
        baseline_timing=timing_from(data["baseline_latency"]), compared=dict(data.get("latency_compared") or {}),
    )
