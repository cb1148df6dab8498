"""Input pipelines as users write them, for ``tfaudit data`` (built from generated data; nothing downloaded)."""
import time

import tensorflow as tf


def wait_on_io(x):
    time.sleep(0.002)  # a read that waits: the GIL is released, so parallel calls overlap
    return x * 2


def sequential_io_map(n=100_000):
    dataset = tf.data.Dataset.range(n)
    dataset = dataset.map(lambda x: tf.py_function(wait_on_io, [x], tf.int64))  # TensorFlow keeps py_function sequential
    dataset = dataset.batch(16)
    return dataset


def well_tuned(n=1_000_000):
    dataset = tf.data.Dataset.range(n)
    dataset = dataset.map(lambda x: tf.cast(x, tf.float32) * 2.0, num_parallel_calls=tf.data.AUTOTUNE)
    dataset = dataset.batch(256)
    return dataset.prefetch(tf.data.AUTOTUNE)


def endless(scale=1.0):
    return tf.data.Dataset.range(100).repeat().map(lambda x: tf.cast(x, tf.float32) * scale, num_parallel_calls=tf.data.AUTOTUNE)


def raises():
    raise RuntimeError("the bucket is not reachable")


def not_a_dataset():
    return [1, 2, 3]


def empty():
    return tf.data.Dataset.range(0)


def source_only(n=1_000_000):
    return tf.data.Dataset.range(n)


def shuffled_images(n=100_000, side=64, buffer=1000):
    dataset = tf.data.Dataset.range(n)
    dataset = dataset.map(lambda i: tf.random.stateless_uniform([side, side, 3], seed=tf.stack([i, 0])),  # decoded images
                          num_parallel_calls=tf.data.AUTOTUNE)
    dataset = dataset.shuffle(buffer_size=buffer)
    return dataset.batch(32).prefetch(tf.data.AUTOTUNE)
