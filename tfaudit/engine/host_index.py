"""Host speed index: a fixed reference workload timed interleaved with a model's calls.

Two audits of the same model on a shared host differ by more than either run's interval shows:
other processes take cores, clocks change, thread pools land differently in each process.
Lighthouse divides by a benchmark index measured once per run; here that did not help: an
index timed at the start of the audit moved independently of the model's latency measured
seconds later (the same MLP: raw latency 0.497–0.512 ms over 4 processes, latency ÷ such an
index 0.33–0.70). Timed call by call alternately with the model, in the same process, the
reference sees the same contention: latency ÷ reference spread 4 % (MLP) and 13 % (MobileNetV2)
where the raw latency spread up to 1.7×. A check emits the reference's median as its
``host_index_ms`` metric (tfaudit.api.HOST_INDEX_METRIC) next to its latencies; tfaudit.report.gates scales that check's latencies by
the ratio of the two runs' indexes. ``reference_workload`` and ``time_interleaved`` run in workers only (TensorFlow).

What the index leaves: latency ÷ reference still moves between processes (thread pools land differently, a core is
busy in one and not the other), and now and then one process reads far off the others (the same MLP's retracing
worker: 0.84 where the run's seven other processes read 0.67–0.72). So one process's latency is never the whole
evidence: the serving check times the model and the reference in turn in each fresh process it starts
(``process_ratios``: their geometric mean and spread), and a baseline comparison believes a slowdown only when every
process of the run, taken together, shows it (``slower_at_least``).
"""
from __future__ import annotations

import math
import time
from typing import Any, Callable, Sequence

from tfaudit.engine.measure import MIN_REPEATS, Timing
from tfaudit.engine.sequential import t_quantile
WORKLOAD = "tf.function: 4 × matmul 128×128, conv 3×3 32→32 on 1×32×32, float32"


def reference_workload() -> Callable[[], None]:
    """The fixed workload (dispatch, small matmuls, a convolution) as a call that blocks until done."""
    import numpy as np
    import tensorflow as tf

    rng = np.random.default_rng(0)
    matrix = tf.constant(rng.standard_normal((128, 128)).astype("float32") / 11.3)
    image = tf.constant(rng.standard_normal((1, 32, 32, 32)).astype("float32"))
    kernel = tf.constant(rng.standard_normal((3, 3, 32, 32)).astype("float32") / 17.0)

    @tf.function
    def workload(x, image):
        for _ in range(4):
            x = tf.nn.relu(tf.matmul(x, matrix))
        return tf.reduce_sum(x) + tf.reduce_sum(tf.nn.conv2d(image, kernel, 1, "SAME"))

    return lambda: workload(matrix, image).numpy()


def time_interleaved(*calls: Callable[[], object], warmup: int, max_seconds: float, max_rounds: int | None = None,
                     precision: float | None = None, min_seconds: float = 0.0) -> tuple[Timing, ...]:
    """Time ``calls`` in turn, round after round, until ``max_seconds`` pass (at least MIN_REPEATS rounds, at most ``max_rounds``);
    with ``precision``, stop sooner, once ``min_seconds`` passed and every call's median is known within ± that share
    (``median_half_width``).

    Unlike ``measure.time_call`` it does not stop at a count: medians taken over a stretch of time average the host's
    contention instead of catching one moment of it, and every call sees the same moments.
    """
    for _ in range(warmup):
        for call in calls:
            call()
    samples: list[list[float]] = [[] for _ in calls]
    started = time.perf_counter()
    deadline = started + max_seconds
    next_look = MIN_REPEATS
    while len(samples[0]) < MIN_REPEATS or (time.perf_counter() < deadline and (max_rounds is None or len(samples[0]) < max_rounds)):
        for call, out in zip(calls, samples):
            start = time.perf_counter()
            call()
            out.append((time.perf_counter() - start) * 1000.0)
        if precision is not None and len(samples[0]) >= next_look and time.perf_counter() - started >= min_seconds:
            if all(median_half_width(out) <= precision for out in samples):
                break
            next_look = len(samples[0]) + max(MIN_REPEATS, len(samples[0]) // 4)  # looks stay cheap: O(n log n) a quarter apart
    return tuple(Timing(tuple(out), warmup) for out in samples)


def median_half_width(samples: Sequence[float]) -> float:
    """Half the width of the median's distribution-free 95 % interval (order statistics), as a share of the median."""
    ordered = sorted(samples)
    n = len(ordered)
    spread = 1.96 * math.sqrt(n) / 2
    low, high = max(0, math.floor(n / 2 - spread)), min(n - 1, math.ceil(n / 2 + spread))
    median = ordered[n // 2]
    return (ordered[high] - ordered[low]) / (2 * median) if median > 0 else math.inf


def process_ratios(in_turn: Sequence[dict[str, Any]]) -> list[dict[str, float]] | None:
    """Per call timed in turn with the reference (``in_turn_ms["calls"]``' order), over the processes: the geometric mean of
    call ÷ reference (``ratio``), the sample sd of its log in % (``spread_pct``, 100 × the log sd) and how many
    (``processes``); None with fewer than two."""
    usable = [one for one in in_turn if one and one.get("reference", 0) > 0 and all(c > 0 for c in one.get("calls", []))]
    if len(usable) < 2 or len({len(one["calls"]) for one in usable}) != 1:
        return None
    ratios = []
    for position in range(len(usable[0]["calls"])):
        logs = [math.log(one["calls"][position] / one["reference"]) for one in usable]
        mean = sum(logs) / len(logs)
        sd = math.sqrt(sum((x - mean) ** 2 for x in logs) / (len(logs) - 1))
        ratios.append({"ratio": math.exp(mean), "spread_pct": 100.0 * sd, "processes": len(logs)})
    return ratios


def slower_at_least(old: dict[str, float], new: dict[str, float], level: float) -> float:
    """How many times slower ``new``'s processes ran the call per unit of reference than ``old``'s, at least, at ``level``
    (one-sided): the lower bound of the ratio of their geometric means, Student's t on the processes' log ratios with
    the two runs' spreads pooled. Below 1 when the runs do not show ``new`` slower."""
    n1, n2 = old["processes"], new["processes"]
    df = n1 + n2 - 2
    pooled = math.sqrt(((n1 - 1) * (old["spread_pct"] / 100.0) ** 2 + (n2 - 1) * (new["spread_pct"] / 100.0) ** 2) / df)
    margin = t_quantile(2 * (1 - level), df) * pooled * math.sqrt(1 / n1 + 1 / n2)
    return math.exp(math.log(new["ratio"] / old["ratio"]) - margin)
