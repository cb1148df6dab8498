"""Calling the serving signature as a server does, in the worker and in the helper processes."""
from __future__ import annotations

import time
from typing import Callable

import numpy as np


class Endpoint:
    """The serving signature on one device, outputs copied back to the host as a server returns them."""

    def __init__(self, serve, device: str, xla: bool = False):
        import tensorflow as tf

        self.device = device
        self.fn = tf.function(lambda **kw: serve(**kw), jit_compile=True) if xla else serve

    def tensors(self, feed: dict[str, np.ndarray]) -> dict:
        import tensorflow as tf

        with tf.device(self.device):
            return {name: tf.constant(value) for name, value in feed.items()}

    def __call__(self, tensors: dict) -> dict[str, np.ndarray]:
        import tensorflow as tf

        with tf.device(self.device):
            return {name: value.numpy() for name, value in self.fn(**tensors).items()}


def timed_first(call: Callable[[], object]) -> float:
    """One call's wall time in ms (a first call: what it costs before anything is warm)."""
    start = time.perf_counter()
    call()
    return (time.perf_counter() - start) * 1000.0
