"""What the quantization check measures, in the worker: each TFLite variant's size, LiteRT latency and fidelity.

Conversions, LiteRT runs and the debugger happen in the helper process (``Conversions.isolated``);
the worker runs the SavedModel for the reference outputs. Each variant's per-call latencies are
kept (timed call by call in turn with float32's flatbuffer), so the judge compares the variants
from the samples. Returns plain data for ``judge``, and the ``Conversions`` the --fix-dir writers
start from.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Any, Iterator

from tfaudit.api import HelperCrashed as ConversionCrashed
from tfaudit.api import HelperFailed as ConversionFailed
from tfaudit.api import Progress, SkipCheck, one_line

from .._compression.agreement import fidelity, top1_verdict, within_bound
from .._compression.conversion import convert_isolated, float32_flatbuffer, prepare_conversions
from .._compression.feeds import (
    EXTRA_ROWS,
    budget_name,
    calibration_rows,
    eval_feeds,
    input_specs,
    max_fidelity_loss,
    more_feeds,
    run_serving,
    write_feeds,
)
from .._compression.litert import LiteRT
from .._compression.savedmodel import (
    conversion_source,
    crash_evidence,
    export_serving,
    reexport_reason,
    resource_variable_ops,
    unrestored_variables,
)
from .._compression.variants import Measured, samples_for
from . import catalogue as text
from .debugger import debug_full_int8
from .ranking import VARIANTS, float32_broken, top1_candidates
from .retyped import measure_float64

# Top-1 agreement the first samples cannot resolve: more samples, up to this many, and for at
# most TOP1_SECONDS_FACTOR x the budget's time per measurement per variant.
TOP1_MAX_SAMPLES = {"quick": 128, "standard": 512, "thorough": 2048}
TOP1_SECONDS_FACTOR = 5
STEPS = len(VARIANTS) + 2  # the variants, top-1 agreement, the debugger


@dataclass
class Conversions:
    """One audit's conversions: where the flatbuffers are, what each measured, and the processes that ran them."""

    ctx: Any
    isolated: Any  # tfaudit.api.Helper: converts and runs LiteRT
    litert: LiteRT
    bound: float
    source: str  # the SavedModel directory the converter reads
    calibration: str  # the representative rows, as a feeds file
    reexported: dict[str, Any] | None  # why ``source`` is the model saved again, when it is
    results: dict[str, Measured] = field(default_factory=dict)
    paths: dict[str, str] = field(default_factory=dict)  # variant -> its flatbuffer
    debug: dict[str, Any] | None = None

    @property
    def tmpdir(self) -> str:
        return self.litert.tmpdir


def gather(ctx, isolated, tmp: str) -> Iterator:
    """Progress and each variant's scatter points as they finish; returns (measurements, Conversions)."""
    bound = max_fidelity_loss(ctx)
    try:
        source = conversion_source(ctx, tmp)
    except ConversionFailed as exc:
        raise SkipCheck(str(exc)) from None
    prepare_conversions(isolated, ctx, source)
    reexported = reexport_reason(source)
    float64 = measure_float64(ctx)
    try:
        feeds = eval_feeds(ctx)
        reference = run_serving(ctx.model.serving_fn(), feeds)
        rows = calibration_rows(ctx)
    except Exception as exc:  # inputs the model cannot take (strings, unknown ranks)
        raise SkipCheck(f"cannot run the model on sample inputs: {one_line(exc)}") from None
    calibration = write_feeds(os.path.join(tmp, "calibration.npz"), rows)
    run = Conversions(ctx, isolated, LiteRT(ctx, isolated, tmp, feeds, reference), bound, source, calibration, reexported)
    for i, name in enumerate(VARIANTS):
        yield Progress(i / STEPS, f"converting {name}")
        yield from convert_variant(run, name)
    yield Progress(len(VARIANTS) / STEPS, "top-1 agreement")
    resolve_top1(run)
    int8 = run.results["full-int8"]
    if int8.ran and "float32" in run.paths and not within_bound(int8.fidelity, bound):
        yield Progress((len(VARIANTS) + 1) / STEPS, "QuantizationDebugger on full int8")
        run.debug = debug_full_int8(ctx, run.litert, run.source, calibration, run.paths["full-int8"] + ".calibrated", run.paths["float32"])
        if run.debug.get("selective") is not None:
            run.results[text.SELECTIVE] = run.debug["selective"]
            yield from samples_for(run.debug["selective"])
    return measurements(ctx, run, float64), run


def convert_variant(run: Conversions, name: str) -> Iterator:
    """Convert and measure one variant into ``run.results``; float32 that does not reproduce the SavedModel is retried from a re-export."""
    ctx = run.ctx
    result = run.results[name] = Measured(name)
    if name != "float32" and run.results["float32"].extra.get("crash"):
        result.error = text.NOT_ATTEMPTED
        return
    out = os.path.join(run.tmpdir, f"{name}.tflite")
    try:
        if name == "float32":
            converted = float32_flatbuffer(ctx, run.source, run.isolated, run.tmpdir)
        else:
            converted = convert_isolated(run.isolated, run.source, ctx.model.signature, name, out, reuse=run.source, calibration=run.calibration)
    except ConversionCrashed as exc:
        result.error = f"the TFLite converter crashed: {exc}"
        result.extra["crash"] = {"stage": "conversion", **crash_evidence(ctx, exc)}
    except ConversionFailed as exc:
        result.error = str(exc)
    else:
        result.note = converted.note
        result.extra["select_tf_ops"] = converted.select_ops
        run.litert.measure(result, converted.path, baseline=run.paths.get("float32") if name != "float32" else None)
        run.paths[name] = converted.path
        if name == "float32":
            variable_ops = resource_variable_ops(converted.content)
            if variable_ops:
                result.extra["resource_variable_ops"] = variable_ops
    if name == "float32" and float32_broken(result, run.bound) and run.reexported is None and ctx.model.format != "keras":
        yield Progress(0.05, "float32 does not reproduce the SavedModel: converting it saved again")
        retried = retry_reexported(ctx, run.isolated, run.litert, run.tmpdir, run.bound, result)
        if retried is not None:
            run.source, result, run.paths[name] = retried
            run.results[name] = result
            run.reexported = {"why": text.REEXPORT_REPRODUCES}
            prepare_conversions(run.isolated, ctx, run.source)
    yield from samples_for(result)


def retry_reexported(ctx, isolated, litert: LiteRT, tmp: str, bound: float, first: Measured):
    """(source, float32 result, flatbuffer path) from the loaded model saved again, when that reproduces the SavedModel; else None.

    What the first try measured stays in the evidence: ``as_written`` on the new result, or
    ``reexport`` on ``first`` when the re-export did not help.
    """
    directory = os.path.join(tmp, "reexported")
    try:
        export_serving(ctx, directory)
        converted = convert_isolated(isolated, directory, ctx.model.signature, "float32", os.path.join(tmp, "float32-reexported.tflite"), reuse=directory)
    except Exception as exc:  # noqa: BLE001 - the export or the conversion: either way, the first result stands
        first.extra["reexport"] = {"tried": text.REEXPORT_TRIED, "error": one_line(exc)}
        return None
    second = Measured("float32", note=text.REEXPORTED_NOTE)
    second.extra["select_tf_ops"] = converted.select_ops
    litert.measure(second, converted.path)
    if second.ran and within_bound(second.fidelity, bound):
        second.extra["as_written"] = {"size_bytes": first.size_bytes, "fidelity": first.fidelity, **({"error": first.error} if first.error else {}),
                                      **({"resource_variable_ops": first.extra["resource_variable_ops"]} if "resource_variable_ops" in first.extra else {})}
        return directory, second, converted.path
    first.extra["reexport"] = {"tried": text.REEXPORT_TRIED, "size_bytes": second.size_bytes, "fidelity": second.fidelity,
                               **({"error": second.error} if second.error else {})}
    return None


def resolve_top1(run: Conversions) -> None:
    """More samples for the variants whose top-1 verdict the first samples leave unresolved.

    Only variants otherwise within the bound that save something (they could be recommended),
    the most promising first; a chunk of rows is run only when its cost, estimated from the
    variant's measured per-request latency, fits in the variant's time. The extra rows (and
    their SavedModel reference) are shared between variants; fidelity is then measured over
    all the rows.
    """
    ctx = run.ctx
    chunks: list[tuple[str, list]] = []  # (feeds file, reference outputs)
    limit = TOP1_MAX_SAMPLES[budget_name(ctx)]
    for name in top1_candidates(run.results, run.bound):
        result = run.results[name]
        started = time.monotonic()
        first = result.fidelity["top1"]["samples"]
        index = more_top1_samples(run, name, chunks, limit, started + TOP1_SECONDS_FACTOR * ctx.budget.timing_seconds)
        if index or top1_verdict(result.fidelity["top1"], run.bound)["verdict"] == "unresolved":
            result.extra["top1_more_samples"] = {
                "first_samples": first,
                "samples": result.fidelity["top1"]["samples"],
                "seconds": round(time.monotonic() - started, 2),
                "limit": f"{limit} samples or {TOP1_SECONDS_FACTOR * ctx.budget.timing_seconds:g} s ({ctx.budget.name} budget)",
            }


def more_top1_samples(run: Conversions, name: str, chunks: list[tuple[str, list]], limit: int, deadline: float) -> int:
    """Run chunks of EXTRA_ROWS rows through ``name`` until its top-1 verdict resolves, ``limit`` samples or ``deadline``; the chunks run."""
    ctx, litert, result = run.ctx, run.litert, run.results[name]
    chunk_seconds = EXTRA_ROWS * result.timing.median_ms / 1000
    reference, outputs = list(litert.reference), list(result.outputs)
    index = 0
    while (
        top1_verdict(result.fidelity["top1"], run.bound)["verdict"] == "unresolved"
        and result.fidelity["top1"]["samples"] < limit
        and time.monotonic() + chunk_seconds < deadline
    ):
        try:
            if index == len(chunks):
                extra = more_feeds(ctx, index)
                path = write_feeds(os.path.join(litert.tmpdir, f"more-{index}.npz"), extra)
                chunks.append((path, run_serving(ctx.model.serving_fn(), extra)))
            more = litert.outputs(run.paths[name], chunks[index][0])[0]
        except Exception as exc:  # the first samples ran; more of them should too, but never fail the check
            result.extra["top1_more_samples_error"] = one_line(exc)
            break
        outputs += more
        reference += chunks[index][1]
        result.fidelity = fidelity(reference, outputs)
        index += 1
    return index


def measurements(ctx, run: Conversions, float64: dict[str, Any] | None) -> dict[str, Any]:
    """What the judge decides from: the model and its inputs, every variant measured, the debugger's layers."""
    inventory = ctx.inventory
    broken = float32_broken(run.results["float32"], run.bound)
    return {
        "model": {"path": ctx.model.path, "signature": ctx.model.signature, "format": ctx.model.format},
        "inputs": {"specs": input_specs(ctx), "synthetic": ctx.inputs.synthetic, "has_sequence_dims": ctx.inputs.has_sequence_dims},
        "savedmodel": {"size_bytes": inventory.get("size_bytes"), "variable_bytes": (inventory.get("variables") or {}).get("bytes") or 0},
        "budget": ctx.budget.name,
        "max_fidelity_loss": run.bound,
        "reexported": run.reexported,
        # Why the graph as written loses its weights, read only when float32 does not reproduce the SavedModel.
        "diagnosis": unrestored_variables(ctx.model.path, ctx.model.signature) if broken else None,
        "float64": float64,
        "variants": {name: result.to_data() for name, result in run.results.items()},
        "debugger": {k: v for k, v in run.debug.items() if k != "selective"} if run.debug is not None else None,
    }
