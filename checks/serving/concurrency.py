"""Concurrent callers, in the check's worker: 1, 2, 4, … threads calling the signature at the serving batch, in turn."""
from __future__ import annotations

import gc
import threading
import time
from typing import Any, Iterator

import numpy as np

from tfaudit.api import Sample

from .budgets import POINT_SECONDS, ROUNDS, WINDOWS, budget_key
from .endpoint import Endpoint
from .stats import thinned


def callers_at_once(ctx, endpoint: Endpoint, tensors, callers: int, seconds: float) -> tuple[list[float], list[float], float]:
    """``callers`` threads calling back to back for ``seconds``: their calls' end times and latencies, and when they began."""
    ends: list[list[tuple[float, float]]] = [[] for _ in range(callers)]
    start_line = threading.Barrier(callers + 1)

    def caller(out: list) -> None:
        for _ in range(ctx.budget.warmup):  # a thread's first calls set up TensorFlow's per-thread state (~0.1 s)
            endpoint(tensors)
        start_line.wait()
        stop = time.perf_counter() + seconds
        while time.perf_counter() < stop:
            t0 = time.perf_counter()
            endpoint(tensors)
            t1 = time.perf_counter()
            out.append((t1, (t1 - t0) * 1000.0))

    gc.collect()  # not in the window: one collection of the audit's large heap paused a caller for 135 ms
    threads = [threading.Thread(target=caller, args=(out,), daemon=True) for out in ends]
    for thread in threads:
        thread.start()
    start_line.wait()
    began = time.perf_counter()
    for thread in threads:
        thread.join()
    return [t for out in ends for t, _ in out], [ms for out in ends for _, ms in out], began


def caller_counts(cores: int) -> list[int]:
    counts, callers = [], 1
    while callers <= max(2, 2 * cores) and callers <= 16:
        counts.append(callers)
        callers *= 2
    return counts


def concurrency_sweep(ctx, endpoint: Endpoint, feed: dict, batch: int, cores: int) -> Iterator:
    """Per number of callers, the rows/s of each of WINDOWS windows a round and the calls' latencies, the counts in turn for ROUNDS rounds.

    In turn because the host's moments differ more than the counts do: timed one after the other, the demo's
    single caller read 2,445-3,153 rows/s between audits and the 2-caller finding came and went."""
    key = budget_key(ctx)
    tensors = endpoint.tensors(feed)
    levels = caller_counts(cores)
    seconds = POINT_SECONDS[key]
    windows: dict[int, list[float]] = {}  # rows/s in each of WINDOWS windows of each round
    latencies: dict[int, list[float]] = {}
    for round_index in range(ROUNDS[key]):
        for position, callers in enumerate(levels):
            finished, took, began = callers_at_once(ctx, endpoint, tensors, callers, seconds)
            edges = np.linspace(began, max(finished + [began + seconds]), WINDOWS + 1)
            counts, _ = np.histogram(finished, bins=edges)
            windows.setdefault(callers, []).extend(float(c * batch / (edges[1] - edges[0])) for c in counts)
            latencies.setdefault(callers, []).extend(thinned(took))  # thinned: see MAX_SAMPLES_PER_ROUND
            if round_index > 0:
                continue
            yield Sample("concurrency", callers, float(np.mean(windows[callers])), label=f"{callers} callers")
            means = [float(np.mean(windows[c])) for c in levels[: position + 1]]
            if len(means) >= 3 and means[-1] < means[-2] < means[-3]:  # two falls in throughput: no more callers
                levels = levels[: position + 1]
                break
    measured: list[dict[str, Any]] = [
        {"callers": callers, "rows_per_s_windows": windows[callers], "latencies_ms": latencies[callers]} for callers in levels
    ]
    return measured
