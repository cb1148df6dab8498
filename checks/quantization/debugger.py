"""The QuantizationDebugger on full int8 that breaks the bound: per-layer rmse/scale, and a selective variant without the culprits.

``debug_full_int8`` runs in the worker; ``debug_job`` in the conversion process (the debugger
converts and runs native code too), starting from the full-int8 variant's calibrated model
instead of calibrating again (~4 s on MobileNetV2): it debugs exactly the model that was measured.
"""
from __future__ import annotations

import csv
import io
import os
from typing import Any

from tfaudit.api import HelperCrashed as ConversionCrashed
from tfaudit.api import HelperFailed as ConversionFailed
from tfaudit.api import one_line

from .._compression.conversion import calibrate_only, loaded, quiet_converter, reuse_loaded_model
from .._compression.feeds import budget_name, read_feeds
from .._compression.litert import LiteRT, interpreter_runner
from .._compression.variants import Measured
from .catalogue import SELECTIVE

HEALTHY_RMSE_PER_SCALE = 0.289  # uniform rounding error of one quantization step: sqrt(1/12)
CULPRIT_RATIO = 1.5  # layers above 1.5x the healthy ratio are culprits
MAX_DENYLISTED = {"quick": 3, "standard": 5, "thorough": 10}


def debug_full_int8(ctx, litert: LiteRT, source: str, calibration: str, calibrated: str, float32: str) -> dict[str, Any]:
    """Per-layer rmse/scale from the QuantizationDebugger, and the selective variant without the culprits.

    Runs in the conversion process (the debugger converts and runs native code too) and starts
    from the full-int8 variant's calibrated model instead of calibrating again (~4 s on
    MobileNetV2): it debugs exactly the model that was measured.
    """
    out = os.path.join(litert.tmpdir, SELECTIVE + ".tflite")
    try:
        debug = litert.isolated.call(
            "running the QuantizationDebugger", debug_job,
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
