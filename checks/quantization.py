"""Quantization: convert to TFLite variants and measure size, LiteRT latency and fidelity on this host.

Variants: float32 (the baseline), float16, dynamic-range int8, full-integer int8 (float I/O,
calibrated on ``--inputs`` rows or synthetic data) and 16x8. A variant that fails to convert
is reported with the converter's reason; when Flex ops are the cause it is retried with
``SELECT_TF_OPS`` and marked so. Nothing is taken from published tables: int8 can be slower
than float on x86, and the findings only claim a latency saving that the measurement shows.

The recommendation is the variant within the fidelity bound (``max_fidelity_loss``, see
``checks._compression``) with the largest benefit as tfaudit.priority counts it (latency % +
½ size %, against the float32 TFLite model). When full-integer int8 breaks the bound, the
QuantizationDebugger names the layers with the largest rmse/scale, and a selective variant
keeps them in float. Full int8 is calibrated once: the debugger and the selective variant start
from that calibrated model, the one measured. float64 weights or inputs get their own finding with
the measured cost.

Metrics
-------

- ``tflite_float32_size_bytes`` (bytes): the float32 flatbuffer, when it converted.
- ``tflite_float32_latency_ms`` (ms): its median LiteRT latency per request, with the bootstrap
  95 % interval; only when LiteRT ran it.
- ``tflite_recommended_size_bytes`` (bytes) and ``tflite_recommended_fidelity_loss`` (relative
  L2 error against the SavedModel, lower is better): the recommended variant's; only when a
  variant is recommended.
"""
from __future__ import annotations

import csv
import io
from typing import Any, Iterator

from checks._compression import (
    ConversionFailed,
    Converted,
    Measured,
    benefit_points,
    budget_name,
    calibration_rows,
    conversion_source,
    convert,
    eval_feeds,
    float32_flatbuffer,
    interpreter_runner,
    loaded_source,
    latency_feed,
    max_fidelity_loss,
    mb,
    measure_tflite,
    one_line,
    pareto_frontier,
    quiet_converter,
    representative_code,
    reuse_loaded_model,
    run_serving,
    samples_for,
    savings,
    scratch_dir,
    severity_for,
    within_bound,
)
from tfaudit.api import Check, CheckMeta, Effort, Finding, Fix, Measure, Metric, Progress, Risk, SkipCheck

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
FLOAT64 = ("float64",)


def configure_variant(name: str, representative_dataset):
    import tensorflow as tf

    def configure(converter) -> None:
        if name == "float32":
            return
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        if name == "float16":
            converter.target_spec.supported_types = [tf.float16]
        elif name == "full-int8":
            converter.representative_dataset = representative_dataset
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        elif name == "int16x8":
            converter.representative_dataset = representative_dataset
            converter.target_spec.supported_ops = [tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8]

    return configure


def calibrate_only(representative_dataset):
    """The full-int8 converter stopped after calibration (what QuantizationDebugger converts to)."""
    full_int8 = configure_variant("full-int8", representative_dataset)

    def configure(converter) -> None:
        full_int8(converter)
        converter.experimental_mlir_quantizer = True
        converter._experimental_calibrate_only = True

    return configure


def quantize_calibrated(calibrated: bytes) -> bytes:
    """What converter.convert() does with the calibrated model for full int8 with float I/O.

    The MLIR quantizer, then the read-only buffer de-duplication; the result equals the plain
    full-int8 conversion but for the conversion metadata (checked on MobileNetV2).
    """
    from tensorflow.lite.python import lite
    from tensorflow.lite.python.convert import mlir_quantize

    try:
        with quiet_converter():
            model = mlir_quantize(calibrated)
            dedupe = getattr(lite, "_deduplicate_readonly_buffers", None)
            return dedupe(model) if dedupe is not None else model
    except Exception as exc:  # the quantizer raises ConverterError and others
        raise ConversionFailed(one_line(exc)) from None


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


def converter_code(ctx, name: str, denylisted: list[str] | None = None, select_ops: bool = False) -> str:
    if ctx.model.format == "keras":
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

    def run(self, ctx) -> Iterator:
        bound = max_fidelity_loss(ctx)
        yield from float64_findings(ctx)
        try:
            feeds = eval_feeds(ctx)
            reference = run_serving(ctx.model.serving_fn(), feeds)
            rows = calibration_rows(ctx)
        except Exception as exc:  # inputs the model cannot take (strings, unknown ranks)
            raise SkipCheck(f"cannot run the model on sample inputs: {exc}") from None

        def representative_dataset():
            yield from rows

        results: dict[str, Measured] = {}
        contents: dict[str, bytes] = {}
        with scratch_dir() as tmp:
            source = conversion_source(ctx, tmp)
            loaded = loaded_source(ctx, source)
            for i, name in enumerate(VARIANTS):
                yield Progress(i / (len(VARIANTS) + 2), f"converting {name}")
                result = Measured(name)
                try:
                    if name == "float32":
                        converted = float32_flatbuffer(ctx, source, loaded)
                    elif name == "full-int8":  # calibrated once: the debugger below starts from the same model
                        calibrated = convert(source, ctx.model.signature, calibrate_only(representative_dataset), loaded)
                        converted = Converted(quantize_calibrated(calibrated.content), calibrated.select_ops, calibrated.note)
                    else:
                        converted = convert(source, ctx.model.signature, configure_variant(name, representative_dataset), loaded)
                except ConversionFailed as exc:
                    result.error = str(exc)
                else:
                    result.note = converted.note
                    result.extra["select_tf_ops"] = converted.select_ops
                    measure_tflite(ctx, result, converted.content, reference, feeds)
                    contents[name] = converted.content
                results[name] = result
                yield from samples_for(result)
                if name == "float32":
                    yield from float32_metrics(result)

            int8 = results["full-int8"]
            debug = None
            if int8.ran and not within_bound(int8.fidelity, bound):
                yield Progress(len(VARIANTS) / (len(VARIANTS) + 2), "QuantizationDebugger on full int8")
                debug = debug_full_int8(ctx, source, loaded, rows, calibrated.content, reference, feeds, contents["float32"])
                if debug.get("selective") is not None:
                    results[SELECTIVE] = debug["selective"]
                    yield from samples_for(debug["selective"])
        yield Progress(1.0, "done")
        yield from judge(ctx, results, bound, debug)


def float32_metrics(result: Measured) -> Iterator[Metric]:
    if result.size_bytes:
        yield Metric("tflite_float32_size_bytes", result.size_bytes, "bytes")
    if result.timing is not None:
        latency = result.timing.median_interval()
        yield Metric("tflite_float32_latency_ms", latency.value, "ms", latency.low, latency.high)


# --- the debugger ---------------------------------------------------------------------------------


def debug_full_int8(ctx, source: str, loaded, rows: list[dict], calibrated: bytes, reference, feeds, float32_content: bytes) -> dict[str, Any]:
    """Per-layer rmse/scale from the QuantizationDebugger, and the selective variant without the culprits.

    The debugger starts from the full-int8 variant's calibrated model instead of converting and
    calibrating again (~4 s on MobileNetV2): it debugs exactly the model that was measured.
    """
    import tensorflow as tf

    try:
        with reuse_loaded_model(loaded), quiet_converter():
            converter = tf.lite.TFLiteConverter.from_saved_model(source, signature_keys=[ctx.model.signature])
        calibrate_only(lambda: iter(rows))(converter)
        converter.convert = lambda: calibrated  # what the debugger's own converter.convert() would return
        order = input_order(float32_content, ctx.model.signature, list(rows[0]))
        dataset = lambda: ([row[name] for name in order] for row in rows)  # noqa: E731 - the debugger wants a factory
        with quiet_converter():
            debugger = tf.lite.experimental.QuantizationDebugger(converter=converter, debug_dataset=dataset)
            debugger.run()
        layers = layer_ratios(debugger)
    except Exception as exc:  # the debugger is experimental; its failure must not hide the other results
        return {"error": f"QuantizationDebugger failed: {one_line(exc)}"}
    culprits = [layer for layer in layers if layer["rmse_per_scale"] > CULPRIT_RATIO * HEALTHY_RMSE_PER_SCALE]
    outstanding = bool(culprits)
    denylisted = (culprits or layers)[: MAX_DENYLISTED[budget_name(ctx)]]
    result: dict[str, Any] = {"layers": layers[:10], "culprits_stand_out": outstanding, "denylisted": [l["tensor"] for l in denylisted]}
    selective = Measured(SELECTIVE)
    try:
        debugger.options = tf.lite.experimental.QuantizationDebugOptions(denylisted_nodes=result["denylisted"])
        with quiet_converter():
            content = debugger.get_nondebug_quantized_model()
    except Exception as exc:
        selective.error = f"selective quantization failed: {one_line(exc)}"
    else:
        measure_tflite(ctx, selective, content, reference, feeds)
    result["selective"] = selective
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


def judge(ctx, results: dict[str, Measured], bound: float, debug: dict | None) -> Iterator[Finding]:
    base = results["float32"]
    table = variant_table(results)
    frontier = pareto_frontier(list(results.values()))
    common = {
        "variants": table,
        "pareto_frontier": frontier,
        "max_fidelity_loss": bound,
        "fidelity_bound_means": f"relative L2 error <= {bound}, and top-1 agreement >= {1 - bound:.0%} for class scores",
        "baseline": "float32 TFLite (size and LiteRT latency); fidelity against the original SavedModel",
        "savedmodel_size_bytes": ctx.inventory.get("size_bytes"),
        "budget": ctx.budget.name,
        "inputs": "synthetic" if ctx.inputs.synthetic else "--inputs",
    }
    if not base.ran:
        yield not_convertible_finding(ctx, results, common)
        return

    scored = []
    for name, result in results.items():
        if name == "float32" or not result.ran or not within_bound(result.fidelity, bound):
            continue
        saved, latency = savings(base, result)
        scored.append((benefit_points(saved), name, saved, latency))
    scored.sort(key=lambda item: -item[0])
    recommended = scored[0] if scored and scored[0][0] > 0 else None

    if recommended is not None:
        chosen = results[recommended[1]]
        yield Metric("tflite_recommended_size_bytes", chosen.size_bytes, "bytes")
        yield Metric("tflite_recommended_fidelity_loss", chosen.loss, "relative L2")
        yield recommendation_finding(ctx, results, recommended, common)
    else:
        yield nothing_worth_it_finding(ctx, results, bound, common)

    int8 = results["full-int8"]
    if int8.ran and not within_bound(int8.fidelity, bound):
        yield int8_fidelity_finding(ctx, results, bound, debug or {}, common)


def recommendation_finding(ctx, results, recommended, common) -> Finding:
    _, name, saved, latency = recommended
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
    top1 = f", top-1 agreement {fid['top1_agreement']:.1%}" if fid.get("top1_agreement") is not None else ""
    denylisted = (common.get("debugger") or {}).get("denylisted") if name == SELECTIVE else None
    return Finding(
        id=f"{CHECK}/{name}",
        check=CHECK,
        severity=severity_for(saved),
        title=f"Ship the {TITLES[name]} TFLite model: {saved['size_pct'].value:.0f}% smaller",
        summary=(
            f"Measured on this host: {size_text}{speed_text}. Fidelity against the SavedModel: relative L2 error "
            f"{fid['relative_l2']:.2g}, cosine {fid['cosine']:.4f}{top1} — within the bound ({common['max_fidelity_loss']}). "
            f"Pareto frontier (size, latency, fidelity): {', '.join(common['pareto_frontier'])}."
        ),
        evidence={**common, "recommended": name, **latency, "size_pct_of": "float32 TFLite"},
        savings=saved,
        effort=Effort("hours", 1.5, "A converter setting and a re-validation of the outputs."),
        fix=Fix(f"Convert with the {TITLES[name]} settings and serve the .tflite with LiteRT.", converter_code(ctx, name, denylisted, result.extra.get("select_tf_ops", False))),
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
        ),
        evidence=common,
        effort=Effort("minutes", 0.1, "Nothing to do."),
        fix=Fix("Keep the float model; see the variant table for the measured alternatives."),
        confidence=0.8,
    )


def not_convertible_finding(ctx, results, common) -> Finding:
    base = results["float32"]
    reason = base.error or "unknown"
    select = base.extra.get("select_tf_ops")
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
        names = ", ".join(f"{l['tensor']} ({l['rmse_per_scale']:.2f})" for l in worst)
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
            converter_code(ctx, SELECTIVE, debug.get("denylisted")),
        ),
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

    from tfaudit.measure import compare

    try:
        frozen64, frozen32, names = frozen_pair(ctx.model.serving_fn())
        feed = latency_feed(ctx)
        feed64 = [tf.constant(feed[n]) for n in names]
        feed32 = [tf.constant(feed[n].astype(np.float32) if feed[n].dtype == np.float64 else feed[n]) for n in names]

        def call(fn, inputs):
            return lambda: [t.numpy() for t in tf.nest.flatten(fn(*inputs))]

        t64 = ctx.timer(call(frozen64, feed64))
        t32 = ctx.timer(call(frozen32, feed32))
    except Exception as exc:  # graphs with float64-only ops cannot be re-typed
        from checks._compression import one_line

        return {"reason": f"not measurable: a float32 copy of the graph could not be built ({one_line(exc)})"}
    comparison = compare(t64, t32)
    faster = comparison.significant and comparison.saved_ms.value > 0
    result: dict[str, Any] = {
        "median_ms": {"float64": round(t64.median_ms, 4), "float32": round(t32.median_ms, 4)},
        "float64": t64.summary(),
        "float32": t32.summary(),
        "speedup": round(comparison.speedup.value, 3),
        "verdict": "float32 is faster" if faster else "no significant difference" if not comparison.significant else "float32 is slower",
        "method": "the serving graph frozen (variables as constants), timed as is and with every float64 re-typed to float32",
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
