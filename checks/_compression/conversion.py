"""TFLite conversions, run in a helper process (``tfaudit.api.helper_process``): the converter can crash natively
(SIGSEGV on a variable of unknown shape), and a crash must end one conversion, not the check.

The worker calls ``convert_isolated``/``float32_flatbuffer``; the helper runs ``convert_job``
with the SavedModel it loaded once (``prepare_conversions``). TensorFlow is imported inside the functions.
"""
from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tfaudit.api import HelperCrashed as ConversionCrashed
from tfaudit.api import HelperFailed as ConversionFailed
from tfaudit.api import one_line

from .feeds import read_feeds
from .savedmodel import audit_cache

if TYPE_CHECKING:  # pragma: no cover
    from tfaudit.api import Helper


def needs_select_ops(exc: BaseException) -> bool:
    text = str(exc) + " ".join(str(getattr(e, "error_message", "")) for e in getattr(exc, "errors", None) or [])
    return any(marker in text for marker in ("flex op", "Select TF ops", "TF Select", "ERROR_NEEDS_FLEX_OPS", "tensor list ops"))


@contextlib.contextmanager
def reuse_loaded_model(loaded):
    """Let the converter reuse our loaded SavedModel instead of loading it again.

    TFLiteConverterV2.from_saved_model() loads the whole SavedModel to list its signatures, and
    TFLiteSavedModelConverterV2.convert() loads it again only to read its graph_debug_info (for
    error locations), then runs gc.collect() to drop it; on MobileNetV2 that is ~3.7 s of every
    ~5.5 s conversion. The converter still reads the graph and weights from the directory.
    Without the private hooks (another TF version), conversion is just slower.
    """
    from types import SimpleNamespace
    from unittest import mock

    from tensorflow.lite.python import lite

    if loaded is None or not hasattr(lite, "_load") or not hasattr(loaded, "graph_debug_info"):
        yield
        return
    with mock.patch.object(lite, "_load", lambda *args, **kwargs: loaded):
        if getattr(lite, "gc", None) is not None:
            with mock.patch.object(lite, "gc", SimpleNamespace(collect=lambda *args: 0)):
                yield
        else:
            yield


@dataclass
class Converted:
    content: bytes | None
    select_ops: bool = False  # converted only with SELECT_TF_OPS (Flex)
    note: str = ""
    sparse_path: str = ""  # the sparse-encoded flatbuffer, when asked for
    path: str = ""  # where the flatbuffer is, for LiteRT in the other process


def convert(saved_model_dir: str, signature: str, configure, loaded=None) -> Converted:
    """Convert with ``configure(converter)`` applied; retry with SELECT_TF_OPS when Flex ops are the cause."""
    import tensorflow as tf

    def attempt(select: bool) -> bytes:
        with reuse_loaded_model(loaded), quiet_converter():
            converter = tf.lite.TFLiteConverter.from_saved_model(saved_model_dir, signature_keys=[signature])
            configure(converter)
            if select:
                ops = set(converter.target_spec.supported_ops) or {tf.lite.OpsSet.TFLITE_BUILTINS}
                converter.target_spec.supported_ops = ops | {tf.lite.OpsSet.SELECT_TF_OPS}
                converter._experimental_lower_tensor_list_ops = False  # what the converter asks for with TensorList ops
            return converter.convert()

    try:
        return Converted(attempt(select=False))
    except Exception as exc:  # converter errors have many types; all end the same way
        reason = one_line(exc)
        if not needs_select_ops(exc):
            raise ConversionFailed(reason) from None
    try:
        content = attempt(select=True)
    except Exception as exc:
        raise ConversionFailed(f"{reason}; retried with SELECT_TF_OPS, which failed too: {one_line(exc)}") from None
    return Converted(content, select_ops=True, note=f"needs SELECT_TF_OPS (Flex): {reason}")


@contextlib.contextmanager
def quiet_converter():
    """The converter and calibrator print to stdout; keep the worker's output readable."""
    import logging

    logger = logging.getLogger("tensorflow")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


_LOADED: dict[str, Any] = {}  # in the child: the SavedModel reuse_loaded_model hands the converter


def loaded(directory: str | None):
    if directory and directory not in _LOADED:
        import tensorflow as tf

        _LOADED.clear()
        _LOADED[directory] = tf.saved_model.load(directory)
    return _LOADED.get(directory)


def preload(directory: str, modules: list[str]) -> dict:
    """The libraries that register the model's custom ops (imported after this process began), then the model."""
    import importlib

    for module in modules:
        importlib.import_module(module)
    loaded(directory)
    return {}


def prepare_conversions(isolated: Helper, ctx, source: str) -> None:
    """Have the conversion process import what the worker imported to load the model, and load it."""
    modules = list(ctx.inventory.get("op_libraries") or []) + list(ctx.options.get("imports") or [])
    isolated.prepare("loading the model to convert it", preload, directory=source, modules=modules)


def configure_variant(name: str, representative_dataset=None):
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


def _write(path: str, content: bytes) -> None:
    with open(path, "wb") as f:
        f.write(content)


def convert_job(source: str, signature: str, variant: str, out: str, reuse: str | None = None,
                calibration: str | None = None, sparsify: bool = False) -> dict[str, Any]:
    """In the child: convert ``variant`` (a quantization variant name) to ``out``.

    full-int8 is calibrated once and the calibrated model kept at ``out + ".calibrated"`` (the
    debugger starts from it); ``sparsify`` also writes the sparse-encoded flatbuffer to
    ``out + ".sparse"`` (the pass Optimize.EXPERIMENTAL_SPARSITY runs) when this TF has it.
    """
    rows = read_feeds(calibration) if calibration else []
    dataset = lambda: iter(rows)  # noqa: E731 - the converter wants a generator factory
    model = loaded(reuse)
    try:
        if variant == "full-int8":
            calibrated = convert(source, signature, calibrate_only(dataset), model)
            _write(out + ".calibrated", calibrated.content)
            converted = Converted(quantize_calibrated(calibrated.content), calibrated.select_ops, calibrated.note)
        else:
            converted = convert(source, signature, configure_variant(variant, dataset), model)
    except ConversionFailed as exc:
        return {"error": str(exc)}
    _write(out, converted.content)
    reply: dict[str, Any] = {"select_ops": converted.select_ops, "note": converted.note}
    if sparsify and not converted.select_ops:
        try:
            from tensorflow.lite.python.convert import mlir_sparsify
        except ImportError:  # the pass moved: sparse latency stays unmeasured
            return reply
        _write(out + ".sparse", mlir_sparsify(converted.content))
        reply["sparse"] = out + ".sparse"
    return reply


def convert_isolated(isolated: Helper, source: str, signature: str, variant: str, out: str, **options) -> Converted:
    """``convert_job`` in the child; raises ConversionFailed (ConversionCrashed for a crash)."""
    reply = isolated.call(f"converting {variant}", convert_job,
                          source=source, signature=signature, variant=variant, out=out, **options)
    if "error" in reply:
        raise ConversionFailed(reply["error"])
    with open(out, "rb") as f:
        content = f.read()
    return Converted(content, reply["select_ops"], reply["note"], sparse_path=reply.get("sparse", ""), path=out)


def float32_flatbuffer(ctx, source: str, isolated: Helper, tmpdir: str) -> Converted:
    """The float32 conversion, kept in the audit's scratch dir so the second check reuses the first's.

    A crash is kept too (``.crashed``): the other check reports it without crashing again.
    """
    cached = audit_cache(ctx, "float32-flatbuffers")
    path = cached + ".tflite" if cached else os.path.join(tmpdir, "float32.tflite")
    if cached and os.path.isfile(path):
        with open(path, "rb") as f:
            return Converted(f.read(), note="float32 flatbuffer reused from this audit's other check", path=path)
    if cached and os.path.isfile(cached + ".crashed"):
        with open(cached + ".crashed") as f:
            crash = json.load(f)
        raise ConversionCrashed(crash["message"] + " (in this audit's other check)", crash["signal"])
    if cached:
        os.makedirs(os.path.dirname(path), exist_ok=True)
    partial = f"{path}.{os.getpid()}" if cached else path
    try:
        converted = convert_isolated(isolated, source, ctx.model.signature, "float32", partial, reuse=source)
    except ConversionCrashed as exc:
        if cached:
            _write(cached + ".crashed", json.dumps({"message": str(exc), "signal": exc.signal}).encode())
        raise
    if cached and not converted.select_ops:
        os.replace(partial, path)  # atomic: the other check never reads half a file
        converted.path = path
    return converted
