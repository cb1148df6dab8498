"""Reading and calling the restored model in the worker: its traces, tensors in, outputs waited for, call times as plain lists."""
from __future__ import annotations

from typing import Any, Callable, Iterator

import numpy as np

from .traces import SavedTrace, TensorArg

MS_DECIMALS = 4  # 0.1 µs: below a call's jitter; keeps the stored samples short


def as_tensors(inputs: dict[str, np.ndarray]) -> dict:
    import tensorflow as tf

    return {name: tf.constant(value) for name, value in inputs.items()}


def materialise(outputs) -> None:
    import tensorflow as tf

    for tensor in tf.nest.flatten(outputs):
        tensor.numpy()


def rounded_ms(samples) -> list[float]:
    return [round(ms, MS_DECIMALS) for ms in samples]


def recorded(timing) -> dict:
    """A Timing as measurements: every call's milliseconds, and how many warm-up calls came first."""
    return {"ms": rounded_ms(timing.samples_ms), "warmup": timing.warmup}


def signature_args(ctx) -> list[TensorArg]:
    return [TensorArg(s.name, None if s.shape is None else tuple(s.shape), s.dtype) for s in ctx.inputs.specs]


def flatten_with_names(name: str, value) -> Iterator[tuple[str, Any]]:
    """Leaves of nested dicts/lists/tuples, named ``name/key/index``."""
    if isinstance(value, dict):
        for key in sorted(value, key=str):
            yield from flatten_with_names(f"{name}/{key}", value[key])
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            yield from flatten_with_names(f"{name}/{index}", item)
    else:
        yield name, value


def read_trace(concrete) -> tuple[list[str], SavedTrace]:
    """Parameter names and the tensors/Python values one concrete function was traced with.

    Nested arguments (dicts, lists of tensors) are flattened to ``name/path`` leaves.
    """
    import tensorflow as tf

    parameters = list(concrete.function_type.parameters)
    args, kwargs = concrete.structured_input_signature
    values = {**dict(zip(parameters, args)), **kwargs}
    tensors, python_args = [], {}
    for name in parameters:
        for leaf_name, leaf in flatten_with_names(name, values.get(name)):
            if isinstance(leaf, tf.TensorSpec):
                shape = None if leaf.shape.rank is None else tuple(leaf.shape.as_list())
                tensors.append(TensorArg(leaf_name, shape, leaf.dtype.name))
            elif isinstance(leaf, tf.TypeSpec):  # ragged, sparse...: compared by their text
                tensors.append(TensorArg(leaf_name, None, str(leaf)))
            else:
                python_args[leaf_name] = leaf
    function_def = concrete.function_def
    return parameters, SavedTrace(tensors, python_args, function_def.ByteSize(), len(function_def.node_def))


def call_raises(fn: Callable[[], Any]) -> str:
    """'' when the call works, else the first line of its error."""
    try:
        fn()
    except Exception as exc:  # any failure is the evidence we want, reported as text
        text = str(exc).strip().splitlines()
        first = (text[0] if text else "").removesuffix(" Got:")
        return f"{type(exc).__name__}: {first}"
    return ""
