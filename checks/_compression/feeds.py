"""The inputs a compression check measures on, and how they travel to its helper processes.

Fidelity is measured on ``eval_feeds`` (EVAL_SAMPLES rows per budget), latency on one request
(``latency_feed``), calibration on CALIBRATION_SAMPLES rows (real ones from --inputs when given).
``write_feeds``/``read_feeds`` carry feeds and outputs to and from a helper process as .npz files.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from .agreement import DEFAULT_MAX_FIDELITY_LOSS
from .variants import representative_code_for

# Per budget: inputs the fidelity is measured on, and representative samples for calibration.
EVAL_SAMPLES = {"quick": 16, "standard": 32, "thorough": 128}
CALIBRATION_SAMPLES = {"quick": 16, "standard": 32, "thorough": 200}
EXTRA_ROWS = 64  # rows per chunk when top-1 agreement needs more samples


def max_fidelity_loss(ctx) -> float:
    return float(ctx.options.get("max_fidelity_loss", DEFAULT_MAX_FIDELITY_LOSS))


def budget_name(ctx) -> str:
    return ctx.budget.name if ctx.budget.name in EVAL_SAMPLES else "standard"


def eval_feeds(ctx) -> list[dict[str, np.ndarray]]:
    """The inputs fidelity is measured on: one batch of EVAL_SAMPLES rows, or several fixed-batch feeds."""
    count = EVAL_SAMPLES[budget_name(ctx)]
    if ctx.inputs.batch_dynamic:
        return [ctx.inputs.make(batch=count, seed=1)]
    fixed = next((s.shape[0] for s in ctx.inputs.specs if s.shape), 1) or 1
    return [ctx.inputs.make(seed=1 + i) for i in range(max(1, count // fixed))]


def more_feeds(ctx, index: int) -> list[dict[str, np.ndarray]]:
    """The ``index``-th chunk of EXTRA_ROWS further rows, none of them in eval_feeds."""
    if ctx.inputs.batch_dynamic:
        return [ctx.inputs.make(batch=EXTRA_ROWS, seed=100 + index)]
    fixed = next((s.shape[0] for s in ctx.inputs.specs if s.shape), 1) or 1
    per_chunk = max(1, EXTRA_ROWS // fixed)
    return [ctx.inputs.make(seed=10_000 + index * per_chunk + i) for i in range(per_chunk)]


def latency_feed(ctx) -> dict[str, np.ndarray]:
    """One request: batch 1 when the batch is dynamic."""
    return ctx.inputs.make(batch=1, seed=2)


def calibration_rows(ctx) -> list[dict[str, np.ndarray]]:
    """Representative samples, one row each: real rows from --inputs when given, else synthetic."""
    count = CALIBRATION_SAMPLES[budget_name(ctx)]
    if not ctx.inputs.synthetic and ctx.inputs.batch_dynamic:
        rows = len(next(iter(ctx.inputs.samples.values())))
        return [{k: v[i : i + 1] for k, v in ctx.inputs.samples.items()} for i in range(min(rows, count))]
    return [ctx.inputs.make(batch=1, seed=1000 + i) for i in range(count)]


def run_serving(serve, feeds: list[dict]) -> list[dict[str, np.ndarray]]:
    import tensorflow as tf

    return [{k: v.numpy() for k, v in serve(**{n: tf.constant(x) for n, x in feed.items()}).items()} for feed in feeds]


def write_feeds(path: str, feeds: list[dict[str, np.ndarray]]) -> str:
    """Feeds (or outputs) for the other process: a list of {name: array}, in order."""
    arrays = {f"f{i}_{j}": np.asarray(v) for i, feed in enumerate(feeds) for j, v in enumerate(feed.values())}
    np.savez(path, names=np.array([list(feed) for feed in feeds] + [[]], dtype=object), **arrays)
    return path


def read_feeds(path: str) -> list[dict[str, np.ndarray]]:
    with np.load(path, allow_pickle=True) as data:  # our own file, written by write_feeds
        names = list(data["names"])[:-1]
        return [{n: data[f"f{i}_{j}"] for j, n in enumerate(feed)} for i, feed in enumerate(names)]


def input_specs(ctx) -> list[dict[str, Any]]:
    """The signature's inputs as plain data: name, dtype, and shape (a list with None for dynamic dims; None: unknown rank)."""
    return [{"name": s.name, "dtype": s.dtype, "shape": None if s.shape is None else list(s.shape)} for s in ctx.inputs.specs]


def input_names(ctx) -> list[str]:
    return [spec.name for spec in ctx.inputs.specs]


def representative_code(ctx) -> str:
    return representative_code_for(input_specs(ctx))
