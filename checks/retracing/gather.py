"""What the retracing check measures, in the worker; returns plain data for ``judge``.

- The restored functions that hold several concrete functions: each trace's tensor specs, Python
  values and graph size, and what a call with a shape (or Python value) no trace saved answers.
- The load time (when some function was traced per shape) and the size of saved_model.pb.
- The serving latency at batch 1, timed call by call in turn with the host reference and, for a
  fixed batch, a no-op function with the same signature; with ``--baseline-model``, the old export's.
- For a fixed batch: ROWS_PER_EXAMPLE_REQUEST requests answered in one call of the signature
  relaxed in memory (the code ``--fix-dir`` runs) against one call each.
- The serving probe and the Keras probe (``probe``).

Timings are kept whole (every call, in ms), so the judge computes their intervals itself.
"""
from __future__ import annotations

import os
import time
from string import Template
from typing import Any, Iterator

import numpy as np

from tfaudit.api import REGRESSION_MINIMUM, Progress, Timing, compare_in_turn, host_reference, load_model, one_line, time_in_turn

from . import catalogue as text
from .calling import as_tensors, call_raises, materialise, read_trace, recorded, signature_args
from .fix import measure_batching, relaxed_plan
from .probe import keras_probe, serving_probe
from .relaxed_export import relaxed_serving
from .traces import (
    ROWS_PER_EXAMPLE_REQUEST,
    SavedFunction,
    SavedTrace,
    baked_python_args,
    callable_with,
    fixed_batch,
    python_value_dtype,
    same_signature_groups,
    varying_dims,
)


# The serving latency's timing stops once every median is known within ± a fifth of the least slowdown a baseline gates
# on, after a quarter of the budget's timing time at least (medians over a stretch of the host's contention).
LATENCY_PRECISION = REGRESSION_MINIMUM.relative / 5
LATENCY_MIN_SHARE = 0.25


def gather(ctx) -> Iterator:
    """Yields progress and the probes' live latencies; returns the measurements."""
    yield Progress(0.0, "reading the saved functions")
    functions, unreadable = read_saved_functions(ctx)
    if unreadable:
        yield Progress(0.05, f"could not read the saved traces of {', '.join(unreadable)}; skipped them")
    load_ms = None
    if any(same_signature_groups(f) for f, _ in functions):
        load_ms = measure_load_ms(ctx.model.path, repeats=1 if ctx.budget.name == "quick" else 3)
    measured: dict[str, Any] = {
        "budget": ctx.budget.name,
        "model": {"path": ctx.model.path, "signature": ctx.model.signature},
        "inputs": [a.to_json() for a in signature_args(ctx)],
        "concrete_function_counts": [entry.get("concrete_functions", 0) for entry in ctx.inventory.get("functions", [])],
        "saved_functions": [saved_function_record(f, call) for f, call in functions],
        "unreadable_functions": unreadable,
        "load_ms": load_ms,
        "saved_model_pb_bytes": saved_graph_bytes(ctx.model.path),
        "probe_skipped": probe_skip_reason(ctx),
    }
    yield Progress(0.15, "checked the saved functions")
    serving = yield from serving_measurements(ctx, [f for f, _ in functions], measured["probe_skipped"])
    return {**measured, **serving}


def serving_measurements(ctx, functions: list[SavedFunction], skip: str | None) -> Iterator:
    """The latency, the old export's, the batching a fixed batch forgoes, the request streams and Keras predict()."""
    batch = fixed_batch(signature_args(ctx))
    measured: dict[str, Any] = {"latency": None, "baseline_model": None, "batching": None, "streams": None, "keras": None}
    if skip is None:
        measured["latency"] = serving_latency(ctx, with_overhead=batch is not None)
        if ctx.options.get("baseline_model"):
            measured["baseline_model"] = yield from baseline_model(ctx, ctx.options["baseline_model"])
    if batch is not None and skip is not None:  # a fixed batch means a known rank: only string inputs get here
        yield Progress(0.2, "fixed batch: latency not measured (string inputs)")
    elif batch is not None:
        yield Progress(0.2, f"timing {ROWS_PER_EXAMPLE_REQUEST} requests in one call with the batch dimension relaxed in memory")
        measured["batching"] = batching_in_memory(ctx, functions, batch)
    yield Progress(0.3, "checked the serving signature")
    if skip:
        yield Progress(0.85, f"serving probe skipped: {skip}")
    else:

        def progress(fraction: float, message: str) -> Progress:
            return Progress(0.3 + 0.55 * fraction, message)

        measured["streams"] = yield from serving_probe(ctx, option_name(functions), progress)
    yield Progress(0.9, "Keras predict() vs direct call")
    measured["keras"] = yield from keras_probe(ctx)
    return measured


# --- the saved functions -----------------------------------------------------------------------


def read_saved_functions(ctx) -> tuple[list[tuple[SavedFunction, Any]], list[str]]:
    """Restored functions holding several concrete functions, each with the restored callable, and the names that could not be read."""
    functions, unreadable = [], []
    for entry in ctx.inventory.get("functions", []):
        if entry.get("concrete_functions", 0) < 2:
            continue
        fn = getattr(ctx.model.obj, entry["name"], None)
        try:
            read = [read_trace(concrete) for concrete in fn.concrete_functions]
        except Exception:  # restored objects vary across TF versions; one odd function must not sink the check
            unreadable.append(entry["name"])
            continue
        functions.append((SavedFunction(entry["name"], read[0][0], [trace for _, trace in read]), fn))
    return functions, unreadable


def saved_function_record(function: SavedFunction, call) -> dict:
    """The function's traces, and per group of traces that differ in shape, per baked Python argument, what an unsaved call answers."""
    return {
        "name": function.name,
        "parameters": function.parameters,
        "traces": [trace.to_json() for trace in function.traces],
        "unsaved_shape_calls": [unsaved_shape_call(function, call, group[0], varying_dims(group)) for group in same_signature_groups(function)],
        "unsaved_value_calls": {name: unsaved_value_call(function, call, name, values) for name, values in baked_python_args(function).items()},
    }


def unsaved_shape_call(function: SavedFunction, call, trace: SavedTrace, varied: list[dict]) -> dict | None:
    """Call the restored function with a size no trace saved on the first varied axis; report what happens."""
    import tensorflow as tf

    axis_info = next((v for v in varied if isinstance(v["axis"], int) and all(isinstance(x, int) for x in v["values"])), None)
    if axis_info is None or not callable_with(function, trace):
        return None
    unsaved = next(n for n in range(1, max(axis_info["values"]) + 2) if n not in axis_info["values"])
    arguments = dict(trace.python_args)
    for arg in trace.tensors:
        shape = list(arg.shape)
        if arg.name == axis_info["input"]:
            shape[axis_info["axis"]] = unsaved
        arguments[arg.name] = tf.zeros([d or 1 for d in shape], arg.dtype)
    ordered = [arguments[name] for name in function.parameters if name in arguments]
    error = call_raises(lambda: call(*ordered))
    return {"input": axis_info["input"], "axis": axis_info["axis"], "size": unsaved, "error": error or None}


def unsaved_value_call(function: SavedFunction, call, name: str, values: list) -> dict | None:
    """Call with an int value of ``name`` that no trace saved (other arguments from the first trace)."""
    import tensorflow as tf

    if not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        return None
    trace = next(t for t in function.traces if t.python_args.get(name) == values[0])
    if not callable_with(function, trace):
        return None
    unsaved = max(values) + 1
    arguments = {**trace.python_args, name: unsaved}
    arguments.update({t.name: tf.zeros([d or 1 for d in t.shape], t.dtype) for t in trace.tensors})
    ordered = [arguments[p] for p in function.parameters if p in arguments]
    error = call_raises(lambda: call(*ordered))
    return {"value": unsaved, "error": error or None}


def measure_load_ms(path: str, repeats: int) -> float:
    """Median wall time of tf.saved_model.load on this model."""
    import tensorflow as tf

    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        tf.saved_model.load(path)
        times.append((time.perf_counter() - start) * 1000.0)
    return float(np.median(times))


def saved_graph_bytes(path: str) -> int | None:
    pb = os.path.join(path, "saved_model.pb")
    return os.path.getsize(pb) if os.path.isfile(pb) else None


def option_name(functions: list[SavedFunction]) -> str:
    """The per-request option the probe passes: the Python argument this model's own functions baked in, else ``top_k``."""
    for function in functions:
        for name, values in baked_python_args(function).items():
            if python_value_dtype(values) == "int32" and "/" not in name:
                return name
    return "top_k"


# --- the serving signature ---------------------------------------------------------------------


def probe_skip_reason(ctx) -> str | None:
    """Why requests cannot be synthesised for the serving probe; None when they can."""
    if any(s.shape is None for s in ctx.inputs.specs):
        return text.UNKNOWN_RANK
    if ctx.inputs.placeholder_string_inputs:
        return Template(text.STRING_INPUTS).substitute(inputs=", ".join(ctx.inputs.placeholder_string_inputs))
    return None


def serving_latency(ctx, with_overhead: bool = False) -> dict:
    """Per-call latency of the serving signature at batch 1 (at the fixed batch when it has one), of the host's reference
    workload and, ``with_overhead``, of a no-op function with the same signature (the per-call overhead), all timed call by call in turn."""
    serve = ctx.model.serving_fn()
    feed = as_tensors(ctx.inputs.make(batch=1))  # fixed batch dims are kept
    calls = [lambda: materialise(serve(**feed)), host_reference()]
    if with_overhead:
        calls.append(no_op_call(ctx, feed))
    timings = time_in_turn(*calls, warmup=ctx.budget.warmup, max_seconds=ctx.budget.timing_seconds, precision=LATENCY_PRECISION,
                           min_seconds=LATENCY_MIN_SHARE * ctx.budget.timing_seconds)
    return {"serving": recorded(timings[0]), "reference": recorded(timings[1]), "overhead": recorded(timings[2]) if with_overhead else None}


def no_op_call(ctx, feed: dict):
    """A tf.function with the serving signature that does no work, called and materialised the same way."""
    import tensorflow as tf

    args = signature_args(ctx)
    specs = [tf.TensorSpec(a.shape, a.dtype, name=a.name) for a in args]
    names = [a.name for a in args]

    def passthrough(*tensors):
        return {name: tf.identity(t) for name, t in zip(names, tensors)}

    trivial = tf.function(passthrough, input_signature=specs).get_concrete_function()
    ordered = [feed[name] for name in names]
    return lambda: materialise(trivial(*ordered))


def baseline_model(ctx, old_path: str) -> Iterator:
    """The serving latency against an older export's (``options["baseline_model"]``), in ABBA rounds until decided.

    The old export is loaded twice: its second load, timed in the same rounds, shows what two loads
    of one model differ by in this process (placement, caches), and no smaller difference is claimed.
    The audit checked before it started that the old export loads and answers these inputs; what fails
    here all the same is the check's error (``RetracingCheck.run``), never a gate passed unmeasured.
    """
    try:
        old = load_model(old_path, ctx.model.signature).serving_fn()
        again = load_model(old_path, ctx.model.signature).serving_fn()
        feed = as_tensors(ctx.inputs.make(batch=1))
        materialise(old(**feed))
        materialise(again(**feed))
    except Exception as exc:  # noqa: BLE001 - the reason goes into the check's error
        yield Progress(0.2, f"baseline model not compared: {one_line(exc)}")
        return {"path": old_path, "error": one_line(exc)}
    serve = ctx.model.serving_fn()
    yield Progress(0.2, "timing the baseline model against this one, in turn")
    _, rounds = compare_in_turn(
        lambda: materialise(old(**feed)), lambda: materialise(serve(**feed)), text.BASELINE_MODEL_MINIMUM,
        warmup=ctx.budget.warmup, max_seconds=ctx.budget.timing_seconds, confidence=ctx.budget.confidence,
        calibration=lambda: materialise(again(**feed)),
    )
    warmup = ctx.budget.warmup
    return {"path": old_path, "rounds": rounds.to_json(), "confidence": ctx.budget.confidence,
            "new": recorded(Timing(tuple(rounds.calls_b), warmup)), "old": recorded(Timing(tuple(rounds.calls_a), warmup))}


def batching_in_memory(ctx, functions: list[SavedFunction], batch: int) -> dict:
    """``fix.measure_batching`` on the serving signature relaxed in memory by the code --fix-dir runs: the prediction it verifies."""
    try:
        plan = relaxed_plan(ctx, functions, True, {})
        # The concrete function, called like a loaded signature: the tf.function's own dispatch would add ~0.3 ms a call.
        serve = relaxed_serving(plan, ctx.model.keras_model() if plan.keras else ctx.model.obj).get_concrete_function()
    except Exception as exc:  # the graph does not import, or the Keras model does not load: nothing to predict from
        return {"plan_error": one_line(exc)}
    return {**measure_batching(ctx, serve, batch), "relaxed_from": plan.keras or "graph"}
