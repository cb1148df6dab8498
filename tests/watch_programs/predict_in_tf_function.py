"""Seed 002, test 1 as written: model.predict() inside a tf.function (Keras 3 cannot trace it)."""
import numpy as np
import tensorflow as tf
import keras

model = keras.Sequential([keras.Input((50,)), keras.layers.Dense(64, activation="relu"), keras.layers.Dense(1)])


@tf.function
def predict_with_retracing(model, X):
    return model.predict(X, verbose=0)


for n in (16, 32, 64, 16):
    result = predict_with_retracing(model, np.random.rand(n, 50).astype("float32"))
