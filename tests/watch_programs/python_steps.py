"""Seed 002, test 3: a Python int as an argument, driving a Python loop (``fixed``: a tensor and tf.range)."""
import sys
import time

import tensorflow as tf


@tf.function
def train_with_python_args(X, y, num_steps):
    loss = tf.constant(0.0)
    for i in range(num_steps):
        loss += tf.reduce_mean(tf.square(tf.reduce_sum(X, axis=1) - y))
    return loss


X, y = tf.random.normal([32, 50]), tf.random.normal([32])
started = time.perf_counter()


@tf.function
def train_with_tensor_args(X, y, num_steps):
    loss = tf.constant(0.0)
    for i in tf.range(num_steps):
        loss += tf.reduce_mean(tf.square(tf.reduce_sum(X, axis=1) - y))
    return loss


for steps in (10, 20, 30):
    if sys.argv[1:] == ["fixed"]:
        train_with_tensor_args(X, y, tf.constant(steps))
    else:
        train_with_python_args(X, y, steps)
print(f"loop_ms={(time.perf_counter() - started) * 1e3:.1f}")
