"""--fix-dir: the model re-exported with relaxed signatures, loaded back, checked and timed (runs TensorFlow, in the worker).

The batch axis of a fixed-batch signature and the varied axes of a function traced per shape are
relaxed to ``None`` (``relaxed_export`` writes and runs the code). The fixed-batch finding's
saving was predicted in memory by the same relaxation (``gather.batching_in_memory``, through
``relaxed_plan`` and ``measure_batching`` here); the artifact verifies it.
"""
from __future__ import annotations

import os
from dataclasses import replace
from string import Template
from typing import Any, Iterator

import numpy as np

from tfaudit.api import Finding, Measure, Progress, Timing, compare_in_turn, fix_dir, one_line, publish_fix, with_artifact

from . import catalogue as text
from .calling import as_tensors, call_raises, materialise, read_trace, recorded, signature_args
from .judge import batching_outcome
from .relaxed_export import OUTPUT_TOLERANCE, RelaxedPlan, export, max_relative_gap, numpy_outputs, stacked, with_paths
from .traces import ROWS_PER_EXAMPLE_REQUEST, SavedFunction, TensorArg, relaxable, relaxed_specs, varying_dims

RELAXED_FOLDER = "relaxed_signature"
KERAS_FORMATS = {"tf_keras_saved_model": "tf_keras", "keras": "keras"}


def relaxed_plan(ctx, functions: list[SavedFunction], relax_batch: bool, names) -> RelaxedPlan | None:
    """What the re-export relaxes: the batch axis, and the functions ``names``. Keras models are traced again from the
    Keras model (the batch axis only: the export holds the serving signature alone); other SavedModels from their own graphs."""
    args = signature_args(ctx)
    relaxed_inputs = [(a.name, (None,) + tuple(a.shape[1:]) if relax_batch else a.shape, a.dtype) for a in args]
    keras = KERAS_FORMATS.get(ctx.model.format)
    if keras:
        if not relax_batch:
            return None
        model = ctx.model.keras_model()
        served = numpy_outputs(ctx.model.serving_fn()(**as_tensors(ctx.inputs.make(batch=1))))
        output_names = list(getattr(model, "output_names", None) or [])
        return RelaxedPlan("serving_default", relaxed_inputs, True, keras=keras,
                           output_names=output_names if sorted(output_names) == sorted(served) else sorted(served))
    relaxed = {}
    for function in functions:
        if function.name in names:
            specs = relaxed_specs(function.traces, varying_dims(function.traces))
            relaxed[function.name] = [(spec.name, spec.shape, spec.dtype) for spec in specs]
    # A signature function's inputs are its keyword arguments, flattened in sorted order.
    return RelaxedPlan(ctx.model.signature, sorted(relaxed_inputs), relax_batch, relaxed)


def measure_batching(ctx, serve, batch: int, against_original: bool = False) -> dict[str, Any]:
    """ROWS_PER_EXAMPLE_REQUEST requests of the fixed batch answered by the original one call each and by the
    relaxed ``serve`` in one call, compared row by row, then timed call by call in turn (``against_original``: also
    ``serve`` at the fixed batch against the original). ``judge.batching_outcome`` reads what it returns."""
    rows = ROWS_PER_EXAMPLE_REQUEST
    original = ctx.model.serving_fn()
    feeds = [ctx.inputs.make(batch=batch, seed=seed) for seed in range(rows)]
    singles = [as_tensors(feed) for feed in feeds]
    together = as_tensors(stacked(feeds))
    expected = stacked([numpy_outputs(original(**feed)) for feed in singles])
    try:
        got = numpy_outputs(serve(**together))
    except Exception as exc:  # the graph hard-codes the batch size somewhere: that is the finding's answer
        return {"rows": rows * batch, "call_error": one_line(exc)}
    measured: dict[str, Any] = {"rows_in_one_call": rows * batch, "largest_output_gap": max_relative_gap(expected, got)}
    if measured["largest_output_gap"] > OUTPUT_TOLERANCE:
        return measured

    def one_call_each() -> None:
        for feed in singles:
            materialise(original(**feed))

    _, rounds = compare_in_turn(one_call_each, lambda: materialise(serve(**together)), (text.BATCHING_MINIMUM, text.BATCHING_HIGH),
                                warmup=ctx.budget.warmup, max_seconds=ctx.budget.timing_seconds, confidence=ctx.budget.confidence)
    warmup = ctx.budget.warmup
    measured.update({"rounds": rounds.to_json(), "confidence": ctx.budget.confidence,
                     "original_calls": recorded(Timing(tuple(rounds.calls_a), warmup)), "relaxed_call": recorded(Timing(tuple(rounds.calls_b), warmup))})
    if against_original:
        _, at_batch = compare_in_turn(lambda: materialise(original(**singles[0])), lambda: materialise(serve(**singles[0])),
                                      text.RE_EXPORT_MINIMUM, warmup=warmup, max_seconds=ctx.budget.timing_seconds / 2,
                                      confidence=ctx.budget.confidence)
        measured.update({"original_at_batch": recorded(Timing(tuple(at_batch.calls_a), warmup)),
                         "relaxed_at_batch": recorded(Timing(tuple(at_batch.calls_b), warmup)), "at_batch_rounds": at_batch.to_json()})
    return measured


def random_feed(args: list[TensorArg], seed: int = 0) -> list:
    """Tensors for ``args`` (None dims 1), random normals or small integers."""
    import tensorflow as tf

    rng = np.random.default_rng(seed)
    tensors = []
    for arg in args:
        shape = [1 if d is None else d for d in arg.shape]
        if arg.dtype == "bool":
            value = rng.integers(0, 2, shape).astype(bool)
        elif "int" in arg.dtype:
            value = rng.integers(0, 10, shape)
        else:
            value = rng.normal(size=shape)
        tensors.append(tf.constant(value, dtype=arg.dtype))
    return tensors


def check_relaxed_function(original: SavedFunction, original_call, restored) -> tuple[dict, str]:
    """(measured, why it is wrong or ''): the re-exported function against the original on every saved shape, and on an unsaved one."""
    varied = varying_dims(original.traces)
    gaps = []
    for position, trace in enumerate(original.traces):
        feed = random_feed(trace.tensors, seed=position)
        gaps.append(max_relative_gap(numpy_outputs(original_call(*feed)), numpy_outputs(restored(*feed))))
    first = varied[0] if varied and isinstance(varied[0]["axis"], int) else None
    unsaved = None
    if first is not None:
        size = next(n for n in range(1, max(v for v in first["values"] if v) + 2) if n not in first["values"])
        args = [TensorArg(t.name, tuple(size if (t.name == first["input"] and i == first["axis"]) else d for i, d in enumerate(t.shape)), t.dtype)
                for t in original.traces[0].tensors]
        unsaved = {"input": first["input"], "axis": first["axis"], "size": size,
                   "error": call_raises(lambda: restored(*random_feed(args))) or None}
    concrete = [read_trace(c)[1] for c in restored.concrete_functions]
    measured = {
        "function": original.name, "concrete_functions_before": len(original.traces), "concrete_functions_after": len(concrete),
        "graph_bytes_before": sum(t.graph_bytes for t in original.traces), "graph_bytes_after": sum(t.graph_bytes for t in concrete),
        "largest_output_gap_on_saved_shapes": max(gaps), "unsaved_shape_call": unsaved,
    }
    if max(gaps) > OUTPUT_TOLERANCE:
        return measured, Template(text.FIX_OTHER_RESULTS).substitute(function=original.name, gap=f"{max(gaps):.2g}")
    if unsaved and unsaved["error"]:
        return measured, Template(text.FIX_STILL_FAILS).substitute(unsaved, function=original.name)
    return measured, ""


def relaxes_anything(measured: dict) -> bool:
    """A fixed-batch finding (its batching was measured) or a function traced per shape that one relaxed function can replace."""
    return measured["batching"] is not None or any(relaxable(SavedFunction.from_json(f)) for f in measured["saved_functions"])


def write_relaxed_fix(ctx, measured: dict, judged: list) -> Iterator:
    """Write FIX_DIR/relaxed_signature/saved_model, load it back, check and time it; returns ``judged`` with the artifact attached
    to the findings it fixes, or with the reason it was not written (a generator: yields progress)."""
    functions = [SavedFunction.from_json(f) for f in measured["saved_functions"]]
    findings = [f for f in judged if isinstance(f, Finding)]
    batch_finding = next((f for f in findings if f.id == "retracing/fixed-batch-dim"), None)
    retraced = {f.evidence["function"]: f for f in findings
                if f.id == "retracing/retraced-before-export" and any(g.name == f.evidence["function"] and relaxable(g) for g in functions)}
    yield Progress(0.92, "writing the model with relaxed signatures (--fix-dir) and measuring it again")
    fixed = [f for f in (batch_finding, *retraced.values()) if f is not None]
    try:
        plan = relaxed_plan(ctx, functions, batch_finding is not None, retraced)
    except Exception as exc:  # e.g. the Keras model does not load as Keras: the finding says so, the check goes on
        return refused(judged, fixed, Template(text.FIX_NOT_PREPARED).substitute(error=one_line(exc)))
    fixed = [f for f in (batch_finding, *(retraced[name] for name in (plan.functions if plan else {}))) if f is not None]
    if plan is None or not fixed:
        return judged
    folder, made_by, why = exported(ctx, plan)
    if why:
        return refused(judged, fixed, why)
    yield Progress(0.95, "--fix-dir: loading the re-exported model back and measuring it")
    results, why = remeasured(ctx, plan, functions, folder, batch_finding)
    if why:
        import shutil

        shutil.rmtree(folder, ignore_errors=True)
        return refused(judged, fixed, why)
    what = artifact_text(plan, functions)
    attached = {}
    for name, finding in [(None, batch_finding), *((name, retraced[name]) for name in plan.functions)]:
        if finding is not None:
            verified, checked = results[name]
            attached[id(finding)] = with_artifact(finding, folder, what, made_by, verified, checked)
    return [attached.get(id(f), f) for f in judged]


def refused(judged: list, fixed: list[Finding], why: str) -> list:
    """``judged`` with the findings the fix was for saying why it was not written."""
    note = Template(text.FIX_REFUSED).substitute(why=why)
    return [replace(f, summary=f.summary + note, evidence={**f.evidence, "fix_not_written": why}) if f in fixed else f for f in judged]


def exported(ctx, plan: RelaxedPlan) -> tuple[str, str, str]:
    """(the published folder, the code that made it, '') or ('', '', why the export failed)."""
    import tempfile

    os.makedirs(fix_dir(ctx), exist_ok=True)
    with tempfile.TemporaryDirectory(dir=fix_dir(ctx), prefix=".tfaudit-relaxed-") as staging:
        try:
            script = export(plan, ctx.model.path, os.path.join(staging, "saved_model"))
        except Exception as exc:  # the graph does not import or save: a finding about the model, not an error
            return "", "", Template(text.FIX_EXPORT_FAILED).substitute(error=one_line(exc))
        folder = publish_fix(ctx, RELAXED_FOLDER, {"saved_model": os.path.join(staging, "saved_model")})
    return folder, with_paths(script, ctx.model.path, os.path.join(folder, "saved_model")), ""


def remeasured(ctx, plan: RelaxedPlan, functions: list[SavedFunction], folder: str, batch_finding: Finding | None) -> tuple[dict, str]:
    """({function name, None for the serving signature: (verified, measured)}, '') or ({}, what is wrong with the artifact)."""
    import tensorflow as tf

    try:
        back = tf.saved_model.load(os.path.join(folder, "saved_model"))
    except Exception as exc:
        return {}, Template(text.FIX_DOES_NOT_LOAD).substitute(error=one_line(exc))
    results: dict[str | None, tuple[dict, dict]] = {}
    problems = []
    try:
        for name in plan.functions:
            original = next(f for f in functions if f.name == name)
            checked, why = check_relaxed_function(original, getattr(ctx.model.obj, name), getattr(back, name))
            results[name] = ({"size_bytes": Measure(float(checked["graph_bytes_before"] - checked["graph_bytes_after"]))}, checked)
            problems += [why] if why else []
        if batch_finding is not None:
            batch = batch_finding.evidence["batch_size"]
            record = measure_batching(ctx, back.signatures[plan.signature], batch, against_original=True)
            verified, checked, why, _ = batching_outcome(record, batch)
            results[None] = (verified, checked)
            problems += [why] if why else []
    except Exception as exc:  # a call that fails in a way the checks above do not expect is still the model's answer
        problems.append(Template(text.FIX_NOT_CHECKED).substitute(error=one_line(exc)))
    return results, "; ".join(problems)


def artifact_text(plan: RelaxedPlan, functions: list[SavedFunction]) -> str:
    """What the artifact is, for its README."""
    kept = [f.name for f in functions if f.name not in plan.functions] if not plan.keras else []
    relaxed = ", ".join([Template(text.FIX_RELAXED_BATCH).substitute(signature=plan.signature)] * bool(plan.relax_batch)
                        + [Template(text.FIX_RELAXED_FUNCTION).substitute(function=name) for name in plan.functions])
    how = Template(text.RELAXED_FROM_KERAS).substitute(keras=plan.keras) if plan.keras else text.FIX_FROM_GRAPHS
    kept_text = Template(text.FIX_KEPT).substitute(functions=", ".join(f"`{k}`" for k in kept)) if kept else ""
    return Template(text.FIX_WHAT).substitute(relaxed=relaxed, how=how, kept=kept_text)
