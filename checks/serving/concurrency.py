"""Concurrent callers, in the check's worker: 2, 4, … threads against one, at the serving batch, through the comparison engine."""
from __future__ import annotations

import gc
import threading
import time
from typing import Any, Iterator

from tfaudit.api import Progress, Sample, compare_in_turn, one_line

from . import catalogue as text
from .budgets import THROUGHPUT_GROWTH, turn_calls
from .endpoint import Endpoint
from .stats import MAX_SAMPLES_PER_WINDOW, thinned


class CallFailed(Exception):
    """A caller thread's call raised (the cause): the turn ended without it."""


class Callers:
    """``count`` warmed threads that share ``calls`` back-to-back calls of the endpoint each time the pool is called (a turn)."""

    def __init__(self, endpoint: Endpoint, tensors: dict, count: int, calls: int, warmup: int):
        self.latencies_ms: list[float] = []
        self._go = threading.Barrier(count + 1)
        self._done = threading.Barrier(count + 1)
        self._closing = False
        self._error: BaseException | None = None
        shares = [calls // count + (1 if i < calls % count else 0) for i in range(count)]
        self._threads = [threading.Thread(target=self._caller, args=(endpoint, tensors, share, warmup), daemon=True) for share in shares]
        for thread in self._threads:
            thread.start()

    def _caller(self, endpoint: Endpoint, tensors: dict, share: int, warmup: int) -> None:
        """Every thread reaches both barriers each turn, even when its calls raise, so the pool never waits forever."""
        try:
            for _ in range(warmup):  # a thread's first calls set up TensorFlow's per-thread state (~0.1 s)
                endpoint(tensors)
        except Exception as exc:  # noqa: BLE001 - raised to the turn's caller as CallFailed
            self._error = exc
        while True:
            self._go.wait()
            if self._closing:
                return
            try:
                for _ in range(share if self._error is None else 0):
                    start = time.perf_counter()
                    endpoint(tensors)
                    self.latencies_ms.append((time.perf_counter() - start) * 1000.0)
            except Exception as exc:  # noqa: BLE001 - raised to the turn's caller as CallFailed
                self._error = exc
            self._done.wait()

    def __call__(self) -> None:
        self._go.wait()
        self._done.wait()
        if self._error is not None:
            raise CallFailed() from self._error

    def close(self) -> None:
        self._closing = True
        self._go.wait()
        for thread in self._threads:
            thread.join()


def caller_counts(cores: int) -> list[int]:
    counts, callers = [], 1
    while callers <= max(2, 2 * cores) and callers <= 16:
        counts.append(callers)
        callers *= 2
    return counts


def concurrency_sweep(ctx, endpoint: Endpoint, feed: dict, batch: int, cores: int, call_ms: float) -> Iterator:
    """Each number of callers against one caller doing the same calls, in ABBA turns until decided (``compare_in_turn``).

    More callers are tried while each doubling adds at least THROUGHPUT_GROWTH rows/s (as the batch sweep goes on).
    Returns per count: each turn's rows/s, the calls' latencies and (past one) the rounds."""
    tensors = endpoint.tensors(feed)
    levels = caller_counts(cores)
    one: dict[str, Any] = {"callers": 1, "rows_per_s_windows": [], "latencies_ms": []}
    measured: list[dict[str, Any]] = [one]
    gc.collect()  # not in the turns: one collection of the audit's large heap paused a caller for 135 ms
    for callers in levels[1:]:
        calls = turn_calls(call_ms, callers)
        alone, together = (Callers(endpoint, tensors, count, calls, ctx.budget.warmup) for count in (1, callers))
        try:
            _, rounds = compare_in_turn(alone, together, text.CONCURRENCY_MINIMUM, warmup=ctx.budget.warmup,
                                        max_seconds=ctx.budget.timing_seconds / 2, confidence=ctx.budget.confidence)
        except CallFailed as exc:  # a count the model cannot serve ends the sweep there, said
            yield Progress(0.4, f"concurrency stopped at {callers} callers: {one_line(exc.__cause__)}")
            break
        finally:
            alone.close()
            together.close()
        one["rows_per_s_windows"] += [calls * batch * 1000.0 / ms for ms in rounds.calls_a]
        one["latencies_ms"] += thinned(alone.latencies_ms, MAX_SAMPLES_PER_WINDOW)
        rows = [calls * batch * 1000.0 / ms for ms in rounds.calls_b]
        measured.append({"callers": callers, "calls_per_turn": calls, "rows_per_s_windows": rows,
                         "latencies_ms": thinned(together.latencies_ms, MAX_SAMPLES_PER_WINDOW), "rounds": rounds.to_json(),
                         "confidence": ctx.budget.confidence})
        mean_rows = sum(rows) / len(rows)
        yield Sample("concurrency", callers, mean_rows, label=f"{callers} callers")
        before = measured[-2]["rows_per_s_windows"] if len(measured) > 2 else one["rows_per_s_windows"]
        if mean_rows < THROUGHPUT_GROWTH * sum(before) / len(before):
            break
    if len(measured) == 1:  # no count was measured against one caller
        return []
    yield Sample("concurrency", 1, sum(one["rows_per_s_windows"]) / len(one["rows_per_s_windows"]), label="1 caller")
    return measured
