"""The sparsities swept, their names and chart points: shared by gather, judge and catalogue (no TensorFlow)."""
from __future__ import annotations

from typing import Iterator

import numpy as np

from tfaudit.api import Sample

from .._compression import Measured, samples_for, within_bound

SPARSITIES = {"quick": (0.5, 0.75, 0.9), "standard": (0.5, 0.75, 0.9), "thorough": (0.5, 0.6, 0.7, 0.75, 0.8, 0.9, 0.95)}
TWO_FOUR = "2:4"
PERCENTS = sorted({round(s * 100) for sweep in SPARSITIES.values() for s in sweep})  # of the pruning/magnitude-N findings


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
