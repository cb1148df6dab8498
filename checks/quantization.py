"""Quantization: convert to TFLite variants and measure size, LiteRT latency and fidelity on this host.

Variants: float32 (the baseline), float16, dynamic-range int8, full-integer int8 (float I/O,
calibrated on ``--inputs`` rows or synthetic data) and 16x8. A variant that fails to convert
is reported with the converter's reason; when Flex ops are the cause it is retried with
``SELECT_TF_OPS`` and marked so. Nothing is taken from published tables: int8 can be slower
than float on x86, and the findings only claim a latency saving that the measurement shows.

Conversions, LiteRT runs and the debugger happen in a separate process (``tfaudit.api.helper_process``): when it dies (LiteRT segfaults on a state variable of unknown shape), the variant
reports the signal, and a crash on float32 becomes ``quantization/not-convertible`` (low) with
the likely trigger and a reproduction; the other variants are then not attempted.

The recommendation is the variant within the fidelity bound (``max_fidelity_loss``; top-1 judged
with near ties apart and its interval, see ``tfaudit.checks._compression``) with the largest benefit as
tfaudit.report.priority counts it (latency % when the ms saved reach 0.05, + ½ size %, against the
float32 TFLite model). Top-1 verdicts the first samples leave unresolved get more samples
(TOP1_MAX_SAMPLES, at most TOP1_SECONDS_FACTOR x the budget's time per measurement per
variant). Variants whose benefit intervals overlap the best's low end are tied within noise:
the lower measured fidelity loss wins, then the smaller file. When full-integer int8 breaks
the bound, the QuantizationDebugger names the layers with the largest rmse/scale, and a
selective variant keeps them in float. Full int8 is calibrated once: the debugger and the
selective variant start from that calibrated model, the one measured. float64 weights or
inputs get their own finding with the measured cost: the graph frozen as is and re-typed to
float32, timed call by call in turn; a latency saving is claimed only when its interval's low
end is at least MIN_FLOAT32_SAVING_PCT (else it came and went between runs of the demo).
When the selective variant is within the bound and smaller than float32, ``quantization/full-int8-fidelity``
claims its savings (its fix), and ``--fix-dir`` writes it beside the recommended variant.

The float32 TFLite model must reproduce the SavedModel (within the bound) before any variant
is compared with it: when it does not, the check says so (``quantization/float32-mismatch``,
high when the outputs are unrelated, e.g. the weights never made it into the flatbuffer) and
recommends nothing. One cause is fixed on the way: a SavedModel whose graph restores other
variable handles than its signature reads (a Keras 3 model tracked inside a tf.Module) is
converted from the loaded model saved again (``conversion_source``); a float32 model out of
the bound for any other reason gets one such re-export tried, and is used when it reproduces.

Metrics
-------

- ``tflite_float32_size_bytes`` (bytes): the float32 flatbuffer, when it converted.
- ``tflite_float32_latency_ms`` (ms): its median LiteRT latency per request, with the bootstrap
  95 % interval; only when LiteRT ran it.
- ``tflite_recommended_size_bytes`` (bytes) and ``tflite_recommended_fidelity_loss`` (relative
  L2 error against the SavedModel, lower is better): the recommended variant's, with the
  variant as ``subject``; only when a variant is recommended.
"""
from __future__ import annotations

import csv
import io
import os
import time
from typing import Any, Iterator

import numpy as np

from tfaudit.checks._compression import (
    ConversionCrashed,
    ConversionFailed,
    Measured,
    benefit_points,
    budget_name,
    calibrate_only,
    calibration_rows,
    conversion_source,
    convert_isolated,
    crash_evidence,
    EXTRA_ROWS,
    eval_feeds,
    export_serving,
    fidelity,
    fix_dir,
    float32_flatbuffer,
    interpreter_runner,
    latency_feed,
    loaded,
    max_fidelity_loss,
    mb,
    LiteRT,
    more_feeds,
    one_line,
    prepare_conversions,
    pareto_frontier,
    publish_fix,
    remeasure,
    quiet_converter,
    read_feeds,
    representative_code,
    reexport_reason,
    resource_variable_ops,
    reuse_loaded_model,
    run_serving,
    samples_for,
    savings,
    scratch_dir,
    severity_for,
    top1_text,
    top1_verdict,
    unrestored_variables,
    with_artifact,
    within_bound,
    write_feeds,
)
from tfaudit.api import Helper, helper_process, Check, CheckMeta, Effort, Finding, Fix, Measure, Metric, Progress, Risk, SkipCheck

CHECK = "quantization"
VARIANTS = ("float32", "float16", "dynamic-range-int8", "full-int8", "int16x8")
SELECTIVE = "full-int8-selective"
TITLES = {
    "float32": "float32 TFLite",
    "float16": "float16 weights",
    "dynamic-range-int8": "dynamic-range int8 (int8 weights, float activations)",
    "full-int8": "full-integer int8",
    "int16x8": "16x8 (int16 activations, int8 weights)",
    SELECTIVE: "full-integer int8 with the worst layers kept in float",
}
HEALTHY_RMSE_PER_SCALE = 0.289  # uniform rounding error of one quantization step: sqrt(1/12)
CULPRIT_RATIO = 1.5  # layers above 1.5x the healthy ratio are culprits
MAX_DENYLISTED = {"quick": 3, "standard": 5, "thorough": 10}
# float64 → float32: a latency saving is claimed only when its interval's low end is at least this share of the
# float64 latency. Timed apart, 15 calls each, the demo's saving came and went (0 % vs 21–45 %) between runs.
MIN_FLOAT32_SAVING_PCT = 10.0
TWIN_SECONDS_SHARE = 0.1  # of the budget's measurement time (0.2 s at quick): a few hundred pairs on small graphs
# Top-1 agreement the first samples cannot resolve: more samples, up to this many, and for at
# most TOP1_SECONDS_FACTOR x the budget's time per measurement per variant.
TOP1_MAX_SAMPLES = {"quick": 128, "standard": 512, "thorough": 2048}
TOP1_SECONDS_FACTOR = 5
FLOAT64 = ("float64",)


VARIANT_LINES = {
    "float32": [],
    "float16": ["converter.optimizations = [tf.lite.Optimize.DEFAULT]", "converter.target_spec.supported_types = [tf.float16]"],
    "dynamic-range-int8": ["converter.optimizations = [tf.lite.Optimize.DEFAULT]  # int8 weights, no data needed"],
    "full-int8": [
        "converter.optimizations = [tf.lite.Optimize.DEFAULT]",
        "converter.representative_dataset = representative_dataset",
        "converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]",
        "# inputs and outputs stay float32; set converter.inference_input_type = tf.int8 for an all-int8 graph",
    ],
    "int16x8": [
        "converter.optimizations = [tf.lite.Optimize.DEFAULT]",
        "converter.representative_dataset = representative_dataset",
        "converter.target_spec.supported_ops = [tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8]",
    ],
}


def converter_code(ctx, name: str, denylisted: list[str] | None = None, select_ops: bool = False, resave: bool = False) -> str:
    if resave and ctx.model.format != "keras":
        head = (
            "import tensorflow as tf\n\n"
            f'loaded = tf.saved_model.load("{ctx.model.path}")\n'
            "# Saved again, the signature reads the variables the restore op restores: converted as written, the weights are lost.\n"
            f'tf.saved_model.save(loaded, "resaved_saved_model", signatures={{"{ctx.model.signature}": loaded.signatures["{ctx.model.signature}"]}})\n'
            f'converter = tf.lite.TFLiteConverter.from_saved_model("resaved_saved_model", signature_keys=["{ctx.model.signature}"])\n'
        )
    elif ctx.model.format == "keras":
        head = (
            "import keras\nimport tensorflow as tf\n\n"
            f'keras.saving.load_model("{ctx.model.path}").export("exported_saved_model")\n'
            'converter = tf.lite.TFLiteConverter.from_saved_model("exported_saved_model", signature_keys=["serving_default"])\n'
        )
    else:
        head = (
            "import tensorflow as tf\n\n"
            f'converter = tf.lite.TFLiteConverter.from_saved_model("{ctx.model.path}", signature_keys=["{ctx.model.signature}"])\n'
        )
    base = "full-int8" if name == SELECTIVE else name
    lines = list(VARIANT_LINES[base])
    if select_ops:
        lines += [
            "converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS, tf.lite.OpsSet.SELECT_TF_OPS]  # needs the Flex delegate at run time",
            "converter._experimental_lower_tensor_list_ops = False",
        ]
    code = head
    if base in ("full-int8", "int16x8"):
        code += "\n" + representative_code(ctx) + "\n"
    code += "\n".join(lines) + ("\n" if lines else "")
    if name == SELECTIVE:
        denied = ",\n".join(f'        "{node}"' for node in denylisted or [])
        code += (
            "debug_options = tf.lite.experimental.QuantizationDebugOptions(denylisted_nodes=[\n"
            f"{denied},\n    ])  # these layers stay float\n"
            "debugger = tf.lite.experimental.QuantizationDebugger(\n"
            "    converter=converter, debug_options=debug_options,\n"
            "    debug_dataset=lambda: ([row[name] for name in sorted(row)] for row in representative_dataset()))\n"
            "tflite_model = debugger.get_nondebug_quantized_model()\n"
        )
    else:
        code += "tflite_model = converter.convert()\n"
    return code + f'open("model_{name}.tflite", "wb").write(tflite_model)'


class QuantizationCheck(Check):
    meta = CheckMeta(
        id=CHECK,
        title="Quantization and TFLite variants",
        description=(
            "Converts the model to float32, float16, dynamic-range int8, full int8 and 16x8 TFLite; measures size, "
            "LiteRT latency and fidelity against the SavedModel; recommends the best variant within the fidelity bound."
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
                raise SkipCheck(str(exc)) from None
            prepare_conversions(isolated, ctx, source)
            reexported = reexport_reason(source)
            yield from float64_findings(ctx)
            try:
                feeds = eval_feeds(ctx)
                reference = run_serving(ctx.model.serving_fn(), feeds)
                rows = calibration_rows(ctx)
            except Exception as exc:  # inputs the model cannot take (strings, unknown ranks)
                raise SkipCheck(f"cannot run the model on sample inputs: {one_line(exc)}") from None
            calibration = write_feeds(os.path.join(tmp, "calibration.npz"), rows)
            litert = LiteRT(ctx, isolated, tmp, feeds, reference)

            results: dict[str, Measured] = {}
            paths: dict[str, str] = {}
            for i, name in enumerate(VARIANTS):
                yield Progress(i / (len(VARIANTS) + 2), f"converting {name}")
                result = results[name] = Measured(name)
                if name != "float32" and results["float32"].extra.get("crash"):
                    result.error = "not attempted: TFLite crashed on the float32 model of the same graph"
                    continue
                out = os.path.join(tmp, f"{name}.tflite")
                try:
                    if name == "float32":
                        converted = float32_flatbuffer(ctx, source, isolated, tmp)
                    else:
                        converted = convert_isolated(isolated, source, ctx.model.signature, name, out, reuse=source, calibration=calibration)
                except ConversionCrashed as exc:
                    result.error = f"the TFLite converter crashed: {exc}"
                    result.extra["crash"] = {"stage": "conversion", **crash_evidence(ctx, exc)}
                except ConversionFailed as exc:
                    result.error = str(exc)
                else:
                    result.note = converted.note
                    result.extra["select_tf_ops"] = converted.select_ops
                    litert.measure(result, converted.path, baseline=paths.get("float32") if name != "float32" else None)
                    paths[name] = converted.path
                    if name == "float32":
                        variable_ops = resource_variable_ops(converted.content)
                        if variable_ops:
                            result.extra["resource_variable_ops"] = variable_ops
                if name == "float32" and float32_broken(result, bound) and reexported is None and ctx.model.format != "keras":
                    yield Progress(0.05, "float32 does not reproduce the SavedModel: converting it saved again")
                    retried = retry_reexported(ctx, isolated, litert, tmp, bound, result)
                    if retried is not None:
                        source, result, paths[name] = retried
                        results[name] = result
                        reexported = {"why": "the float32 conversion of the SavedModel as written did not reproduce its outputs; the loaded model saved again does"}
                        prepare_conversions(isolated, ctx, source)
                yield from samples_for(result)
                if name == "float32":
                    yield from float32_metrics(result)

            yield Progress(len(VARIANTS) / (len(VARIANTS) + 2), "top-1 agreement")
            resolve_top1(ctx, litert, results, paths, bound)
            int8 = results["full-int8"]
            debug = None
            if int8.ran and "float32" in paths and not within_bound(int8.fidelity, bound):
                yield Progress((len(VARIANTS) + 1) / (len(VARIANTS) + 2), "QuantizationDebugger on full int8")
                debug = debug_full_int8(ctx, litert, source, calibration, paths["full-int8"] + ".calibrated", paths["float32"])
                if debug.get("selective") is not None:
                    results[SELECTIVE] = debug["selective"]
                    yield from samples_for(debug["selective"])
            fixed = fixed_selective = None
            if fix_dir(ctx):
                yield Progress(0.98, "writing the recommended variant to --fix-dir and measuring it again")
                fixed = write_fix(ctx, litert, results, paths, bound)
                fixed_selective = write_selective_fix(ctx, litert, results, paths, bound)
        yield Progress(1.0, "done")
        yield from judge(ctx, results, bound, debug, reexported, fixed, fixed_selective)


def write_selective_fix(ctx, litert: LiteRT, results: dict[str, Measured], paths: dict[str, str], bound: float) -> dict | None:
    """The selective int8 flatbuffer (the full-int8 finding's fix) in FIX_DIR, when it was built and is within the bound."""
    built = os.path.join(litert.tmpdir, SELECTIVE + ".tflite")
    if not selective_savings(results["float32"], results.get(SELECTIVE), bound) or not os.path.isfile(built):
        return None
    return published_variant(ctx, litert, SELECTIVE, built, paths["float32"],
                             "the int8 TFLite model with the layers the QuantizationDebugger named kept in float (model.tflite)")


def published_variant(ctx, litert: LiteRT, name: str, flatbuffer: str, float32: str, what: str) -> dict:
    """``flatbuffer`` copied to FIX_DIR/quantization-NAME/model.tflite and re-measured from there against ``float32``."""
    folder = publish_fix(ctx, f"quantization-{name}", {"model.tflite": flatbuffer})
    verified, measured = remeasure(litert, float32, os.path.join(folder, "model.tflite"))
    return {"folder": folder, "verified": verified, "measured": measured, "what": what}


def write_fix(ctx, litert: LiteRT, results: dict[str, Measured], paths: dict[str, str], bound: float) -> dict | None:
    """The recommended flatbuffer in FIX_DIR/quantization-VARIANT/model.tflite, re-measured from there against float32."""
    base = results["float32"]
    if float32_broken(base, bound) or not base.ran:
        return None
    recommended, _, _ = rank_variants(base, results, bound)
    if recommended is None or recommended["name"] not in paths:
        return None
    name = recommended["name"]
    return published_variant(ctx, litert, name, paths[name], paths["float32"], f"the {name} TFLite model (model.tflite)")


def retry_reexported(ctx, isolated: Helper, litert: LiteRT, tmp: str, bound: float, first: Measured):
    """(source, float32 result, flatbuffer path) from the loaded model saved again, when that reproduces the SavedModel; else None.

    What the first try measured stays in the evidence: ``as_written`` on the new result, or
    ``reexport`` on ``first`` when the re-export did not help.
    """
    directory = os.path.join(tmp, "reexported")
    try:
        export_serving(ctx, directory)
        converted = convert_isolated(isolated, directory, ctx.model.signature, "float32", os.path.join(tmp, "float32-reexported.tflite"), reuse=directory)
    except Exception as exc:  # noqa: BLE001 - the export or the conversion: either way, the first result stands
        first.extra["reexport"] = {"tried": "the loaded model saved again with tf.saved_model.save, then converted", "error": one_line(exc)}
        return None
    second = Measured("float32", note="converted from the loaded model saved again: converted as written, it did not reproduce the SavedModel")
    second.extra["select_tf_ops"] = converted.select_ops
    litert.measure(second, converted.path)
    if second.ran and within_bound(second.fidelity, bound):
        second.extra["as_written"] = {"size_bytes": first.size_bytes, "fidelity": first.fidelity, **({"error": first.error} if first.error else {}),
                                      **({"resource_variable_ops": first.extra["resource_variable_ops"]} if "resource_variable_ops" in first.extra else {})}
        return directory, second, converted.path
    first.extra["reexport"] = {"tried": "the loaded model saved again with tf.saved_model.save, then converted",
                               "size_bytes": second.size_bytes, "fidelity": second.fidelity, **({"error": second.error} if second.error else {})}
    return None


def float32_broken(result: Measured, bound: float) -> bool:
    """The float32 flatbuffer converted but does not reproduce the SavedModel: outputs beyond the bound, or resource variables LiteRT cannot read."""
    if result.extra.get("crash") or not result.size_bytes:
        return False
    if result.fidelity is not None:
        return not within_bound(result.fidelity, bound)
    return any(op in result.error for op in ("READ_VARIABLE", "VAR_HANDLE", "ASSIGN_VARIABLE"))


def resolve_top1(ctx, litert: LiteRT, results: dict[str, Measured], paths: dict[str, str], bound: float) -> None:
    """More samples for the variants whose top-1 verdict the first samples leave unresolved.

    Only variants otherwise within the bound that save something (they could be recommended),
    the most promising first; a chunk of rows is run only when its cost, estimated from the
    variant's measured per-request latency, fits in the variant's time. The extra rows (and
    their SavedModel reference) are shared between variants; fidelity is then measured over
    all the rows.
    """
    base = results["float32"]
    candidates = []
    for name, result in results.items():
        if name == "float32" or not result.ran or not result.fidelity.get("top1") or result.loss > bound or not base.ran:
            continue
        points = benefit_points(savings(base, result)[0], "high")
        if points > 0:
            candidates.append((-points, name))
    chunks: list[tuple[str, list]] = []  # (feeds file, reference outputs)
    limit = TOP1_MAX_SAMPLES[budget_name(ctx)]
    for _, name in sorted(candidates):
        result = results[name]
        started = time.monotonic()
        deadline = started + TOP1_SECONDS_FACTOR * ctx.budget.timing_seconds
        chunk_seconds = EXTRA_ROWS * result.timing.median_ms / 1000
        reference, outputs = list(litert.reference), list(result.outputs)
        first = result.fidelity["top1"]["samples"]
        index = 0
        while (
            top1_verdict(result.fidelity["top1"], bound)["verdict"] == "unresolved"
            and result.fidelity["top1"]["samples"] < limit
            and time.monotonic() + chunk_seconds < deadline
        ):
            try:
                if index == len(chunks):
                    extra = more_feeds(ctx, index)
                    path = write_feeds(os.path.join(litert.tmpdir, f"more-{index}.npz"), extra)
                    chunks.append((path, run_serving(ctx.model.serving_fn(), extra)))
                more, _, _ = litert.outputs(paths[name], chunks[index][0])
            except Exception as exc:  # the first samples ran; more of them should too, but never fail the check
                result.extra["top1_more_samples_error"] = one_line(exc)
                break
            outputs += more
            reference += chunks[index][1]
            result.fidelity = fidelity(reference, outputs)
            index += 1
        if index or top1_verdict(result.fidelity["top1"], bound)["verdict"] == "unresolved":
            result.extra["top1_more_samples"] = {
                "first_samples": first,
                "samples": result.fidelity["top1"]["samples"],
                "seconds": round(time.monotonic() - started, 2),
                "limit": f"{limit} samples or {TOP1_SECONDS_FACTOR * ctx.budget.timing_seconds:g} s ({ctx.budget.name} budget)",
            }


def float32_metrics(result: Measured) -> Iterator[Metric]:
    if result.size_bytes:
        yield Metric("tflite_float32_size_bytes", result.size_bytes, "bytes")
    if result.timing is not None:
        latency = result.timing.median_interval()
        yield Metric("tflite_float32_latency_ms", latency.value, "ms", latency.low, latency.high)


# --- the debugger ---------------------------------------------------------------------------------


def debug_full_int8(ctx, litert: LiteRT, source: str, calibration: str, calibrated: str, float32: str) -> dict[str, Any]:
    """Per-layer rmse/scale from the QuantizationDebugger, and the selective variant without the culprits.

    Runs in the conversion process (the debugger converts and runs native code too) and starts
    from the full-int8 variant's calibrated model instead of calibrating again (~4 s on
    MobileNetV2): it debugs exactly the model that was measured.
    """
    out = os.path.join(litert.tmpdir, SELECTIVE + ".tflite")
    try:
        debug = litert.isolated.call(
            "running the QuantizationDebugger", "tfaudit.checks.quantization:debug_job",
            source=source, signature=ctx.model.signature, calibration=calibration, calibrated=calibrated,
            float32=float32, out=out, max_denylisted=MAX_DENYLISTED[budget_name(ctx)],
        )
    except ConversionCrashed as exc:
        return {"error": f"QuantizationDebugger crashed: {exc}"}
    except ConversionFailed as exc:  # ran into the check's time limit
        return {"error": f"QuantizationDebugger did not finish: {exc}"}
    if "error" in debug:
        return {"error": f"QuantizationDebugger failed: {debug['error']}"}
    selective = Measured(SELECTIVE)
    failed = debug.pop("selective_failed", None)
    if failed:
        selective.error = failed
    else:
        litert.measure(selective, out, baseline=float32)
    debug["selective"] = selective
    return debug


def debug_job(source: str, signature: str, calibration: str, calibrated: str, float32: str, out: str, max_denylisted: int) -> dict[str, Any]:
    """In the conversion process: the debugger's layer statistics and the selective flatbuffer at ``out``."""
    import tensorflow as tf

    rows = read_feeds(calibration)
    with open(calibrated, "rb") as f:
        calibrated_content = f.read()
    with open(float32, "rb") as f:
        float32_content = f.read()
    try:
        with reuse_loaded_model(loaded(source)), quiet_converter():
            converter = tf.lite.TFLiteConverter.from_saved_model(source, signature_keys=[signature])
        calibrate_only(lambda: iter(rows))(converter)
        converter.convert = lambda: calibrated_content  # what the debugger's own converter.convert() would return
        order = input_order(float32_content, signature, list(rows[0]))
        dataset = lambda: ([row[name] for name in order] for row in rows)  # noqa: E731 - the debugger wants a factory
        with quiet_converter():
            debugger = tf.lite.experimental.QuantizationDebugger(converter=converter, debug_dataset=dataset)
            debugger.run()
        layers = layer_ratios(debugger)
    except Exception as exc:  # the debugger is experimental; its failure must not hide the other results
        return {"error": one_line(exc)}
    culprits = [layer for layer in layers if layer["rmse_per_scale"] > CULPRIT_RATIO * HEALTHY_RMSE_PER_SCALE]
    denylisted = (culprits or layers)[:max_denylisted]
    result: dict[str, Any] = {"layers": layers[:10], "culprits_stand_out": bool(culprits), "denylisted": [layer["tensor"] for layer in denylisted]}
    try:
        options = tf.lite.experimental.QuantizationDebugOptions(denylisted_nodes=result["denylisted"])
        try:
            debugger.options = options
        except ValueError:
            # The setter rebuilds the debug model and refuses one with no NumericVerify op left, i.e. when every
            # quantized layer is denylisted (the demo's 3 layers); the non-debug model needs only the options.
            debugger._debug_options = options
        with quiet_converter():
            content = debugger.get_nondebug_quantized_model()
    except Exception as exc:
        result["selective_failed"] = f"selective quantization failed: {one_line(exc)}"
        return result
    with open(out, "wb") as f:
        f.write(content)
    return result


def input_order(float32_content: bytes, signature: str, names: list[str]) -> list[str]:
    """The order the debugger feeds inputs in: the interpreter's input tensors, matched to signature names."""
    if len(names) == 1:
        return names
    runner = interpreter_runner(float32_content, signature)
    index = {name: detail["index"] for name, detail in runner.get_input_details().items()}
    return sorted(names, key=lambda name: index[name])


def layer_ratios(debugger) -> list[dict[str, Any]]:
    """Layers sorted worst first by rmse/scale (≈0.289 is one rounding step: healthy)."""
    buffer = io.StringIO()
    debugger.layer_statistics_dump(buffer)
    buffer.seek(0)
    layers = []
    for row in csv.DictReader(buffer):
        scale = float(row["scale"])
        if scale <= 0:
            continue
        ratio = float(row["mean_squared_error"]) ** 0.5 / scale
        layers.append({"op": row["op_name"], "tensor": row["tensor_name"], "rmse_per_scale": round(ratio, 3)})
    return sorted(layers, key=lambda layer: -layer["rmse_per_scale"])


# --- findings -----------------------------------------------------------------------------------


def variant_table(results: dict[str, Measured]) -> dict[str, Any]:
    return {name: r.summary() for name, r in results.items()}


def judge(ctx, results: dict[str, Measured], bound: float, debug: dict | None, reexported: dict | None = None,
          fixed: dict | None = None, fixed_selective: dict | None = None) -> Iterator[Finding]:
    base = results["float32"]
    table = variant_table(results)
    frontier = pareto_frontier(list(results.values()))
    common = {
        "variants": table,
        "pareto_frontier": frontier,
        "max_fidelity_loss": bound,
        "fidelity_bound_means": (
            f"relative L2 error <= {bound}; for class scores, top-1 agreement >= {1 - bound:.0%} judged on its 95 % interval, "
            "flips on near ties not counted (see checks/_compression.py and each variant's fidelity.top1)"
        ),
        "baseline": "float32 TFLite (size and LiteRT latency); fidelity against the original SavedModel",
        "savedmodel_size_bytes": ctx.inventory.get("size_bytes"),
        "budget": ctx.budget.name,
        "inputs": "synthetic" if ctx.inputs.synthetic else "--inputs",
    }
    if reexported and "reexport_failed" not in reexported:
        common["converted_from"] = {"what": "the loaded SavedModel saved again (tf.saved_model.save), not the directory as written", **reexported}
    if float32_broken(base, bound):
        yield float32_mismatch_finding(ctx, results, bound, common, reexported)
        return
    if not base.ran:
        yield not_convertible_finding(ctx, results, common)
        return

    recommended, tied, ranking = rank_variants(base, results, bound)
    common["ranking"] = ranking
    crashed = [n for n, r in results.items() if r.extra.get("crash")]
    if crashed:
        common["converter_crashed_on"] = crashed
    if recommended is not None:
        chosen = results[recommended["name"]]
        yield Metric("tflite_recommended_size_bytes", chosen.size_bytes, "bytes", subject=chosen.name)
        yield Metric("tflite_recommended_fidelity_loss", chosen.loss, "relative L2", subject=chosen.name)
        finding = recommendation_finding(ctx, results, recommended, tied, common)
        if fixed:
            finding = with_artifact(finding, fixed["folder"], fixed["what"], finding.fix.code, fixed["verified"], fixed["measured"])
        yield finding
    else:
        yield nothing_worth_it_finding(ctx, results, bound, common)

    int8 = results["full-int8"]
    if int8.ran and not within_bound(int8.fidelity, bound):
        finding = int8_fidelity_finding(ctx, results, bound, debug or {}, common)
        if fixed_selective:
            finding = with_artifact(finding, fixed_selective["folder"], fixed_selective["what"], finding.fix.code,
                                    fixed_selective["verified"], fixed_selective["measured"])
        yield finding


def rank_variants(base: Measured, results: dict[str, Measured], bound: float):
    """(the recommended variant, the variants tied with the best within noise, the ranking table).

    Each variant within the bound scores benefit points (latency % when its ms are practical,
    plus ½ size %) at both ends of its measured interval. The best is the highest low end;
    variants whose high end reaches it are tied within noise, and the tie goes to the lower
    measured fidelity loss, then the smaller file, then the name: never to the run's noise.
    """
    scored = []
    for name, result in results.items():
        if name == "float32" or not result.ran or not within_bound(result.fidelity, bound):
            continue
        saved, latency = savings(base, result)
        scored.append({
            "name": name, "points": round(benefit_points(saved), 3), "points_high": round(benefit_points(saved, "high"), 3),
            "fidelity_loss": result.loss, "size_bytes": result.size_bytes, "saved": saved, "latency": latency,
        })
    ranking = [{k: c[k] for k in ("name", "points", "points_high", "fidelity_loss", "size_bytes")} for c in scored]
    if not scored or max(c["points"] for c in scored) <= 0:
        return None, [], ranking
    best = max(c["points"] for c in scored)
    tied = sorted((c for c in scored if c["points_high"] >= best), key=lambda c: (c["fidelity_loss"], c["size_bytes"], c["name"]))
    return tied[0], [c["name"] for c in tied], ranking


def recommendation_finding(ctx, results, recommended, tied, common) -> Finding:
    name, saved, latency = recommended["name"], recommended["saved"], recommended["latency"]
    result, base = results[name], results["float32"]
    speed = latency.get("latency_vs_baseline", {})
    size_text = f"{mb(result.size_bytes):.2f} MB instead of {mb(base.size_bytes):.2f} MB ({saved['size_pct'].value:.0f}% smaller)"
    if "latency_ms" in saved:
        speed_text = f"; {result.timing.median_ms:.3f} ms vs {base.timing.median_ms:.3f} ms median per request ({speed['speedup']:.2f}x faster)"
    elif speed.get("verdict") == "slower":
        speed_text = f"; but {speed['speedup']:.2f}x the float32 speed on this host ({result.timing.median_ms:.3f} vs {base.timing.median_ms:.3f} ms): slower, measured"
    else:
        speed_text = f"; latency {result.timing.median_ms:.3f} ms vs {base.timing.median_ms:.3f} ms, no significant difference"
    fid = result.fidelity
    top1 = f"; {top1_text(fid, common['max_fidelity_loss'])}" if fid.get("top1") else ""
    others = [n for n in tied if n != name]
    tie = (
        f" Tied within noise with {', '.join(others)} (benefit intervals overlap: {recommended['points']:.1f} points at the low end); "
        "chose the lower measured fidelity loss, then the smaller file."
        if others else ""
    )
    denylisted = (common.get("debugger") or {}).get("denylisted") if name == SELECTIVE else None
    return Finding(
        id=f"{CHECK}/{name}",
        check=CHECK,
        severity=severity_for(saved),
        title=f"Ship the {TITLES[name]} TFLite model: {saved['size_pct'].value:.0f}% smaller",
        summary=(
            f"Measured on this host: {size_text}{speed_text}. Fidelity against the SavedModel: relative L2 error "
            f"{fid['relative_l2']:.2g}, cosine {fid['cosine']:.4f}{top1} — within the bound ({common['max_fidelity_loss']}). "
            f"Pareto frontier (size, latency, fidelity): {', '.join(common['pareto_frontier'])}.{tie}{crash_note(common)}{reexport_note(common)}"
        ),
        evidence={**common, "recommended": name, "tied_within_noise": tied, **latency, "size_pct_of": "float32 TFLite"},
        savings=saved,
        effort=Effort("hours", 1.5, "A converter setting and a re-validation of the outputs."),
        fix=Fix(f"Convert with the {TITLES[name]} settings and serve the .tflite with LiteRT.", converter_code(ctx, name, denylisted, result.extra.get("select_tf_ops", False), resave="converted_from" in common)),
        risk=Risk("low" if fid["relative_l2"] > 0 else "none", "Measured on the audit inputs; re-check on real data.", fidelity_loss=fid["relative_l2"]),
        confidence=0.9 if not ctx.inputs.synthetic else 0.75,
        why="A smaller model loads faster, costs less memory and bandwidth on every replica or device.",
        verify=f"Re-run `tfaudit MODEL --checks quantization --inputs real.npz`; compare outputs of model_{name}.tflite with the SavedModel.",
    )


def nothing_worth_it_finding(ctx, results, bound, common) -> Finding:
    candidates = [n for n in results if n != "float32"]
    failed = [n for n in candidates if not results[n].ran]
    out_of_bound = [n for n in candidates if results[n].ran and not within_bound(results[n].fidelity, bound)]
    return Finding(
        id=f"{CHECK}/no-better-variant",
        check=CHECK,
        severity="info",
        title="No TFLite variant is worth switching to",
        summary=(
            "No quantized variant saved size or time within the fidelity bound on this host"
            + (f"; beyond the bound: {', '.join(out_of_bound)}" if out_of_bound else "")
            + (f"; did not run: {', '.join(failed)}" if failed else "")
            + "."
            + crash_note(common)
            + reexport_note(common)
        ),
        evidence=common,
        effort=Effort("minutes", 0.1, "Nothing to do."),
        fix=Fix("Keep the float model; see the variant table for the measured alternatives."),
        confidence=0.8,
    )


def reexport_note(common) -> str:
    if "converted_from" not in common:
        return ""
    return (
        " Converted from the loaded model saved again: TFLiteConverter.from_saved_model on the SavedModel as written "
        "drops its weights (see evidence converted_from); the snippet saves it again first."
    )


def crash_note(common) -> str:
    crashed = common.get("converter_crashed_on")
    return f" The TFLite converter crashed on {', '.join(crashed)}; the variant table has the signal and a reproduction." if crashed else ""


def crash_reproduction(ctx, crash: dict) -> str:
    code = converter_code(ctx, "float32")
    if crash["stage"] == "conversion":
        return code.replace("tflite_model = converter.convert()", f"tflite_model = converter.convert()  # the process dies with {crash['signal']}")
    feed = ", ".join(f"{s.name}=np.zeros({[d or 1 for d in s.shape or []]}, np.{s.dtype})" for s in ctx.inputs.specs)
    return (
        "import numpy as np\n" + code + "\n\nfrom ai_edge_litert.interpreter import Interpreter\n\n"
        f'runner = Interpreter(model_path="model_float32.tflite").get_signature_runner("{ctx.model.signature}")\n'
        f"runner({feed})  # the process dies with {crash['signal']}"
    )


def not_convertible_finding(ctx, results, common) -> Finding:
    base = results["float32"]
    reason = base.error or "unknown"
    select = base.extra.get("select_tf_ops")
    crash = base.extra.get("crash")
    if crash:
        suspects = crash["suspects"]
        what = "the TFLite converter" if crash["stage"] == "conversion" else "the LiteRT interpreter running the converted float32 model"
        return Finding(
            id=f"{CHECK}/not-convertible",
            check=CHECK,
            severity="low",
            title=f"TFLite crashes on this model ({crash['signal']} in {'conversion' if crash['stage'] == 'conversion' else 'LiteRT'})",
            summary=(
                f"The process running {what} died with {crash['signal']}, so no TFLite variant was measured "
                "(caught in a separate process: the rest of the audit is unaffected). "
                + (f"Likely trigger: {'; '.join(suspects)} — {crash['suspects_why']}." if suspects else "No variable of unknown shape explains it; the snippet reproduces it.")
            ),
            evidence={**common, "crash": crash},
            effort=Effort("hours", 4.0, "Export a serving signature without the state (or with a fixed-shape buffer), then convert."),
            fix=Fix(
                "Keep state out of the converted signature (take it as an input and return it as an output), or give the state a fixed shape. The snippet reproduces the crash.",
                crash_reproduction(ctx, crash),
            ),
            confidence=0.9,
            why="A serving runtime that segfaults takes every request in flight with it.",
        )
    summary = (
        f"The float32 conversion {'needed SELECT_TF_OPS and ' if select else ''}"
        f"{'could not be measured' if select else 'failed'}: {reason}. Without a float32 TFLite model there is no "
        "baseline for the quantized variants (their reasons are in the evidence)."
    )
    if ctx.inputs.has_sequence_dims:
        summary += " Variable-length recurrent layers need TensorList ops; a fixed sequence length (padding) lets the converter fuse them into TFLite's LSTM."
    return Finding(
        id=f"{CHECK}/not-convertible",
        check=CHECK,
        severity="info",
        title="The model does not run as TFLite on the built-in ops",
        summary=summary,
        evidence=common,
        effort=Effort("hours", 4.0, "Replace or remove the unsupported ops, or ship the Flex delegate."),
        fix=Fix(
            "Serve the SavedModel as it is, or make the graph TFLite-friendly (fixed shapes, builtin ops); SELECT_TF_OPS needs the Flex delegate in the runtime.",
            converter_code(ctx, "float32", select_ops=True),
        ),
        confidence=0.9,
    )


RESOURCE_OP_MARKERS = ("READ_VARIABLE", "VAR_HANDLE", "ASSIGN_VARIABLE")


def float32_mismatch_finding(ctx, results, bound, common, reexported: dict | None) -> Finding:
    """The float32 flatbuffer converted, but does not compute what the SavedModel computes."""
    base = results["float32"]
    fid = base.fidelity
    variables = (ctx.inventory.get("variables") or {}).get("bytes") or 0
    saved_size = ctx.inventory.get("size_bytes") or 0
    variable_ops = base.extra.get("resource_variable_ops") or {}
    diagnosis = unrestored_variables(ctx.model.path, ctx.model.signature)
    weights_missing = (bool(variable_ops.get("READ_VARIABLE")) and not variable_ops.get("CALL_ONCE")) or (
        variables >= 64 * 1024 and base.size_bytes < 0.25 * variables
    )
    gross = fid is None or not np.isfinite(fid["relative_l2"]) or fid["relative_l2"] >= 0.5 or (fid.get("cosine") is not None and fid["cosine"] < 0.9)
    if fid is None:
        measured = f"LiteRT cannot run it: {base.error}"
    else:
        top1 = f", top-1 agreement {fid['top1_agreement']:.1%}" if fid.get("top1_agreement") is not None else ""
        cosine = f", cosine {fid['cosine']:.3g}" if fid.get("cosine") is not None else ""
        error = f"{fid['relative_l2']:.3g}" if np.isfinite(fid["relative_l2"]) else "inf (NaN or infinite outputs)"
        measured = f"relative L2 error {error} against the bound {bound}{cosine}{top1}"
    size = f"The flatbuffer is {base.size_bytes / 1024:,.0f} KiB against {mb(saved_size):.2f} MB for the SavedModel"
    size += f" ({mb(variables):.2f} MB of variables)" if variables else ""
    if weights_missing:
        size += ": the weights are not in it"
        if variable_ops.get("READ_VARIABLE"):
            size += f" — it keeps {variable_ops['READ_VARIABLE']} variable read(s) as READ_VARIABLE ops with no values to read"
    calibration = {
        n: results[n].error for n in ("full-int8", "int16x8", SELECTIVE)
        if n in results and results[n].error and any(m in results[n].error for m in RESOURCE_OP_MARKERS)
    }
    summary = f"Converted with TFLiteConverter.from_saved_model, the float32 TFLite model does not reproduce the SavedModel: {measured}. {size}."
    if diagnosis:
        summary += f" Why: {diagnosis['why']}"
    if calibration:
        summary += f" The same cause makes {', '.join(calibration)} fail in calibration (READ_VARIABLE)."
    retried = base.extra.get("reexport")
    if reexported and "reexport_failed" in reexported:
        summary += f" Saving the loaded model again (the automatic fix) failed: {reexported['reexport_failed']}."
    elif reexported:
        summary += " It was converted from the loaded model saved again (the automatic fix), which did not help."
    elif retried:
        outcome = retried.get("error") or (f"relative L2 error {retried['fidelity']['relative_l2']:.3g}" if retried.get("fidelity") else "not measured")
        summary += f" The loaded model saved again and converted does not reproduce it either ({outcome})."
    summary += " Every variant converted the same way inherits the error, so none is compared or recommended: a .tflite shipped from this conversion would silently serve wrong outputs."
    evidence = {
        **common,
        "float32": base.summary(),
        "fidelity": fid,
        "flatbuffer_bytes": base.size_bytes,
        "savedmodel_size_bytes": saved_size,
        "variable_bytes": variables,
        "weights_in_flatbuffer": not weights_missing,
        "resource_variable_ops": variable_ops,
        "diagnosis": diagnosis,
    }
    if calibration:
        evidence["calibration_failures"] = calibration
        evidence["calibration_failures_why"] = "the calibrator runs the converted graph, whose variables hold no values (same cause as the float32 mismatch)"
    if retried:
        evidence["reexport"] = retried
    return Finding(
        id=f"{CHECK}/float32-mismatch",
        check=CHECK,
        severity="high" if gross else "medium",
        title="The float32 TFLite conversion does not reproduce the model" + (" (its weights are lost)" if weights_missing else ""),
        summary=summary,
        evidence=evidence,
        effort=Effort("hours", 1.0, "Export so the converter freezes the variables, then convert and compare the outputs again."),
        fix=Fix(
            "Convert the serving function with the loaded object as its trackable (the converter then freezes the variables it captures), "
            "or export the model so its graph restores the variables the signature reads: a Keras 3 model with model.export(), not "
            "tracked inside a tf.Module; or save the loaded model again. Check the .tflite's outputs against the SavedModel before shipping it.",
            float32_fix_code(ctx),
        ),
        risk=Risk("high", "The converted model's outputs are wrong; measured against the SavedModel on the audit inputs.",
                  fidelity_loss=fid["relative_l2"] if fid and np.isfinite(fid["relative_l2"]) else None),
        confidence=0.9 if diagnosis or weights_missing else 0.75,
        why="A TFLite model that converts without an error but computes something else reaches production unnoticed.",
        verify=f"Re-run `tfaudit {ctx.model.path} --checks quantization`: the float32 variant's fidelity should be within the bound.",
    )


def float32_fix_code(ctx) -> str:
    sig = ctx.model.signature
    feed = ", ".join(f"{s.name}=tf.zeros({[d or 1 for d in s.shape or []]}, tf.{s.dtype})" for s in ctx.inputs.specs)
    return (
        "import numpy as np\nimport tensorflow as tf\nfrom ai_edge_litert.interpreter import Interpreter\n\n"
        f'loaded = tf.saved_model.load("{ctx.model.path}")\n'
        f'serve = loaded.signatures["{sig}"]\n'
        "# The loaded object keeps the variables alive; the converter freezes the ones the function captures.\n"
        "converter = tf.lite.TFLiteConverter.from_concrete_functions([serve], loaded)\n"
        "tflite_model = converter.convert()\n"
        "# Or fix the export itself: keras_model.export(path) for a Keras 3 model instead of tracking it in a tf.Module,\n"
        f'# or tf.saved_model.save(loaded, "resaved_saved_model", signatures={{"{sig}": serve}}) and from_saved_model on that.\n\n'
        "# Always compare before shipping:\n"
        f"expected = serve({feed})\n"
        "runner = Interpreter(model_content=tflite_model).get_signature_runner()\n"
        f"got = runner(**{{k: v.numpy() for k, v in dict({feed}).items()}})\n"
        "for name in expected:\n"
        "    print(name, np.linalg.norm(got[name] - expected[name].numpy()) / np.linalg.norm(expected[name].numpy()))  # ~1e-6\n"
    )


def selective_savings(base: Measured, selective: Measured | None, bound: float) -> dict:
    """What the selective variant saves against float32 when it is within the bound and smaller (keeping
    every layer in float, as on the demo at the standard budget, saves nothing)."""
    if selective is None or not selective.ran or not within_bound(selective.fidelity, bound):
        return {}
    saved = savings(base, selective)[0]
    return saved if saved.get("size_bytes") and saved["size_bytes"].value > 0 else {}


def int8_fidelity_finding(ctx, results, bound, debug, common) -> Finding:
    int8, base = results["full-int8"], results["float32"]
    fid = int8.fidelity
    selective = debug.get("selective")
    top1 = f", top-1 agreement {fid['top1_agreement']:.1%}" if fid.get("top1_agreement") is not None else ""
    summary = (
        f"Full-integer int8 changes the outputs beyond the bound: relative L2 error {fid['relative_l2']:.3g} "
        f"(bound {bound}), max abs error {fid['max_abs']:.3g}{top1}."
    )
    evidence = {**common, "full_int8": int8.summary(), "debugger": {k: v for k, v in debug.items() if k != "selective"}}
    if "error" in debug:
        summary += f" {debug['error']}."
    else:
        worst = debug["layers"][: len(debug["denylisted"])]
        names = ", ".join(f"{layer['tensor']} ({layer['rmse_per_scale']:.2f})" for layer in worst)
        lead = "Worst layers by rmse/scale (healthy ≈ 0.29)" if debug["culprits_stand_out"] else "No layer stands out (all near the healthy 0.29); the worst by rmse/scale"
        summary += f" {lead}: {names}."
        if selective is not None and selective.ran:
            recovered = fid["relative_l2"] - selective.loss
            size_cost = selective.size_bytes - int8.size_bytes
            summary += (
                f" Keeping them in float gives relative L2 error {selective.loss:.3g} "
                f"({recovered / fid['relative_l2']:.0%} of the error recovered) for {size_cost / 1024:+,.0f} KiB "
                f"({mb(selective.size_bytes):.2f} MB vs {mb(int8.size_bytes):.2f} MB full int8, {mb(base.size_bytes):.2f} MB float32)"
                + (" — within the bound." if within_bound(selective.fidelity, bound) else " — still beyond the bound.")
            )
            evidence["selective"] = {**selective.summary(), "error_recovered": round(recovered, 6), "size_cost_bytes": size_cost}
        elif selective is not None:
            summary += f" The selective variant did not run: {selective.error}."
    if ctx.inputs.synthetic:
        summary += " Calibration used synthetic inputs: real rows (--inputs) often calibrate activation ranges much better."
    return Finding(
        id=f"{CHECK}/full-int8-fidelity",
        check=CHECK,
        severity="low",
        title="Full-integer int8 loses fidelity",
        summary=summary,
        evidence=evidence,
        effort=Effort("days", 24.0, "Selective quantization is a converter change (hours); recovering the rest needs quantization-aware training (days)."),
        fix=Fix(
            "Calibrate on real inputs; keep the named layers in float (selective quantization); if int8 is a must, use quantization-aware training (tfmot.quantization.keras.quantize_model on a tf_keras model).",
            converter_code(ctx, SELECTIVE, debug.get("denylisted"), resave="converted_from" in common),
        ),
        # What the selective variant (this finding's fix) saves against float32, when it is within the bound.
        savings=selective_savings(base, selective, bound),
        risk=Risk("high", "Measured output error beyond the bound.", fidelity_loss=fid["relative_l2"]),
        confidence=0.8,
        why="Full-integer int8 is what integer-only accelerators (Edge TPU, many NPUs and DSPs) need; its error comes from a few layers with wide activation ranges.",
    )


# --- float64 ------------------------------------------------------------------------------------


def float64_findings(ctx) -> Iterator[Finding]:
    """float64 variables, inputs or outputs: double the bytes of float32, and slow or unsupported kernels."""
    inventory = ctx.inventory
    by_dtype = inventory.get("variables", {}).get("by_dtype", {})
    f64 = by_dtype.get("float64", {"count": 0, "parameters": 0, "bytes": 0})
    signature = inventory["signatures"][inventory["signature"]]
    f64_tensors = [f"{kind} {t['name']}" for kind in ("inputs", "outputs") for t in signature[kind] if t["dtype"] == "float64"]
    if not f64["count"] and not f64_tensors:
        return
    evidence: dict[str, Any] = {
        "float64_variables": f64,
        "float64_signature_tensors": f64_tensors,
        "variable_bytes_by_dtype": {k: v["bytes"] for k, v in by_dtype.items()},
        "bytes_saved_as_float32": f64["bytes"] // 2,
    }
    saved = {}
    if f64["bytes"]:
        saved["size_bytes"] = Measure(float(f64["bytes"] // 2))
        total = inventory.get("size_bytes") or 0
        if total:
            saved["size_pct"] = Measure(round(100.0 * (f64["bytes"] // 2) / total, 2))
            evidence["size_pct_of"] = "the SavedModel on disk"
    latency = float32_twin_latency(ctx)
    evidence["latency"] = latency
    if latency.get("saved") is not None:
        saved["latency_ms"], saved["latency_pct"] = latency.pop("saved")
    summary = (
        f"{f64['count']} float64 variable(s), {f64['parameters']:,} parameters = {f64['bytes']:,} bytes "
        f"({f64['bytes'] // 2:,} bytes as float32)"
        + (f"; float64 signature tensors: {', '.join(f64_tensors)}" if f64_tensors else "")
        + ". TFLite has no float64 kernels for most ops, and float64 math runs at half the SIMD width at best."
    )
    if "median_ms" in latency:
        summary += f" Measured: {latency['median_ms']['float64']:.3f} ms per request in float64 vs {latency['median_ms']['float32']:.3f} ms with the same graph in float32 ({latency['verdict']})."
    else:
        summary += f" Latency: {latency.get('reason', 'not measured')}."
    yield Finding(
        id=f"{CHECK}/float64",
        check=CHECK,
        severity="medium" if f64["bytes"] >= 1024 * 1024 else "low",
        title="The model keeps float64 " + ("weights" if f64["count"] else "signature tensors") + ": twice the bytes of float32",
        summary=summary,
        evidence=evidence,
        savings=saved,
        effort=Effort("hours", 2.0, "Cast the weights and the signature to float32 and re-export."),
        fix=Fix(
            "Build and export the model in float32: cast its variables, and declare float32 TensorSpecs in the serving signature.",
            float64_fix_code(ctx),
        ),
        risk=Risk("low", "float32 keeps ~7 significant digits; check outputs that need more."),
        confidence=0.9,
        why="float64 doubles weight memory and bandwidth and blocks TFLite conversion and most accelerators.",
    )


def float64_fix_code(ctx) -> str:
    specs = ", ".join(
        f'tf.TensorSpec({list(s.shape) if s.shape else s.shape}, tf.{"float32" if s.dtype == "float64" else s.dtype}, name="{s.name}")'
        for s in ctx.inputs.specs
    )
    return (
        "import tensorflow as tf\n\n"
        f'model = tf.saved_model.load("{ctx.model.path}")\n'
        "# Keras: keras.mixed_precision.set_dtype_policy('float32') (or drop tf.keras.backend.set_floatx('float64')) and rebuild.\n"
        "# tf.Module: create the variables as float32, e.g. tf.Variable(tf.cast(v, tf.float32)) for each float64 variable.\n"
        f"@tf.function(input_signature=[{specs}])\n"
        f"def serve({', '.join(s.name for s in ctx.inputs.specs)}):\n"
        "    ...  # the same computation on float32 tensors\n"
        'tf.saved_model.save(module_in_float32, "model_float32", signatures={"serving_default": serve})'
    )


def float32_twin_latency(ctx) -> dict[str, Any]:
    """Time the serving graph frozen as it is and with every float64 turned into float32."""
    import numpy as np
    import tensorflow as tf

    from tfaudit.engine.host_index import time_interleaved
    from tfaudit.engine.measure import compare

    try:
        frozen64, frozen32, names = frozen_pair(ctx.model.serving_fn())
        feed = latency_feed(ctx)
        feed64 = [tf.constant(feed[n]) for n in names]
        feed32 = [tf.constant(feed[n].astype(np.float32) if feed[n].dtype == np.float64 else feed[n]) for n in names]

        def call(fn, inputs):
            return lambda: [t.numpy() for t in tf.nest.flatten(fn(*inputs))]

        # Call by call in turn, so both see the same moments of a shared host.
        t64, t32 = time_interleaved(
            call(frozen64, feed64), call(frozen32, feed32), warmup=ctx.budget.warmup, max_seconds=TWIN_SECONDS_SHARE * ctx.budget.timing_seconds
        )
    except Exception as exc:  # graphs with float64-only ops cannot be re-typed
        from tfaudit.checks._compression import one_line

        return {"reason": f"not measurable: a float32 copy of the graph could not be built ({one_line(exc)})"}
    comparison = compare(t64, t32)
    faster = comparison.significant and comparison.saved_pct.low >= MIN_FLOAT32_SAVING_PCT
    if faster:
        verdict = "float32 is faster"
    elif comparison.significant and comparison.saved_ms.value < 0:
        verdict = "float32 is slower"
    else:
        verdict = f"no difference worth claiming (a saving must be at least {MIN_FLOAT32_SAVING_PCT:g} % at the interval's low end)"
    result: dict[str, Any] = {
        "median_ms": {"float64": round(t64.median_ms, 4), "float32": round(t32.median_ms, 4)},
        "float64": t64.summary(),
        "float32": t32.summary(),
        "speedup": round(comparison.speedup.value, 3),
        "saved_pct": [round(comparison.saved_pct.value, 1), round(comparison.saved_pct.low, 1), round(comparison.saved_pct.high, 1)],
        "verdict": verdict,
        "method": "the serving graph frozen (variables as constants), timed as is and with every float64 re-typed to float32, call by call in turn",
    }
    if faster:
        result["saved"] = (comparison.saved_ms, comparison.saved_pct)
    return result


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
