"""Seed 002's Monte-Carlo loop in Python: one small call per run, back to back (``fixed``: the runs as one batch)."""
import sys
import time

import tensorflow as tf

w = tf.Variable(tf.random.normal([8, 1]))


@tf.function
def predict(x):
    return tf.matmul(x, w)


RUNS = 400
X_base = tf.random.normal([4, 8])
started = time.perf_counter()
if sys.argv[1:] == ["fixed"]:
    noisy = X_base[None] + tf.random.normal([RUNS, *X_base.shape], stddev=0.1)
    results = tf.reshape(predict(tf.reshape(noisy, [-1, 8])), [RUNS, -1, 1])
else:
    results = [predict(X_base + tf.random.normal(tf.shape(X_base), stddev=0.1)) for _ in range(RUNS)]
print(f"loop_ms={(time.perf_counter() - started) * 1e3:.1f}")
