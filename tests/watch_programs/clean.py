"""Seed 002's optimised patterns: input_signature, tensors for steps, one direct predict function."""
import time

import numpy as np
import tensorflow as tf
import keras

model = keras.Sequential([keras.Input((50,)), keras.layers.Dense(64, activation="relu"), keras.layers.Dense(1)])


@tf.function(input_signature=[tf.TensorSpec(shape=[None, 50], dtype=tf.float32)])
def predict_with_signature(X):
    return model(X, training=False)


@tf.function
def train_with_tensor_args(X, y, num_steps):
    loss = tf.constant(0.0)
    for i in tf.range(num_steps):
        loss += tf.reduce_mean(tf.square(tf.reduce_sum(X, axis=1) - y))
    return loss


started = time.perf_counter()
for n in (16, 32, 64, 128, 256):
    predict_with_signature(tf.random.normal([n, 50]))
X, y = tf.random.normal([32, 50]), tf.random.normal([32])
for steps in (10, 20, 30):
    train_with_tensor_args(X, y, tf.constant(steps))
batch = tf.convert_to_tensor(np.random.rand(16, 50), dtype=tf.float32)
for _ in range(20):
    predict_with_signature(batch)
print(f"loop_ms={(time.perf_counter() - started) * 1e3:.1f}")
