"""A new Keras model object per call, passed to one tf.function (what seed 002's weight-swapping cache avoids)."""
import tensorflow as tf
import keras


@tf.function
def predict(model, x):
    return model(x, training=False)


x = tf.ones([4, 10])
for request in range(4):
    model = keras.Sequential([keras.Input((10,)), keras.layers.Dense(3)])
    predict(model, x)
