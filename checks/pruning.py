"""Pruning: magnitude-prune the kernels at a sweep of sparsities and measure what it buys and costs.

Per sparsity, the kernels (float variables of rank >= 2; those whose shape is only known at run
time are skipped and named) are pruned one-shot, layer by layer, to that fraction of zeros by
magnitude, in place in the loaded model; every other variable (state a serving call may grow)
is put back before each run; then:

- fidelity: the serving signature on the same inputs, against its outputs before pruning;
- size: the float32 TFLite flatbuffer, zipped, as tfmot's pruning guide measures it (dense
  flatbuffers do not shrink; zip shows what the zeros are worth on the wire and on disk);
- latency: the flatbuffer with its sparse tensors encoded (the converter's sparsity pass) in
  the LiteRT interpreter, against the dense float32 flatbuffer. Only a measured, significant
  difference becomes a latency saving.

Method: tfmot (``prune_low_magnitude`` with a ConstantSparsity schedule, masks applied once,
``strip_pruning``; plus 2:4 ``sparsity_m_by_n``) for tf_keras SavedModels, so the numbers match
what the user would run; direct magnitude pruning of the variables for Keras 3 and plain
SavedModels. The recommendation is the largest sparsity within the fidelity bound (one-shot:
hours); when none is, pruning needs fine-tuning (days, with the tfmot training snippet).
The recommended sparsity is also converted with weight quantization and measured together.
Conversions and LiteRT runs happen in a separate process, as for quantization: a crash there
leaves the sweep's fidelity measured and says why size or latency is missing.

Metrics
-------

Only when a sparsity is recommended (none is when every swept sparsity breaks the bound):

- ``recommended_sparsity_pct`` (%, higher is better): the largest swept sparsity within the
  fidelity bound.
- ``pruned_zipped_size_bytes`` (bytes): the zipped float32 TFLite model at that sparsity; only
  when it converted.
"""
from __future__ import annotations

import os
import time
from typing import Any, Iterator

import numpy as np

from tfaudit.checks._compression import (
    ConversionFailed,
    LiteRT,
    Measured,
    attribute_paths,
    budget_name,
    conversion_source,
    convert_isolated,
    eval_feeds,
    export_serving,
    fidelity,
    fix_dir,
    float32_flatbuffer,
    max_fidelity_loss,
    mb,
    one_line,
    prepare_conversions,
    publish_fix,
    remeasure,
    run_serving,
    samples_for,
    savings,
    scratch_dir,
    serving_variables,
    severity_for,
    top1_text,
    unknown_shapes,
    with_artifact,
    with_new_weights,
    within_bound,
    zipped_size,
)
from tfaudit.api import helper_process, Check, CheckMeta, Effort, Finding, Fix, Measure, Metric, Progress, Risk, Sample, SkipCheck

CHECK = "pruning"
SPARSITIES = {"quick": (0.5, 0.75, 0.9), "standard": (0.5, 0.75, 0.9), "thorough": (0.5, 0.6, 0.7, 0.75, 0.8, 0.9, 0.95)}
TWO_FOUR = "2:4"
METHOD_TFMOT = "tfmot prune_low_magnitude (ConstantSparsity, masks applied once) + strip_pruning"
METHOD_DIRECT = "direct magnitude pruning of the variables (per tensor, smallest |w| set to zero)"
MIN_KERNEL_ELEMENTS = 16  # tiny tensors are not worth a mask


def label(sparsity: float | str) -> str:
    return f"pruned-{sparsity}" if isinstance(sparsity, str) else f"pruned-{round(sparsity * 100)}%"


def magnitude_mask(values: np.ndarray, sparsity: float) -> np.ndarray:
    """True where a weight survives: all but the ``sparsity`` fraction with the smallest magnitude."""
    flat = np.abs(values).ravel()
    drop = int(round(sparsity * flat.size))
    if drop <= 0:
        return np.ones(values.shape, dtype=bool)
    keep = np.ones(flat.size, dtype=bool)
    keep[np.argpartition(flat, drop - 1)[:drop]] = False
    return keep.reshape(values.shape)


class Pruner:
    """Prunes the loaded model's kernels in place and puts them back."""

    def __init__(self, ctx):
        self.ctx = ctx
        import tensorflow as tf

        variables = serving_variables(ctx)
        unknown = unknown_shapes(variables)
        names = attribute_paths(ctx.model.obj) if unknown else {}
        self.skipped = [f"{names.get(id(v), v.name)} {dims}: shape not known until run time" for v, dims in unknown]
        known = [v for v in variables if all(v is not u for u, _ in unknown)]
        self.kernels = [
            v for v in known
            if tf.as_dtype(v.dtype).is_floating and len(v.shape) >= 2 and int(np.prod(v.shape)) >= MIN_KERNEL_ELEMENTS
        ]
        self.originals = [v.numpy().copy() for v in self.kernels]
        # The rest (biases, and state a serving call may change): put back before every fidelity run.
        self.state = [(v, v.numpy().copy()) for v in variables if all(v is not k for k in self.kernels)]
        self.method, self.method_note = METHOD_DIRECT, ""
        self.keras = None
        if ctx.model.format == "tf_keras_saved_model":
            try:
                import tensorflow_model_optimization  # noqa: F401

                self.keras = ctx.model.keras_model()
                self.keras_weights = self.keras.get_weights()
                self.method = METHOD_TFMOT
            except Exception as exc:  # no tfmot, or the tf_keras model does not load
                self.method_note = f"tfmot not usable ({one_line(exc)}); pruned the variables directly"

    @property
    def parameters(self) -> int:
        return int(sum(v.size for v in self.originals))

    def apply(self, sparsity: float | str) -> dict[str, Any]:
        """Prune to ``sparsity`` (a fraction, or "2:4"); returns the achieved sparsity."""
        pruned = None
        if self.method == METHOD_TFMOT:
            try:
                pruned = self._tfmot_values(sparsity)
            except Exception as exc:  # a layer tfmot cannot wrap
                self.method, self.method_note = METHOD_DIRECT, f"tfmot failed ({one_line(exc)}); pruned the variables directly"
        if pruned is None:
            if sparsity == TWO_FOUR:
                raise ValueError("2:4 pruning is only measured through tfmot")
            pruned = [np.where(magnitude_mask(v, sparsity), v, 0).astype(v.dtype) for v in self.originals]
        for variable, value in zip(self.kernels, pruned):
            variable.assign(value)
        zeros = sum(int(np.sum(v == 0)) for v in pruned)
        return {"achieved_sparsity": round(zeros / max(1, self.parameters), 4), "pruned_parameters": self.parameters}

    def restore(self) -> None:
        for variable, value in zip(self.kernels, self.originals):
            variable.assign(value)

    def reset_state(self) -> None:
        """Every other variable as it was before the reference run (a stateful model's state, say)."""
        for variable, value in self.state:
            variable.assign(value)

    def _tfmot_values(self, sparsity: float | str) -> list[np.ndarray]:
        """Kernel values after tfmot's one-shot pruning, matched to the serving variables by name."""
        import tensorflow_model_optimization as tfmot
        from tensorflow_model_optimization.python.core.sparsity.keras import pruning_wrapper

        prune = tfmot.sparsity.keras
        self.keras.set_weights(self.keras_weights)  # prune_low_magnitude wraps (and then masks) these very layers
        if sparsity == TWO_FOUR:
            wrapped = prune.prune_low_magnitude(self.keras, sparsity_m_by_n=(2, 4))
        else:
            schedule = prune.ConstantSparsity(float(sparsity), begin_step=0, frequency=1)
            wrapped = prune.prune_low_magnitude(self.keras, pruning_schedule=schedule)
        for layer in wrapped.layers:
            if isinstance(layer, pruning_wrapper.PruneLowMagnitude):
                layer.pruning_step.assign(1)  # what UpdatePruningStep does before the first batch
                layer.pruning_obj.conditional_mask_update()
                layer.pruning_obj.weight_mask_op()
        stripped = prune.strip_pruning(wrapped)
        by_name = {w.name: w.numpy() for w in stripped.weights}
        self.keras.set_weights(self.keras_weights)
        values = []
        for variable, original in zip(self.kernels, self.originals):
            value = by_name.get(variable.name)
            if value is None or value.shape != original.shape:
                raise ValueError(f"no tf_keras weight matches {variable.name}")
            values.append(value)
        return values


COMBINED_QUANTIZATIONS = ("dynamic-range-int8", "float16")


class PruningCheck(Check):
    meta = CheckMeta(
        id=CHECK,
        title="Magnitude pruning",
        description=(
            "Prunes the kernels by magnitude at 50/75/90 % (tfmot on tf_keras models, directly otherwise); measures "
            "fidelity, zipped TFLite size and sparse LiteRT latency; recommends the largest sparsity within the bound."
        ),
    )

    def __init__(self):
        # The worker makes the check before it loads the model, and before any TensorFlow op:
        # the conversion process forks now, without an import of its own (see tfaudit.engine.helpers).
        self.started = time.monotonic()
        self.isolated = helper_process()

    def run(self, ctx) -> Iterator:
        bound = max_fidelity_loss(ctx)
        with scratch_dir() as tmp, self.isolated as isolated:
            isolated.deadline_for(self.started, ctx.budget)
            try:
                source = conversion_source(ctx, tmp)
            except ConversionFailed as exc:
                source, export_error = None, str(exc)
            else:
                prepare_conversions(isolated, ctx, source)
            pruner = Pruner(ctx)
            if not pruner.kernels:
                reason = "the serving signature reads no float kernels (variables of rank >= 2) to prune"
                raise SkipCheck(reason + (f"; skipped {'; '.join(pruner.skipped)}" if pruner.skipped else ""))
            try:
                feeds = eval_feeds(ctx)
                reference = run_serving(ctx.model.serving_fn(), feeds)
            except Exception as exc:
                raise SkipCheck(f"cannot run the model on sample inputs: {one_line(exc)}") from None
            sweep: list[float | str] = list(SPARSITIES[budget_name(ctx)])
            if pruner.method == METHOD_TFMOT:
                sweep.append(TWO_FOUR)
            steps = len(sweep) + 2

            yield Progress(0.0, "converting the unpruned float32 model")
            base = Measured("float32")
            litert = LiteRT(ctx, isolated, tmp, feeds, reference)
            try:
                if source is None:
                    raise ConversionFailed(export_error)
                base_content = float32_flatbuffer(ctx, source, isolated, tmp)
            except ConversionFailed as exc:
                base.error = str(exc)
                base_content = None
            if base_content is not None:
                if base_content.select_ops:
                    base.error = f"the float32 TFLite model {base_content.note}; size only"
                    base.size_bytes = len(base_content.content)
                else:
                    litert.measure(base, base_content.path)
                base.zipped_bytes = zipped_size(base_content.content)
                base.extra["zipped_mb"] = mb(base.zipped_bytes)

            results: list[tuple[float | str, Measured]] = []
            for i, sparsity in enumerate(sweep):
                yield Progress((i + 1) / steps, f"pruning to {label(sparsity)}")
                result = self._measure_sparsity(ctx, pruner, sparsity, reference, feeds, base_content, base, source, tmp, litert)
                results.append((sparsity, result))
                yield from pruning_samples(sparsity, result)

            recommended = pick(results, bound)
            if recommended is not None:
                sparsity, pruned = recommended
                yield Metric("recommended_sparsity_pct", round(sparsity * 100, 1), "%", better="higher")
                if pruned.zipped_bytes is not None:
                    yield Metric("pruned_zipped_size_bytes", pruned.zipped_bytes, "bytes")
            combined = None
            if recommended is not None and base.timing is not None:
                yield Progress((steps - 1) / steps, f"{label(recommended[0])} with weight quantization")
                combined = self._combined(ctx, recommended[1], source, litert, bound, base_content.path)
                if combined is not None:
                    yield from samples_for(combined, combined.zipped_bytes)
            fixed = {}
            if fix_dir(ctx) and recommended is not None and base_content is not None:
                yield Progress((steps - 0.5) / steps, "writing the pruned models to --fix-dir and measuring them again")
                fixed = write_fixes(ctx, litert, base_content.path, recommended[1], combined)
            pruner.restore()
        yield Progress(1.0, "done")
        yield from judge(ctx, pruner, base, results, recommended, combined, bound, fixed)

    def _measure_sparsity(self, ctx, pruner, sparsity, reference, feeds, base_content, base, source, tmp, litert) -> Measured:
        result = Measured(label(sparsity))
        try:
            result.extra.update(pruner.apply(sparsity))
            pruner.reset_state()
            result.fidelity = fidelity(reference, run_serving(ctx.model.serving_fn(), feeds))
        except Exception as exc:  # 2:4 on layers tfmot cannot wrap, for one
            result.error = f"pruning failed: {one_line(exc)}"
            pruner.restore()
            return result
        result.extra["method"] = pruner.method
        if base_content is None:
            pruner.restore()
            result.error = f"no TFLite size or latency: {base.error}"
            return result
        directory = os.path.join(tmp, result.name.replace("%", "pct").replace(":", "-"))
        try:
            try:
                with_new_weights(source, directory, pruner.originals, [v.numpy() for v in pruner.kernels])
            except LookupError:  # variables the checkpoint does not hold as such: save the whole model
                export_serving(ctx, directory)
            sparsify = not base_content.select_ops and base.timing is not None
            converted = convert_isolated(litert.isolated, directory, ctx.model.signature, "float32", directory + ".tflite", reuse=source, sparsify=sparsify)
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
            tflite = litert.measure(Measured(result.name), converted.sparse_path, baseline=base_content.path)
            result.timing, result.baseline_timing = tflite.timing, tflite.baseline_timing
            result.extra["sparse_encoded_bytes"] = tflite.size_bytes
            result.extra["tflite_fidelity"] = tflite.fidelity
            if tflite.error:
                result.extra["latency_error"] = tflite.error
        return result

    def _combined(self, ctx, pruned: Measured, source: str, litert: LiteRT, bound, baseline: str) -> Measured | None:
        """The recommended sparsity converted with weight quantization (dynamic-range int8, else float16)."""
        directory = pruned.saved_model_dir
        if not directory:
            return None
        last = None
        for kind in COMBINED_QUANTIZATIONS:
            result = Measured(f"{pruned.name}+{kind}")
            try:
                converted = convert_isolated(litert.isolated, directory, ctx.model.signature, kind, f"{directory}-{kind}.tflite", reuse=source)
            except ConversionFailed as exc:
                result.error = str(exc)
                last = result
                continue
            litert.measure(result, converted.path, baseline=baseline)
            result.zipped_bytes = zipped_size(converted.content)
            result.extra.update({"quantization": kind, "zipped_mb": mb(result.zipped_bytes)})
            last = result
            if within_bound(result.fidelity, bound):
                return result
        return last


def write_fixes(ctx, litert: LiteRT, baseline: str, pruned: Measured, combined: Measured | None) -> dict[str, dict]:
    """The pruned SavedModel and its float32 flatbuffer, and the pruned+quantized flatbuffer, in FIX_DIR, re-measured from there."""
    fixed = {}
    directory = pruned.saved_model_dir
    if directory and os.path.exists(directory + ".tflite"):
        slug = pruned.name.replace("%", "pct").replace(":", "-")
        files = {"saved_model": directory, "model.tflite": directory + ".tflite"}
        sparse = directory + ".tflite.sparse"  # what the latency was measured on: the sparse-encoded flatbuffer
        if os.path.exists(sparse):
            files["model_sparse.tflite"] = sparse
        folder = publish_fix(ctx, f"pruning-{slug}", files)
        verified, measured = remeasure(litert, baseline, os.path.join(folder, "model.tflite"), size_key="zipped_bytes")
        verified = {k: v for k, v in verified.items() if k.startswith("size")}
        if "model_sparse.tflite" in files:
            timed, measured["sparse_encoded"] = remeasure(litert, baseline, os.path.join(folder, "model_sparse.tflite"))
            verified.update({k: v for k, v in timed.items() if k.startswith("latency")})
        fixed["recommended"] = {"folder": folder, "verified": verified, "measured": measured,
                                "what": f"the model pruned to {pruned.name}: a SavedModel (saved_model/), its float32 TFLite model (model.tflite)"
                                        + (" and the same sparse-encoded (model_sparse.tflite)" if "model_sparse.tflite" in files else "")}
    if combined is not None and combined.ran and directory:
        kind = combined.extra["quantization"]
        folder = publish_fix(ctx, f"pruning-{pruned.name.replace('%', 'pct').replace(':', '-')}-{kind}", {"model.tflite": f"{directory}-{kind}.tflite"})
        verified, measured = remeasure(litert, baseline, os.path.join(folder, "model.tflite"), size_key="zipped_bytes")
        fixed["combined"] = {"folder": folder, "verified": verified, "measured": measured, "what": f"the {pruned.name}-pruned model with {kind} weights (model.tflite)"}
    return fixed


def pruning_samples(sparsity, result: Measured) -> Iterator[Sample]:
    if result.fidelity is not None and np.isfinite(result.loss) and not isinstance(sparsity, str):
        yield Sample("sparsity_vs_fidelity", round(sparsity * 100, 1), result.loss, result.name)
    yield from samples_for(result, result.zipped_bytes)


def pick(results, bound: float):
    """The largest fraction sparsity within the bound, as (sparsity, Measured)."""
    within = [(s, r) for s, r in results if not isinstance(s, str) and within_bound(r.fidelity, bound)]
    return max(within, key=lambda item: item[0]) if within else None


# --- findings -----------------------------------------------------------------------------------


def sweep_table(base: Measured, results) -> dict[str, Any]:
    table = {"unpruned": base.summary()}
    for _, result in results:
        table[result.name] = result.summary()
    return table


def judge(ctx, pruner: Pruner, base: Measured, results, recommended, combined, bound, fixed: dict | None = None) -> Iterator[Finding]:
    common = {
        "method": pruner.method,
        "method_note": pruner.method_note,
        "skipped_tensors": pruner.skipped,
        "pruned_tensors": len(pruner.kernels),
        "pruned_parameters": pruner.parameters,
        "sweep": sweep_table(base, results),
        "max_fidelity_loss": bound,
        "fidelity": "the serving signature with pruned weights vs. before pruning, same inputs",
        "size": "zip (deflate, default level) of the float32 TFLite flatbuffer, as tfmot's guide measures it",
        "latency": "LiteRT, sparse-encoded flatbuffer vs. the dense float32 flatbuffer, batch 1",
        "budget": ctx.budget.name,
    }
    fixed = fixed or {}

    def attached(finding: Finding, key: str) -> Finding:
        fix = fixed.get(key)
        return with_artifact(finding, fix["folder"], fix["what"], finding.fix.code, fix["verified"], fix["measured"]) if fix else finding

    if recommended is None:
        yield fine_tuning_finding(ctx, pruner, results, bound, common)
    else:
        yield attached(recommendation_finding(ctx, pruner, base, recommended, common), "recommended")
    if combined is not None:
        yield attached(combined_finding(ctx, base, recommended, combined, bound, common), "combined")


def skipped_note(common) -> str:
    skipped = common["skipped_tensors"]
    return f" Not pruned ({len(skipped)}): {'; '.join(skipped)}." if skipped else ""


def recommendation_finding(ctx, pruner, base, recommended, common) -> Finding:
    sparsity, result = recommended
    percent = round(sparsity * 100)
    saved, latency = (savings(base, result, "zipped_bytes") if base.zipped_bytes and result.zipped_bytes else ({}, {}))
    fid = result.fidelity
    top1 = f"; {top1_text(fid, common['max_fidelity_loss'])}" if fid.get("top1") else ""
    parts = [f"Pruning {percent}% of the kernel weights ({pruner.method.split(' (')[0]}) keeps the outputs within the bound: relative L2 error {fid['relative_l2']:.3g}{top1}."]
    if "size_bytes" in saved:
        parts.append(f"Zipped TFLite: {mb(result.zipped_bytes):.2f} MB instead of {mb(base.zipped_bytes):.2f} MB ({saved['size_pct'].value:.0f}% smaller).")
    verdict = latency.get("latency_vs_baseline", {}).get("verdict")
    if verdict:
        parts.append(f"Sparse LiteRT latency: {result.timing.median_ms:.3f} ms vs {base.timing.median_ms:.3f} ms dense ({verdict}).")
    else:
        parts.append("Latency: " + (result.extra.get("latency_error") or result.error or "not measured (no sparse-capable path here)") + ".")
    return Finding(
        id=f"{CHECK}/magnitude-{percent}",
        check=CHECK,
        severity=severity_for(saved),
        title=f"Prune {percent}% of the weights: {saved['size_pct'].value:.0f}% smaller zipped" if "size_pct" in saved else f"Prune {percent}% of the weights",
        summary=" ".join(parts) + skipped_note(common),
        evidence={**common, "recommended_sparsity": sparsity, **latency, "size_pct_of": "the zipped float32 TFLite model"},
        savings=saved,
        effort=Effort("hours", 2.0, "One-shot pruning, no training: prune, strip, convert and re-validate."),
        fix=Fix(f"Prune {percent}% of each kernel by magnitude, strip the wrappers, and ship the compressed model.", one_shot_code(ctx, sparsity, pruner)),
        risk=Risk("low" if fid["relative_l2"] > 0 else "none", "Measured on the audit inputs; re-check on real data.", fidelity_loss=fid["relative_l2"]),
        confidence=0.85 if not ctx.inputs.synthetic else 0.7,
        why="Zeros compress: the model downloads and stores smaller; sparse kernels can also run faster where the runtime supports them.",
        verify="Re-run `tfaudit PRUNED_MODEL --checks pruning` and compare its outputs with the original on real inputs.",
    )


def fine_tuning_finding(ctx, pruner, results, bound, common) -> Finding:
    measured = [(s, r) for s, r in results if r.fidelity is not None and not isinstance(s, str)]
    losses = ", ".join(f"{round(s * 100)}%: {r.loss:.3g}" for s, r in measured)
    return Finding(
        id=f"{CHECK}/needs-fine-tuning",
        check=CHECK,
        severity="info" if not measured else "low",
        title="One-shot pruning breaks the fidelity bound; pruning needs fine-tuning",
        summary=(
            f"No swept sparsity kept the relative L2 error within {bound} without training (measured: {losses or 'none'}). "
            "Pruning while fine-tuning lets the remaining weights compensate." + skipped_note(common)
        ),
        evidence=common,
        effort=Effort("days", 24.0, "Pruning during training: a training pipeline, data and several epochs."),
        fix=Fix("Prune gradually while fine-tuning with tfmot, then strip the wrappers.", fine_tuning_code(ctx)),
        risk=Risk("medium", "Accuracy after fine-tuning is not measured here."),
        confidence=0.6,
    )


def combined_finding(ctx, base, recommended, combined, bound, common) -> Finding:
    sparsity, pruned = recommended
    percent = round(sparsity * 100)
    kind = combined.extra.get("quantization", "")
    if not combined.ran:
        return Finding(
            id=f"{CHECK}/combined", check=CHECK, severity="info",
            title=f"{percent}% pruning with {kind} could not be measured",
            summary=f"The combined model did not run: {combined.error}.",
            evidence={**common, "combined": combined.summary()},
            effort=Effort("hours", 2.0, "Prune, then convert with weight quantization."), fix=Fix("See the pruning finding."),
        )
    saved = {"size_bytes": Measure(float(base.zipped_bytes - combined.zipped_bytes)), "size_pct": Measure(round(100.0 * (base.zipped_bytes - combined.zipped_bytes) / base.zipped_bytes, 2))}
    ok = within_bound(combined.fidelity, bound)
    return Finding(
        id=f"{CHECK}/combined",
        check=CHECK,
        severity=severity_for(saved) if ok else "info",
        title=f"{percent}% pruning + {kind}: {saved['size_pct'].value:.0f}% smaller zipped",
        summary=(
            f"Measured together: zipped {mb(combined.zipped_bytes):.2f} MB vs {mb(base.zipped_bytes):.2f} MB float32 "
            f"(pruning alone {mb(pruned.zipped_bytes):.2f} MB); relative L2 error {combined.loss:.3g} against the SavedModel"
            + (" — within the bound." if ok else f" — beyond the bound ({bound}).")
        ),
        evidence={**common, "combined": combined.summary(), "quantization": kind, "size_pct_of": "the zipped float32 TFLite model"},
        savings=saved if ok else {},
        effort=Effort("hours", 3.0, "One-shot pruning plus a converter setting."),
        fix=Fix(f"Prune to {percent}%, then convert with {kind}.", one_shot_code(ctx, sparsity, None) + "\n\n" + combined_code(kind)),
        risk=Risk("low", "Measured on the audit inputs; re-check on real data.", fidelity_loss=combined.loss),
        confidence=0.8,
    )


def one_shot_code(ctx, sparsity: float, pruner: Pruner | None) -> str:
    if ctx.model.format == "tf_keras_saved_model":
        return (
            "import tensorflow_model_optimization as tfmot\nimport tf_keras\n"
            "from tensorflow_model_optimization.python.core.sparsity.keras import pruning_wrapper\n\n"
            f'model = tf_keras.models.load_model("{ctx.model.path}")\n'
            f"schedule = tfmot.sparsity.keras.ConstantSparsity({sparsity}, begin_step=0, frequency=1)\n"
            "pruned = tfmot.sparsity.keras.prune_low_magnitude(model, pruning_schedule=schedule)\n"
            "for layer in pruned.layers:  # one-shot: apply the masks once, no training\n"
            "    if isinstance(layer, pruning_wrapper.PruneLowMagnitude):\n"
            "        layer.pruning_step.assign(1)\n"
            "        layer.pruning_obj.conditional_mask_update()\n"
            "        layer.pruning_obj.weight_mask_op()\n"
            "final = tfmot.sparsity.keras.strip_pruning(pruned)\n"
            'final.save("model_pruned", save_format="tf")'
        )
    load = (
        f'model = keras.saving.load_model("{ctx.model.path}")\nvariables = model.weights'
        if ctx.model.format == "keras"
        else f'model = tf.saved_model.load("{ctx.model.path}")\nvariables = model.signatures["{ctx.model.signature}"].variables'
    )
    save = 'model.save("model_pruned.keras")' if ctx.model.format == "keras" else f'tf.saved_model.save(model, "model_pruned", signatures={{"{ctx.model.signature}": model.signatures["{ctx.model.signature}"]}})'
    return (
        "import numpy as np\nimport tensorflow as tf\n" + ("import keras\n" if ctx.model.format == "keras" else "") + "\n"
        f"{load}\n"
        "for v in variables:\n"
        "    if v.dtype.is_floating and len(v.shape) >= 2:  # kernels, not biases or norms\n"
        "        w = v.numpy()\n"
        f"        threshold = np.quantile(np.abs(w), {sparsity})\n"
        "        v.assign(np.where(np.abs(w) > threshold, w, 0).astype(w.dtype))\n"
        f"{save}"
    )


def combined_code(kind: str) -> str:
    lines = ['converter = tf.lite.TFLiteConverter.from_saved_model("model_pruned")', "converter.optimizations = [tf.lite.Optimize.DEFAULT]"]
    if kind == "float16":
        lines.append("converter.target_spec.supported_types = [tf.float16]")
    lines += ['open("model_pruned_quantized.tflite", "wb").write(converter.convert())']
    return "\n".join(lines)


def fine_tuning_code(ctx) -> str:
    load = f'model = tf_keras.models.load_model("{ctx.model.path}")' if ctx.model.format == "tf_keras_saved_model" else "model = build_your_tf_keras_model()  # tfmot needs a tf_keras (Keras 2) model"
    return (
        "import tensorflow_model_optimization as tfmot\nimport tf_keras\n\n"
        f"{load}\n"
        "schedule = tfmot.sparsity.keras.PolynomialDecay(initial_sparsity=0.0, final_sparsity=0.75, begin_step=0, end_step=end_step)\n"
        "pruned = tfmot.sparsity.keras.prune_low_magnitude(model, pruning_schedule=schedule)\n"
        "pruned.compile(optimizer=tf_keras.optimizers.Adam(1e-4), loss=loss, metrics=metrics)\n"
        "pruned.fit(train_ds, epochs=epochs, validation_data=val_ds,\n"
        "           callbacks=[tfmot.sparsity.keras.UpdatePruningStep()])\n"
        "final = tfmot.sparsity.keras.strip_pruning(pruned)\n"
        'final.save("model_pruned", save_format="tf")'
    )
