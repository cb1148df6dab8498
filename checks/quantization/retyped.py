"""The float64 model's cost, measured: its serving graph frozen as is and re-typed to float32, timed call by call in turn.

``measure_float64`` returns None when the model has no float64 variable or signature tensor;
``float64.twin_latency`` (the judge) compares the two timings.
"""
from __future__ import annotations

from typing import Any

from tfaudit.api import compare_in_turn, one_line

from . import catalogue as text

from .._compression.feeds import latency_feed

TWIN_SECONDS_SHARE = 0.1  # of the budget's measurement time (0.2 s at quick): a few hundred pairs on small graphs


def measure_float64(ctx) -> dict[str, Any] | None:
    """The float64 variables and signature tensors (from the inventory), and the twin timings; None without float64."""
    inventory = ctx.inventory
    by_dtype = inventory.get("variables", {}).get("by_dtype", {})
    f64 = by_dtype.get("float64", {"count": 0, "parameters": 0, "bytes": 0})
    signature = inventory["signatures"][inventory["signature"]]
    tensors = [f"{kind} {t['name']}" for kind in ("inputs", "outputs") for t in signature[kind] if t["dtype"] == "float64"]
    if not f64["count"] and not tensors:
        return None
    return {
        "variables": f64,
        "signature_tensors": tensors,
        "variable_bytes_by_dtype": {k: v["bytes"] for k, v in by_dtype.items()},
        "twin": float32_twin_timings(ctx),
    }


def float32_twin_timings(ctx) -> dict[str, Any]:
    """Per-call times of the serving graph frozen as it is and with every float64 turned into float32; {"error"} when no twin can be built."""
    import numpy as np
    import tensorflow as tf

    try:
        frozen64, frozen32, names = frozen_pair(ctx.model.serving_fn())
        feed = latency_feed(ctx)
        feed64 = [tf.constant(feed[n]) for n in names]
        feed32 = [tf.constant(feed[n].astype(np.float32) if feed[n].dtype == np.float64 else feed[n]) for n in names]

        def call(fn, inputs):
            return lambda: [t.numpy() for t in tf.nest.flatten(fn(*inputs))]

        # In ABBA rounds, so both see the same moments of a shared host, until decided.
        _, rounds = compare_in_turn(call(frozen64, feed64), call(frozen32, feed32), text.FLOAT32_MINIMUM, warmup=ctx.budget.warmup,
                                    max_seconds=TWIN_SECONDS_SHARE * ctx.budget.timing_seconds, confidence=ctx.budget.confidence)
    except Exception as exc:  # graphs with float64-only ops cannot be re-typed
        return {"error": one_line(exc)}
    return {"rounds": rounds.to_json(), "confidence": ctx.budget.confidence,
            **{dtype: {"samples_ms": list(calls), "warmup": ctx.budget.warmup} for dtype, calls in (("float64", rounds.calls_a), ("float32", rounds.calls_b))}}


def frozen_pair(concrete):
    """(frozen graph, the same graph with DT_DOUBLE replaced by DT_FLOAT, input names in call order)."""
    import numpy as np
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    if not hasattr(concrete, "graph"):
        concrete = concrete.get_concrete_function()
    frozen = convert_variables_to_constants_v2(concrete)
    graph_def = frozen.graph.as_graph_def()
    retyped = tf.compat.v1.GraphDef()
    retyped.CopyFrom(graph_def)
    nodes = list(retyped.node) + [n for f in retyped.library.function for n in f.node_def]
    for node in nodes:
        for attr in node.attr.values():
            if attr.type == tf.float64.as_datatype_enum:
                attr.type = tf.float32.as_datatype_enum
            for i, t in enumerate(attr.list.type):
                if t == tf.float64.as_datatype_enum:
                    attr.list.type[i] = tf.float32.as_datatype_enum
            if attr.HasField("tensor") and attr.tensor.dtype == tf.float64.as_datatype_enum:
                value = tf.make_ndarray(attr.tensor).astype(np.float32)
                attr.tensor.CopyFrom(tf.make_tensor_proto(value))
    inputs = [t.name for t in frozen.inputs]
    outputs = [t.name for t in frozen.outputs]

    def load(gd):
        wrapped = tf.compat.v1.wrap_function(lambda: tf.compat.v1.import_graph_def(gd, name=""), [])
        return wrapped.prune([wrapped.graph.get_tensor_by_name(n) for n in inputs], [wrapped.graph.get_tensor_by_name(n) for n in outputs])

    names = [n.split(":")[0] for n in inputs]
    return load(graph_def), load(retyped), names
