"""What the pruning check measures, in the worker: each sparsity's fidelity, zipped size and sparse LiteRT latency.

Per sparsity the kernels are pruned in place (``pruner``), every other variable put back, and the
serving signature run on the same inputs as before pruning; the pruned weights are written into a
copy of the SavedModel and converted to float32 TFLite (with the sparse-encoded flatbuffer beside
it) in the helper process, where LiteRT runs too: a crash there ends one measurement, not the
check. The largest sparsity within the fidelity bound is then converted with weight quantization.
Returns plain data for ``judge``, and the ``Workspace`` that ``fix`` writes its artifacts from.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generator

from tfaudit.api import Progress, SkipCheck, Yielded, one_line

from .._compression import (
    ConversionFailed,
    Converted,
    LiteRT,
    Measured,
    budget_name,
    conversion_source,
    convert_isolated,
    eval_feeds,
    export_serving,
    fidelity,
    float32_flatbuffer,
    max_fidelity_loss,
    mb,
    prepare_conversions,
    run_serving,
    samples_for,
    with_new_weights,
    within_bound,
    zipped_size,
)
from .pruner import METHOD_TFMOT, Pruner
from .sweep import SPARSITIES, TWO_FOUR, label, pick, slug, sweep_samples

if TYPE_CHECKING:  # pragma: no cover
    from tfaudit.api import Helper

COMBINED_QUANTIZATIONS = ("dynamic-range-int8", "float16")  # the first within the bound is kept


@dataclass
class Workspace:
    """What --fix-dir's writers need from the gather, in the worker: the LiteRT runner, the dense flatbuffer, the chosen models."""

    litert: LiteRT
    baseline: str | None  # the dense float32 flatbuffer
    recommended: Measured | None
    combined: Measured | None
    steps: int

    @property
    def fixable(self) -> bool:
        return self.recommended is not None and self.baseline is not None


@dataclass
class Sweep:
    """What every measurement of the sweep shares."""

    ctx: Any
    pruner: Pruner
    litert: LiteRT
    tmp: str
    source: str | None  # the SavedModel the converter reads; None when it could not be made
    reference: list[dict]  # the serving signature's outputs on litert.feeds before pruning
    base: Measured  # the unpruned float32 flatbuffer
    base_content: Converted | None


def gather(ctx, isolated: Helper, tmp: str) -> Generator[Yielded, None, tuple[dict[str, Any], Workspace]]:
    """Progress and chart samples while it measures; returns (measurements, workspace)."""
    bound = max_fidelity_loss(ctx)
    source, export_error = prepared_source(ctx, isolated, tmp)
    pruner = Pruner(ctx)
    if not pruner.kernels:
        reason = "the serving signature reads no float kernels (variables of rank >= 2) to prune"
        raise SkipCheck(reason + (f"; skipped {'; '.join(pruner.skipped)}" if pruner.skipped else ""))
    try:
        feeds = eval_feeds(ctx)
        reference = run_serving(ctx.model.serving_fn(), feeds)
    except Exception as exc:
        raise SkipCheck(f"cannot run the model on sample inputs: {one_line(exc)}") from None
    sparsities: list[float | str] = list(SPARSITIES[budget_name(ctx)])
    if pruner.method == METHOD_TFMOT:
        sparsities.append(TWO_FOUR)
    steps = len(sparsities) + 2

    yield Progress(0.0, "converting the unpruned float32 model")
    litert = LiteRT(ctx, isolated, tmp, feeds, reference)
    base, base_content = measure_unpruned(ctx, source, export_error, litert, tmp)
    sweep = Sweep(ctx, pruner, litert, tmp, source, reference, base, base_content)
    results: list[tuple[float | str, Measured]] = []
    for i, sparsity in enumerate(sparsities):
        yield Progress((i + 1) / steps, f"pruning to {label(sparsity)}")
        result = measure_sparsity(sweep, sparsity)
        results.append((sparsity, result))
        yield from sweep_samples(sparsity, result)

    recommended = pick(results, bound)
    combined = None
    if recommended is not None and base.timing is not None and base_content is not None:
        yield Progress((steps - 1) / steps, f"{label(recommended[0])} with weight quantization")
        combined = measure_combined(sweep, recommended[1], bound)
        if combined is not None:
            yield from samples_for(combined, combined.zipped_bytes)
    pruner.restore()
    measured = {
        "model": {"format": ctx.model.format, "path": ctx.model.path, "signature": ctx.model.signature},
        "synthetic_inputs": bool(ctx.inputs.synthetic), "budget": ctx.budget.name, "max_fidelity_loss": bound,
        "pruning": pruner.summary(), "unpruned": base.to_data(),
        "sweep": [{"sparsity": sparsity, **result.to_data()} for sparsity, result in results],
        "combined": combined.to_data() if combined is not None else None,
    }
    baseline = base_content.path if base_content is not None else None
    return measured, Workspace(litert, baseline, recommended[1] if recommended else None, combined, steps)


def prepared_source(ctx, isolated: Helper, tmp: str) -> tuple[str | None, str]:
    """(the SavedModel the converter reads, loaded in the helper process; or None and why it could not be made)."""
    try:
        source = conversion_source(ctx, tmp)
    except ConversionFailed as exc:
        return None, str(exc)
    prepare_conversions(isolated, ctx, source)
    return source, ""


def measure_unpruned(ctx, source: str | None, export_error: str, litert: LiteRT, tmp: str) -> tuple[Measured, Converted | None]:
    """The float32 flatbuffer of the model as it is: size, zipped size, and (when LiteRT runs it) latency and fidelity."""
    base = Measured("float32")
    try:
        if source is None:
            raise ConversionFailed(export_error)
        base_content = float32_flatbuffer(ctx, source, litert.isolated, tmp)
    except ConversionFailed as exc:
        base.error = str(exc)
        return base, None
    if base_content.select_ops:
        base.error = f"the float32 TFLite model {base_content.note}; size only"
        base.size_bytes = len(base_content.content)
    else:
        litert.measure(base, base_content.path)
    base.zipped_bytes = zipped_size(base_content.content)
    base.extra["zipped_mb"] = mb(base.zipped_bytes)
    return base, base_content


def measure_sparsity(sweep: Sweep, sparsity: float | str) -> Measured:
    """Fidelity with the kernels pruned to ``sparsity``; then the pruned model's TFLite size and sparse latency."""
    ctx, pruner = sweep.ctx, sweep.pruner
    result = Measured(label(sparsity))
    try:
        result.extra.update(pruner.apply(sparsity))
        pruner.reset_state()
        result.fidelity = fidelity(sweep.reference, run_serving(ctx.model.serving_fn(), sweep.litert.feeds))
    except Exception as exc:  # 2:4 on layers tfmot cannot wrap, for one
        result.error = f"pruning failed: {one_line(exc)}"
        pruner.restore()
        return result
    result.extra["method"] = pruner.method
    if sweep.base_content is None:
        pruner.restore()
        result.error = f"no TFLite size or latency: {sweep.base.error}"
        return result
    return convert_pruned(sweep, result)


def convert_pruned(sweep: Sweep, result: Measured) -> Measured:
    """The pruned weights in a copy of the SavedModel, converted; the sparse-encoded flatbuffer timed in turn with the dense one."""
    ctx, pruner, base_content = sweep.ctx, sweep.pruner, sweep.base_content
    assert base_content is not None
    directory = os.path.join(sweep.tmp, slug(result.name))
    try:
        try:
            with_new_weights(sweep.source, directory, pruner.originals, [v.numpy() for v in pruner.kernels])
        except LookupError:  # variables the checkpoint does not hold as such: save the whole model
            export_serving(ctx, directory)
        sparsify = not base_content.select_ops and sweep.base.timing is not None
        converted = convert_isolated(sweep.litert.isolated, directory, ctx.model.signature, "float32", directory + ".tflite",
                                     reuse=sweep.source, sparsify=sparsify)
        result.saved_model_dir = directory
    except Exception as exc:  # ConversionFailed (a crash included), or the export
        result.error = f"the pruned model did not convert: {one_line(exc)}"
        return result
    finally:
        pruner.restore()
    result.size_bytes = len(converted.content)
    result.zipped_bytes = zipped_size(converted.content)
    result.extra["zipped_mb"] = mb(result.zipped_bytes)
    if converted.sparse_path:
        tflite = sweep.litert.measure(Measured(result.name), converted.sparse_path, baseline=base_content.path)
        result.timing, result.baseline_timing, result.compared = tflite.timing, tflite.baseline_timing, tflite.compared
        result.extra["sparse_encoded_bytes"] = tflite.size_bytes
        result.extra["tflite_fidelity"] = tflite.fidelity
        if tflite.error:
            result.extra["latency_error"] = tflite.error
    return result


def measure_combined(sweep: Sweep, pruned: Measured, bound: float) -> Measured | None:
    """The recommended sparsity converted with weight quantization: dynamic-range int8, else float16."""
    directory = pruned.saved_model_dir
    if not directory or sweep.base_content is None:
        return None
    last = None
    for kind in COMBINED_QUANTIZATIONS:
        result = Measured(f"{pruned.name}+{kind}")
        try:
            converted = convert_isolated(sweep.litert.isolated, directory, sweep.ctx.model.signature, kind,
                                         combined_path(directory, kind), reuse=sweep.source)
        except ConversionFailed as exc:
            result.error = str(exc)
            last = result
            continue
        sweep.litert.measure(result, converted.path, baseline=sweep.base_content.path)
        result.zipped_bytes = zipped_size(converted.content)
        result.extra.update({"quantization": kind, "zipped_mb": mb(result.zipped_bytes)})
        last = result
        if within_bound(result.fidelity, bound):
            return result
    return last


def combined_path(pruned_dir: str, kind: str) -> str:
    return f"{pruned_dir}-{kind}.tflite"
