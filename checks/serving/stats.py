"""The serving check's timing statistics, shared by gather (which stops and chooses from them) and judge (numpy only)."""
from __future__ import annotations

from typing import Any, Iterable


from tfaudit.api import Timing, bootstrap, percentile

MAX_SAMPLES_PER_ROUND = 400  # evenly thinned: 40,000 LiteRT calls of 5 µs made the bootstraps take 15 s
MAX_SAMPLES_PER_WINDOW = 2000  # one timing window kept whole up to here (XLA against plain, the host reference)


def thinned(samples: Iterable[float], most: int = MAX_SAMPLES_PER_ROUND) -> list[float]:
    """At most ``most`` of ``samples``, evenly spaced, in ms rounded to 10 ns (what the measurements keep)."""
    samples = list(samples)
    step = max(1, -(-len(samples) // most))
    return [round(float(ms), 5) for ms in samples[::step]]


def timing_of(samples_ms: Iterable[float], warmup: int = 0) -> Timing:
    return Timing(tuple(samples_ms), warmup)


p99 = percentile(99)


def timing_stats(timing: Timing, batch: int) -> dict[str, Any]:
    """p50 and p99 with their intervals, and throughput from the median call."""
    median = timing.median_interval()
    tail = bootstrap(timing.samples_ms, p99)  # wide with few calls, as it should be
    return {
        "batch": batch,
        "p50_ms": round(timing.median_ms, 4),
        "p50_ci_ms": [round(median.low, 4), round(median.high, 4)],
        "p99_ms": round(tail.value, 4),
        "p99_ci_ms": [round(tail.low, 4), round(tail.high, 4)],
        "rows_per_s": round(batch * 1000.0 / timing.median_ms, 1),
        "rows_per_s_ci": [round(batch * 1000.0 / median.high, 1), round(batch * 1000.0 / median.low, 1)],
        "calls": timing.n,
    }


def per_row(timing: Timing, batch: int) -> Timing:
    return Timing(tuple(ms / batch for ms in timing.samples_ms), timing.warmup)
