"""Seed 002, test 2: a new batch size per call and no input_signature (``fixed``: with one)."""
import sys
import time

import tensorflow as tf
import keras

model = keras.Sequential([keras.Input((50,)), keras.layers.Dense(64, activation="relu"), keras.layers.Dense(1)])


def predict_no_signature(X):
    return model(X, training=False)


if sys.argv[1:] == ["fixed"]:
    predict_no_signature = tf.function(predict_no_signature, input_signature=[tf.TensorSpec(shape=[None, 50], dtype=tf.float32)])
else:
    predict_no_signature = tf.function(predict_no_signature)


started = time.perf_counter()
for n in (16, 32, 64, 128, 256):
    predict_no_signature(tf.random.normal([n, 50]))
print(f"loop_ms={(time.perf_counter() - started) * 1e3:.1f}")
