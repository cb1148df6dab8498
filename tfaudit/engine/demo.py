"""The demo model behind ``tfaudit --demo``: a small SavedModel with planted problems.

It is a 64 -> 256 -> 256 -> 10 MLP classifier whose export has five real flaws
that tfaudit's checks should find:

1. ``serving_default`` has a fixed batch dimension: ``features`` float32 [1, 64]
   -> ``scores`` [1, 10], so a server cannot batch requests.
2. ``predict`` is a tf.function without ``input_signature`` traced for batch
   sizes 1, 2, 4, 8 and 16: five concrete functions, five copies of the graph.
3. ``refine(x, steps)`` takes ``steps`` as a Python int, traced with 1, 2, 3:
   the value is baked into each graph (unrolled loop), one graph per value.
4. 85% of every kernel's entries are ~1e-4: the weights prune very well.
5. The middle layer stores its weights in float64 (twice the bytes), cast to float32 on every
   call. (float64 *math* would also block TFLite conversion, hiding the quantization results.)

TensorFlow is imported inside ``build_demo`` only, so the CLI can import this
module without it; the CLI builds the model in a process of its own (``tfaudit.engine.launch``).
"""
from __future__ import annotations

import argparse
import os
import shutil
import tempfile

DEMO_VERSION = "2"
SEED = 20240601
TRACED_BATCH_SIZES = (1, 2, 4, 8, 16)
TRACED_REFINE_STEPS = (1, 2, 3)
NEAR_ZERO_FRACTION = 0.85


def demo_path() -> str:
    import platformdirs

    return os.path.join(platformdirs.user_cache_dir("tfaudit"), f"demo-v{DEMO_VERSION}", "saved_model")


def _prunable_kernel(rng, fan_in: int, fan_out: int):
    """A kernel where NEAR_ZERO_FRACTION of entries are ~1e-4 and the rest He-scaled."""
    import numpy as np

    near_zero = rng.random((fan_in, fan_out)) < NEAR_ZERO_FRACTION
    # The surviving entries carry the signal, so scale them for their smaller count.
    scale = np.sqrt(2.0 / (fan_in * (1.0 - NEAR_ZERO_FRACTION)))
    kernel = rng.normal(0.0, scale, (fan_in, fan_out))
    kernel[near_zero] = rng.normal(0.0, 1e-4, near_zero.sum())
    return kernel


def _make_module():
    import numpy as np
    import tensorflow as tf

    rng = np.random.default_rng(SEED)

    class Dense(tf.Module):
        def __init__(self, fan_in, fan_out, dtype, name):
            super().__init__(name=name)
            with self.name_scope:
                self.kernel = tf.Variable(_prunable_kernel(rng, fan_in, fan_out).astype(dtype), name="kernel")
                self.bias = tf.Variable(np.zeros(fan_out, dtype=dtype), name="bias")

        def __call__(self, x):
            return tf.matmul(x, tf.cast(self.kernel, x.dtype)) + tf.cast(self.bias, x.dtype)

    class DemoClassifier(tf.Module):
        def __init__(self):
            super().__init__(name="demo_classifier")
            self.dense1 = Dense(64, 256, np.float32, "dense1")
            self.dense2 = Dense(256, 256, np.float64, "dense2")  # planted: float64 weights
            self.dense3 = Dense(256, 10, np.float32, "dense3")

        def scores(self, x, steps=1):
            hidden = tf.nn.relu(self.dense1(x))
            for _ in range(steps):  # a Python loop: unrolled into the graph, once per `steps`
                hidden = tf.nn.relu(self.dense2(hidden))
            logits = self.dense3(hidden)
            return tf.nn.softmax(logits)

        # planted: fixed batch size 1 in the serving signature
        @tf.function(input_signature=[tf.TensorSpec([1, 64], tf.float32, name="features")])
        def serve(self, features):
            return {"scores": self.scores(features)}

        # planted: no input_signature, so each batch size is a separate trace
        @tf.function
        def predict(self, x):
            return self.scores(x)

        # planted: Python argument `steps`, one graph per value
        @tf.function
        def refine(self, x, steps):
            return self.scores(x, steps)

    module = DemoClassifier()
    for batch in TRACED_BATCH_SIZES:
        module.predict(tf.zeros([batch, 64]))
    for steps in TRACED_REFINE_STEPS:
        module.refine(tf.zeros([1, 64]), steps)
    return module


def build_demo(path: str) -> str:
    """Build the demo SavedModel at ``path`` unless it is already there; return ``path``."""
    path = os.path.abspath(path)
    if os.path.exists(os.path.join(path, "saved_model.pb")):
        return path
    parent = os.path.dirname(path)
    os.makedirs(parent, exist_ok=True)

    import tensorflow as tf

    # Built beside the target and renamed into place, so a reader (or a
    # concurrent builder) never sees a half-written model.
    staging = tempfile.mkdtemp(prefix=".demo-building-", dir=parent)
    os.chmod(staging, 0o755)  # mkdtemp's 0700 would otherwise become the model's mode
    logger = tf.get_logger()
    previous_level = logger.level
    logger.setLevel("ERROR")  # the retracing warning is the point of the demo, not news
    try:
        module = _make_module()
        tf.saved_model.save(module, staging, signatures={"serving_default": module.serve})
        try:
            os.replace(staging, path)
        except OSError:
            if not os.path.exists(os.path.join(path, "saved_model.pb")):
                raise
            # Another process finished first; its model is identical.
    finally:
        logger.setLevel(previous_level)
        shutil.rmtree(staging, ignore_errors=True)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tfaudit.engine.demo", description="Build the tfaudit demo SavedModel.")
    parser.add_argument("path", nargs="?", default=None, help=f"where to build it (default: {demo_path()})")
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    print(build_demo(args.path or demo_path()), flush=True)
    return 0

