"""Host speed index: a fixed TensorFlow workload timed in every audit (Lighthouse's benchmarkIndex).

Two audits of the same model on a shared host differ by more than either run's interval shows:
other processes take cores, clocks change. Timing the same small workload in each run says how
fast the host was for TensorFlow then; a baseline comparison scales latency metrics by the ratio
(tfaudit.gates). The workload mixes what model calls spend time on: a function call's dispatch,
a few matmuls and a convolution, on the same thread pools the checks use. Runs in a worker only.
"""
from __future__ import annotations

from typing import Any

WORKLOAD = "tf.function: 4 × matmul 128×128, conv 3×3 32→32 on 1×32×32, float32"
WARMUP_CALLS = 5
SECONDS = 0.6
MAX_CALLS = 5000


def measure_host_index(seconds: float = SECONDS) -> dict[str, Any]:
    """The workload's median call time with its 95 % interval, in ms."""
    import numpy as np
    import tensorflow as tf

    from tfaudit.measure import bootstrap_median, time_call

    rng = np.random.default_rng(0)
    matrix = tf.constant(rng.standard_normal((128, 128)).astype("float32") / 11.3)
    image = tf.constant(rng.standard_normal((1, 32, 32, 32)).astype("float32"))
    kernel = tf.constant(rng.standard_normal((3, 3, 32, 32)).astype("float32") / 17.0)

    @tf.function
    def workload(x, image):
        for _ in range(4):
            x = tf.nn.relu(tf.matmul(x, matrix))
        return tf.reduce_sum(x) + tf.reduce_sum(tf.nn.conv2d(image, kernel, 1, "SAME"))

    timing = time_call(lambda: workload(matrix, image).numpy(), warmup=WARMUP_CALLS, repeats=MAX_CALLS, max_seconds=seconds)
    interval = bootstrap_median(timing.samples_ms)
    return {
        "ms": round(interval.value, 5),
        "low": round(interval.low, 5),
        "high": round(interval.high, 5),
        "n": timing.n,
        "workload": WORKLOAD,
    }
