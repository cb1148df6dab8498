"""Seed 002, test 1's loop without the tf.function: model.predict() per request batch (``fixed``: one direct tf.function)."""
import sys
import time

import numpy as np
import tensorflow as tf
import keras

FIXED = sys.argv[1:] == ["fixed"]

model = keras.Sequential([keras.Input((50,)), keras.layers.Dense(64, activation="relu"), keras.layers.Dense(1)])
predict_optimized = tf.function(lambda X_tensor: model(X_tensor, training=False), reduce_retracing=True)
started = time.perf_counter()
for n in (16, 32, 64, 16):
    batch = np.random.rand(n, 50).astype("float32")
    if FIXED:
        result = predict_optimized(tf.convert_to_tensor(batch, dtype=tf.float32))
    else:
        result = model.predict(batch, verbose=0)
print(f"loop_ms={(time.perf_counter() - started) * 1e3:.1f}")
