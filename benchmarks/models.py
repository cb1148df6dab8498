"""Models for the benchmarks: a small MLP, MobileNetV2 α0.35/96 and EfficientNetB0 (224×224), random weights; each can
have its body computed more than once.

``build(kind, path, repeat)`` writes a SavedModel whose ``serving_default`` averages ``repeat``
evaluations of the same body, one after the other, on slightly shifted inputs (so grappler cannot
merge them):
``repeat=2`` is the same model made about twice as slow, with the same weights and outputs' scale.
"""
from __future__ import annotations

import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

MLP_WIDTHS = (256, 1024, 1024, 10)


class Repeated(tf.Module):
    def __init__(self, body, spec: tf.TensorSpec, repeat: int, keep=None):
        super().__init__()
        self.keep = keep  # tracks the body's variables
        self.body, self.repeat = body, repeat
        self.serve = tf.function(self._serve, input_signature=[spec])

    def _serve(self, x):
        total = self.body(x)
        for k in range(1, self.repeat):
            # Depends on the previous result, so the executor cannot run the bodies side by side.
            total += self.body(x + 1e-3 * k + 0.0 * tf.reduce_mean(total))
        return {"y": total / self.repeat}


def mlp_body():
    rng = np.random.default_rng(0)
    layers = [
        (tf.Variable((rng.standard_normal((a, b)) / np.sqrt(a)).astype("float32")), tf.Variable(np.zeros(b, "float32")))
        for a, b in zip(MLP_WIDTHS, MLP_WIDTHS[1:])
    ]

    def body(x):
        for i, (w, b) in enumerate(layers):
            x = tf.matmul(x, w) + b
            x = tf.nn.relu(x) if i < len(layers) - 1 else x
        return x

    return body, tf.TensorSpec([None, MLP_WIDTHS[0]], tf.float32, name="x"), layers


def mobilenet_body():
    import keras

    keras.utils.set_random_seed(0)
    model = keras.applications.MobileNetV2(alpha=0.35, input_shape=(96, 96, 3), weights=None)
    return (lambda x: model(x, training=False)), tf.TensorSpec([None, 96, 96, 3], tf.float32, name="image"), model


def efficientnet_body():
    import keras

    keras.utils.set_random_seed(0)
    model = keras.applications.EfficientNetB0(input_shape=(224, 224, 3), weights=None)
    return (lambda x: model(x, training=False)), tf.TensorSpec([None, 224, 224, 3], tf.float32, name="image"), model


def build(kind: str, path: str, repeat: int = 1) -> str:
    body, spec, keep = {"mlp": mlp_body, "mobilenet": mobilenet_body, "efficientnet": efficientnet_body}[kind]()
    module = Repeated(body, spec, repeat, keep)
    tf.saved_model.save(module, path, signatures={"serving_default": module.serve})
    return path


def slowdown(base: str, slow: str, calls: int = 300) -> float:
    """Median batch-1 latency ratio slow/base, the two timed interleaved in this process."""
    fns = [tf.saved_model.load(p).signatures["serving_default"] for p in (base, slow)]
    name = fns[0].structured_input_signature[1]
    (key, spec), = name.items()
    x = tf.constant(np.random.default_rng(0).standard_normal([1, *spec.shape[1:]]).astype("float32"))
    times = [[], []]
    for i in range(calls + 20):
        for j, fn in enumerate(fns):
            start = time.perf_counter()
            fn(**{key: x})["y"].numpy()
            if i >= 20:
                times[j].append(time.perf_counter() - start)
    return float(np.median(times[1]) / np.median(times[0]))
