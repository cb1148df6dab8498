"""Tiny, deterministic model builders for the tests.

Each ``build_xxx(path)`` writes one model to ``path`` and returns ``path``.
They take about a second each and download nothing.
"""
from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402


def _weights(shape, dtype="float32", seed=0):
    return tf.Variable(np.random.default_rng(seed).standard_normal(shape).astype(dtype))


class _Dense(tf.Module):
    """y = x @ w + b; 8 -> 4, i.e. 8*4 + 4 = 36 parameters."""

    def __init__(self, dtype="float32", batch=None):
        super().__init__()
        self.w = _weights([8, 4], dtype, seed=0)
        self.b = _weights([4], dtype, seed=1)
        spec = tf.TensorSpec([batch, 8], dtype, name="x")
        self.serve = tf.function(self._serve, input_signature=[spec])

    def _serve(self, x):
        return {"y": tf.nn.relu(tf.matmul(x, self.w) + self.b)}


def build_mlp(path: str) -> str:
    """serving_default: x float32 [None, 8] -> y float32 [None, 4]; 36 parameters."""
    module = _Dense()
    tf.saved_model.save(module, path, signatures={"serving_default": module.serve})
    return path


def build_fixed_batch(path: str) -> str:
    """Like build_mlp but the serving input is fixed to [1, 8]."""
    module = _Dense(batch=1)
    tf.saved_model.save(module, path, signatures={"serving_default": module.serve})
    return path


def build_float64(path: str) -> str:
    """Like build_mlp but variables, input and output are float64."""
    module = _Dense(dtype="float64")
    tf.saved_model.save(module, path, signatures={"serving_default": module.serve})
    return path


class _Retraced(_Dense):
    @tf.function  # no input_signature: retraces for every new batch size
    def predict(self, x):
        return tf.matmul(x, self.w) + self.b


def build_retraced(path: str) -> str:
    """``predict`` traced for batch sizes 1, 2, 3, 4 (4 concrete functions) plus serving_default.

    The serving signature does not go through ``predict``, so exactly 4 traces are saved.
    """
    module = _Retraced()
    for batch in (1, 2, 3, 4):
        module.predict(tf.ones([batch, 8]))
    tf.saved_model.save(module, path, signatures={"serving_default": module.serve})
    return path


class _PythonArg(_Dense):
    @tf.function
    def scale(self, x, steps):
        for _ in range(steps):  # Python loop: unrolled, one trace per value of steps
            x = x * 2.0
        return x


def build_python_arg(path: str) -> str:
    """``scale(x, steps)`` traced with Python steps=1, 2, 3 (3 concrete functions)."""
    module = _PythonArg()
    for steps in (1, 2, 3):
        module.scale(tf.ones([2, 8]), steps)
    tf.saved_model.save(module, path, signatures={"serving_default": module.serve})
    return path


class _Sequence(tf.Module):
    def __init__(self):
        super().__init__()
        self.embedding = _weights([10, 4], seed=2)

    @tf.function(input_signature=[tf.TensorSpec([None, None], tf.int32, name="tokens")])
    def serve(self, tokens):
        embedded = tf.gather(self.embedding, tokens)  # [batch, time, 4]
        return {"pooled": tf.reduce_mean(embedded, axis=1)}


def build_sequence(path: str) -> str:
    """serving_default: tokens int32 [None, None] (ids in [0, 10)) -> pooled float32 [None, 4]."""
    module = _Sequence()
    tf.saved_model.save(module, path, signatures={"serving_default": module.serve})
    return path


class _StringInput(tf.Module):
    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="text")])
    def serve(self, text):
        return {"length": tf.strings.length(text)}


def build_string_input(path: str) -> str:
    """serving_default: text string [None] -> length int32 [None]."""
    module = _StringInput()
    tf.saved_model.save(module, path, signatures={"serving_default": module.serve})
    return path


def build_two_signatures(path: str) -> str:
    """Two signatures, neither called serving_default: "small" and "large"."""
    small, large = _Dense(batch=1), _Dense()
    module = tf.Module()
    module.small, module.large = small, large
    tf.saved_model.save(module, path, signatures={"small": small.serve, "large": large.serve})
    return path


class _Codec(tf.Module):
    def __init__(self):
        self.w = _weights([8, 4])

    @tf.function(input_signature=[tf.TensorSpec([None, 8], tf.float32, name="x")])
    def encode(self, x):
        return tf.matmul(x, self.w)

    @tf.function(input_signature=[tf.TensorSpec([None, 4], tf.float32, name="z")])
    def decode(self, z):
        return tf.matmul(z, self.w, transpose_b=True)


def build_no_signature(path: str) -> str:
    """A module saved without signatures: two traced functions, encode x [None, 8] -> [None, 4] and decode back."""
    tf.saved_model.save(_Codec(), path)
    return path


def build_tf_keras(path: str) -> str:
    """A tf_keras Sequential (8 -> Dense 4) saved as a SavedModel; has keras_metadata.pb."""
    import tf_keras

    tf_keras.utils.set_random_seed(0)
    model = tf_keras.Sequential([tf_keras.Input(shape=(8,), name="x"), tf_keras.layers.Dense(4)])
    model.save(path, save_format="tf")
    return path


def build_keras3(path: str) -> str:
    """A Keras 3 functional model (x [None, 8] -> Dense 4) saved to ``path`` (ends with .keras)."""
    import keras

    keras.utils.set_random_seed(0)
    inputs = keras.Input(shape=(8,), name="x")
    model = keras.Model(inputs, keras.layers.Dense(4, name="dense")(inputs), name="tiny")
    model.save(path)
    return path


class _FixedLengthTokens(tf.Module):
    def __init__(self):
        super().__init__()
        self.embedding = _weights([10, 4], seed=3)

    @tf.function(input_signature=[tf.TensorSpec([None, 16], tf.int32, name="tokens")])
    def serve(self, tokens):
        return {"pooled": tf.reduce_mean(tf.gather(self.embedding, tokens), axis=1)}


def build_fixed_length_tokens(path: str) -> str:
    """serving_default: tokens int32 [None, 16] (padded to 16) -> pooled float32 [None, 4]."""
    module = _FixedLengthTokens()
    tf.saved_model.save(module, path, signatures={"serving_default": module.serve})
    return path


class _HardCodedBatch(tf.Module):
    """A fixed batch of 1 that the graph relies on: tf.reshape to [1, -1] mixes rows for any other batch."""

    def __init__(self):
        super().__init__()
        self.w = _weights([16, 4], seed=2)

    @tf.function(input_signature=[tf.TensorSpec([1, 4, 4], tf.float32, name="x")])
    def serve(self, x):
        return {"y": tf.matmul(tf.reshape(x, [1, -1]), self.w)}


def build_hard_coded_batch(path: str) -> str:
    module = _HardCodedBatch()
    tf.saved_model.save(module, path, signatures={"serving_default": module.serve})
    return path


def build_tf_keras_fixed_batch(path: str) -> str:
    """A tf_keras model with Input(batch_size=1) through Flatten and Reshape (both read the static batch)."""
    import tf_keras

    tf_keras.utils.set_random_seed(0)
    inputs = tf_keras.Input(shape=(4, 4), batch_size=1, name="image")
    hidden = tf_keras.layers.Dense(6)(tf_keras.layers.Flatten()(inputs))
    outputs = tf_keras.layers.Dense(2, name="logits")(tf_keras.layers.Reshape((2, 3))(hidden))
    tf_keras.Model(inputs, outputs).save(path, save_format="tf")
    return path


def build_keras3_fixed_batch(path: str) -> str:
    """A Keras 3 functional model on Input(batch_size=1): x [1, 8] -> Dense 4, saved to ``path`` (.keras)."""
    import keras

    keras.utils.set_random_seed(0)
    inputs = keras.Input(shape=(8,), batch_size=1, name="x")
    keras.Model(inputs, keras.layers.Dense(4, name="dense")(inputs), name="tiny_fixed").save(path)
    return path
