"""Host speed index: a fixed reference workload timed interleaved with a model's calls.

Two audits of the same model on a shared host differ by more than either run's interval shows:
other processes take cores, clocks change, thread pools land differently in each process.
Lighthouse divides by a benchmark index measured once per run; here that did not help: an
index timed at the start of the audit moved independently of the model's latency measured
seconds later (the same MLP: raw latency 0.497–0.512 ms over 4 processes, latency ÷ such an
index 0.33–0.70). Timed call by call alternately with the model, in the same process, the
reference sees the same contention: latency ÷ reference spread 4 % (MLP) and 13 % (MobileNetV2)
where the raw latency spread up to 1.7×. A check emits the reference's median as its
``host_index_ms`` metric next to its latencies; tfaudit.report.gates scales that check's latencies by
the ratio of the two runs' indexes. Runs in workers only (TensorFlow).
"""
from __future__ import annotations

import time
from typing import Callable

from tfaudit.engine.measure import MIN_REPEATS, Timing

METRIC = "host_index_ms"
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


def time_interleaved(*calls: Callable[[], object], warmup: int, max_seconds: float, max_rounds: int | None = None) -> tuple[Timing, ...]:
    """Time ``calls`` in turn, round after round, until ``max_seconds`` pass (at least MIN_REPEATS rounds, at most ``max_rounds``).

    Unlike ``measure.time_call`` it does not stop at a count: medians taken over the whole time
    average the host's contention instead of catching one moment of it, and every call sees the
    same moments.
    """
    for _ in range(warmup):
        for call in calls:
            call()
    samples: list[list[float]] = [[] for _ in calls]
    deadline = time.perf_counter() + max_seconds
    while len(samples[0]) < MIN_REPEATS or (time.perf_counter() < deadline and (max_rounds is None or len(samples[0]) < max_rounds)):
        for call, out in zip(calls, samples):
            start = time.perf_counter()
            call()
            out.append((time.perf_counter() - start) * 1000.0)
    return tuple(Timing(tuple(out), warmup) for out in samples)
