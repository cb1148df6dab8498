"""Helpers shared by the quantization and pruning checks: conversion, LiteRT runs, fidelity, sizes.

NumPy at module top only; TensorFlow and LiteRT are imported inside the functions, as checks run
them in their worker.

Fidelity is always measured against the original SavedModel on the same inputs:

- ``relative_l2``: ‖candidate − reference‖ / ‖reference‖ over every float output, flattened;
  this is the "fidelity loss" the findings, the bound and the charts use;
- ``max_abs``, ``cosine``;
- ``top1_agreement`` when an output looks like class scores ([batch, classes], classes ≥ 2).

A variant is within the bound ``max_fidelity_loss`` (option, default 0.01) when its relative L2
error is at most the bound and, for class scores, its top-1 agreement is at least 1 − bound.
"""
from __future__ import annotations

import contextlib
import io
import os
import tempfile
import zipfile
from dataclasses import dataclass, field
from typing import Any, Iterator

import numpy as np

DEFAULT_MAX_FIDELITY_LOSS = 0.01
MIB = 1024 * 1024
# Per budget: inputs the fidelity is measured on, and representative samples for calibration.
EVAL_SAMPLES = {"quick": 16, "standard": 32, "thorough": 128}
CALIBRATION_SAMPLES = {"quick": 16, "standard": 32, "thorough": 200}
MAX_REASON = 300
MIN_LATENCY_MS = 0.05


def max_fidelity_loss(ctx) -> float:
    return float(ctx.options.get("max_fidelity_loss", DEFAULT_MAX_FIDELITY_LOSS))


def budget_name(ctx) -> str:
    return ctx.budget.name if ctx.budget.name in EVAL_SAMPLES else "standard"


def mb(nbytes: float) -> float:
    return round(nbytes / MIB, 4)


# --- inputs and reference outputs ---------------------------------------------------------------


def eval_feeds(ctx) -> list[dict[str, np.ndarray]]:
    """The inputs fidelity is measured on: one batch of EVAL_SAMPLES rows, or several fixed-batch feeds."""
    count = EVAL_SAMPLES[budget_name(ctx)]
    if ctx.inputs.batch_dynamic:
        return [ctx.inputs.make(batch=count, seed=1)]
    fixed = next((s.shape[0] for s in ctx.inputs.specs if s.shape), 1) or 1
    return [ctx.inputs.make(seed=1 + i) for i in range(max(1, count // fixed))]


def latency_feed(ctx) -> dict[str, np.ndarray]:
    """One request: batch 1 when the batch is dynamic."""
    return ctx.inputs.make(batch=1, seed=2)


def calibration_rows(ctx) -> list[dict[str, np.ndarray]]:
    """Representative samples, one row each: real rows from --inputs when given, else synthetic."""
    count = CALIBRATION_SAMPLES[budget_name(ctx)]
    if not ctx.inputs.synthetic and ctx.inputs.batch_dynamic:
        rows = len(next(iter(ctx.inputs.samples.values())))
        return [{k: v[i : i + 1] for k, v in ctx.inputs.samples.items()} for i in range(min(rows, count))]
    return [ctx.inputs.make(batch=1, seed=1000 + i) for i in range(count)]


def run_serving(serve, feeds: list[dict]) -> list[dict[str, np.ndarray]]:
    import tensorflow as tf

    return [{k: v.numpy() for k, v in serve(**{n: tf.constant(x) for n, x in feed.items()}).items()} for feed in feeds]


# --- fidelity -----------------------------------------------------------------------------------


def _float_outputs(outputs: list[dict[str, np.ndarray]], names: list[str]) -> list[np.ndarray]:
    return [np.asarray(out[name], dtype=np.float64) for out in outputs for name in names]


def fidelity(reference: list[dict[str, np.ndarray]], candidate: list[dict[str, np.ndarray]]) -> dict[str, Any]:
    """The metrics above, over every float output of every feed."""
    names = sorted(k for k, v in reference[0].items() if np.issubdtype(np.asarray(v).dtype, np.floating))
    if not names:  # integer or string outputs: exact agreement is the only measure
        same = all(np.array_equal(r[k], c[k]) for r, c in zip(reference, candidate) for k in r)
        return {"relative_l2": 0.0 if same else 1.0, "max_abs": None, "cosine": None, "top1_agreement": None}
    ref = np.concatenate([x.ravel() for x in _float_outputs(reference, names)])
    got = np.concatenate([x.ravel() for x in _float_outputs(candidate, names)])
    if not (np.all(np.isfinite(got)) and ref.shape == got.shape):
        return {"relative_l2": float("inf"), "max_abs": float("inf"), "cosine": 0.0, "top1_agreement": 0.0 if _classes(reference, names) else None}
    ref_norm, got_norm = np.linalg.norm(ref), np.linalg.norm(got)
    diff = np.linalg.norm(got - ref)
    result = {
        "relative_l2": float(diff / ref_norm) if ref_norm > 0 else float(diff > 0),
        "max_abs": float(np.max(np.abs(got - ref))),
        "cosine": float(ref @ got / (ref_norm * got_norm)) if ref_norm > 0 and got_norm > 0 else float(ref_norm == got_norm),
        "top1_agreement": None,
    }
    scores = _classes(reference, names)
    if scores:
        agree = [np.mean(np.argmax(r[scores], -1) == np.argmax(c[scores], -1)) for r, c in zip(reference, candidate)]
        result["top1_agreement"] = float(np.mean(agree))
    return {k: (round(v, 6) if isinstance(v, float) else v) for k, v in result.items()}


def _classes(reference: list[dict], names: list[str]) -> str | None:
    """The first output shaped like class scores: [batch, classes] with classes >= 2."""
    return next((n for n in names if reference[0][n].ndim == 2 and reference[0][n].shape[-1] >= 2), None)


def within_bound(fid: dict[str, Any] | None, bound: float) -> bool:
    if not fid:
        return False
    top1 = fid.get("top1_agreement")
    return fid["relative_l2"] <= bound and (top1 is None or top1 >= 1 - bound)


# --- conversion ----------------------------------------------------------------------------------


class ConversionFailed(Exception):
    """The converter raised; the message is one line naming the cause."""


def one_line(exc: BaseException) -> str:
    """The converter's first real error (its messages run to pages of MLIR locations)."""
    for error in getattr(exc, "errors", None) or []:
        message = str(getattr(error, "error_message", "")).strip().splitlines()
        if message:
            return _clip(message[0])
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    useful = [line for line in lines if not line.startswith(("loc(", "<unknown>", "error: loc"))]
    text = (useful or lines or [type(exc).__name__])[0]
    select = next((line for line in lines if line.startswith("TF Select ops:")), "")
    return _clip(f"{text} ({select})" if select and select not in text else text)


def _clip(text: str) -> str:
    return text if len(text) <= MAX_REASON else text[: MAX_REASON - 3] + "..."


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


def export_serving(ctx, directory: str) -> str:
    """Write the serving signature, reading the model's current variable values, as a SavedModel."""
    import tensorflow as tf

    if ctx.model.format == "keras":
        module = tf.Module()
        # The tf.Variables under the Keras 3 variables: tracking the Keras model alone saves them
        # without tying them to the function's captures, and the converter then cannot freeze them
        # (READ_VARIABLE ops that LiteRT cannot run).
        module.variables_ = [getattr(w, "value", w) for w in ctx.model.obj.weights]
        signatures = {ctx.model.signature: ctx.model.serving_fn().get_concrete_function()}
        tf.saved_model.save(module, directory, signatures=signatures)
    else:
        obj = ctx.model.obj
        tf.saved_model.save(obj, directory, signatures={ctx.model.signature: obj.signatures[ctx.model.signature]})
    return directory


def with_new_weights(source_dir: str, target_dir: str, originals: list[np.ndarray], values: list[np.ndarray]) -> str:
    """A copy of a SavedModel whose checkpoint holds ``values`` where it held ``originals``.

    Much faster than tf.saved_model.save (2.8 s on MobileNetV2): the graph is copied as is and
    only the variables are rewritten. Checkpoint entries are matched to kernels by their values.
    """
    import shutil

    import tensorflow as tf

    reader = tf.train.load_checkpoint(os.path.join(source_dir, "variables", "variables"))
    dtypes = reader.get_variable_to_dtype_map()
    tensors = {key: reader.get_tensor(key) for key in dtypes}
    used: set[str] = set()
    for original, value in zip(originals, values):
        # Every entry: some exports (Keras 3) save each variable under two object paths.
        keys = [k for k, t in tensors.items() if k not in used and getattr(t, "shape", None) == original.shape and np.array_equal(t, original)]
        if not keys:
            raise LookupError("a pruned kernel has no entry in the SavedModel's checkpoint")
        for key in keys:
            used.add(key)
            tensors[key] = value
    shutil.copytree(source_dir, target_dir, ignore=shutil.ignore_patterns("variables"))
    os.makedirs(os.path.join(target_dir, "variables"))
    names = sorted(tensors)
    tf.raw_ops.SaveV2(
        prefix=os.path.join(target_dir, "variables", "variables"),
        tensor_names=names,
        shape_and_slices=[""] * len(names),
        tensors=[tf.constant(tensors[n], dtype=dtypes[n]) for n in names],
    )
    return target_dir


def _audit_cache(ctx, kind: str) -> str | None:
    """A path in the audit's scratch dir, keyed by the model files and TF version; None when the check runs alone."""
    import hashlib

    import tensorflow as tf

    if ctx.scratch_dir is None:
        return None
    if os.path.isdir(ctx.model.path):
        files = [os.path.join(root, name) for root, _, names in os.walk(ctx.model.path) for name in names]
    else:
        files = [ctx.model.path]
    stamp = [f"{f}:{os.stat(f).st_size}:{os.stat(f).st_mtime_ns}" for f in files]
    key = hashlib.sha1("|".join([tf.__version__, ctx.model.path, ctx.model.signature, *sorted(stamp)]).encode()).hexdigest()
    return os.path.join(ctx.scratch_dir, kind, key)


def float32_flatbuffer(ctx, source: str, loaded) -> "Converted":
    """The float32 conversion, kept in the audit's scratch dir so the second check reuses the first's."""
    cached = _audit_cache(ctx, "float32-flatbuffers")
    if cached is None:  # a check run on its own converts for itself
        return convert(source, ctx.model.signature, lambda converter: None, loaded)
    path = cached + ".tflite"
    if os.path.isfile(path):
        with open(path, "rb") as f:
            return Converted(f.read(), note="float32 flatbuffer reused from this audit's other check")
    converted = convert(source, ctx.model.signature, lambda converter: None, loaded)
    if not converted.select_ops:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        partial = f"{path}.{os.getpid()}"
        with open(partial, "wb") as f:
            f.write(converted.content)
        os.replace(partial, path)  # atomic: the other check never reads half a file
    return converted


def conversion_source(ctx, tmpdir: str) -> str:
    """A SavedModel directory the converter can read: the model itself, or a Keras 3 model exported.

    The export (~3 s on MobileNetV2) is kept in the audit's scratch dir for the other check.
    """
    if ctx.model.format != "keras":
        return ctx.model.path
    cached = _audit_cache(ctx, "keras-exports")
    if cached is None:
        return export_serving(ctx, os.path.join(tmpdir, "exported"))
    if not os.path.isdir(cached):
        partial = f"{cached}.{os.getpid()}"
        export_serving(ctx, partial)
        os.replace(partial, cached)
    return cached


def loaded_source(ctx, source: str):
    """The loaded SavedModel that reuse_loaded_model hands the converter: the model, or its Keras export loaded once."""
    import tensorflow as tf

    return ctx.model.obj if ctx.model.format != "keras" else tf.saved_model.load(source)


def serving_variables(ctx) -> list:
    """The variables the serving function reads (and a converter freezes)."""
    if ctx.model.format == "keras":
        return list(ctx.model.obj.weights)
    return list(ctx.model.obj.signatures[ctx.model.signature].variables)


@contextlib.contextmanager
def scratch_dir() -> Iterator[str]:
    with tempfile.TemporaryDirectory(prefix="tfaudit-compress-") as path:
        yield path


# --- running a flatbuffer ------------------------------------------------------------------------


@dataclass
class Measured:
    """One TFLite model measured: size, latency and fidelity (None when not measurable, with why)."""

    name: str
    size_bytes: int | None = None
    zipped_bytes: int | None = None
    timing: Any = None  # tfaudit.measure.Timing
    fidelity: dict[str, Any] | None = None
    error: str = ""  # why it did not convert or run
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    saved_model_dir: str = ""  # where a pruned model was written, for reuse; not evidence

    @property
    def ran(self) -> bool:
        return self.timing is not None and self.fidelity is not None

    @property
    def loss(self) -> float | None:
        return self.fidelity["relative_l2"] if self.fidelity else None

    def summary(self) -> dict[str, Any]:
        row: dict[str, Any] = {"size_bytes": self.size_bytes, "size_mb": mb(self.size_bytes) if self.size_bytes else None}
        if self.zipped_bytes is not None:
            row["zipped_bytes"] = self.zipped_bytes
        row["latency"] = self.timing.summary() if self.timing is not None else None
        row["fidelity"] = self.fidelity
        if self.error:
            row["error"] = self.error
        if self.note:
            row["note"] = self.note
        row.update(self.extra)
        return row


def interpreter_runner(content: bytes, signature: str):
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=content, num_threads=os.cpu_count() or 1)
    signatures = interpreter.get_signature_list()
    return interpreter.get_signature_runner(signature if signature in signatures else next(iter(signatures)))


def measure_tflite(ctx, result: Measured, content: bytes, reference: list[dict], feeds: list[dict]) -> Measured:
    """Latency (LiteRT, threads = host cores) and fidelity of one flatbuffer; errors land in ``result.error``."""
    result.size_bytes = len(content)
    try:
        runner = interpreter_runner(content, ctx.model.signature)
        request = latency_feed(ctx)
        result.timing = ctx.timer(lambda: runner(**request))
        result.fidelity = fidelity(reference, [runner(**feed) for feed in feeds])
    except Exception as exc:  # LiteRT raises RuntimeError/ValueError with the failing node
        result.timing = None
        if "Flex delegate" in str(exc):
            result.error = "converted only with SELECT_TF_OPS, and this LiteRT build has no Flex delegate to run those ops"
        else:
            result.error = f"converted, but the LiteRT interpreter cannot run it: {one_line(exc)}"
    return result


def zipped_size(content: bytes) -> int:
    """Size after zip -9, as tfmot's pruning guide measures a model's compressibility."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        archive.writestr("model.tflite", content)
    return len(buffer.getvalue())


# --- comparing ----------------------------------------------------------------------------------


def savings(base: Measured, candidate: Measured, size_key: str = "size_bytes") -> tuple[dict, dict]:
    """(Finding.savings, evidence): size always; latency only when measurably faster."""
    from tfaudit.api import Measure
    from tfaudit.measure import compare

    before, after = getattr(base, size_key), getattr(candidate, size_key)
    result, evidence = {}, {}
    if before and after:
        result["size_bytes"] = Measure(float(before - after))
        result["size_pct"] = Measure(round(100.0 * (before - after) / before, 2))
    if base.timing is not None and candidate.timing is not None:
        comparison = compare(base.timing, candidate.timing)
        faster = comparison.significant and comparison.saved_ms.value > 0
        slower = comparison.significant and comparison.saved_ms.value < 0
        evidence["latency_vs_baseline"] = {
            "speedup": round(comparison.speedup.value, 3),
            "speedup_ci95": [round(comparison.speedup.low, 3), round(comparison.speedup.high, 3)],
            "verdict": "faster" if faster else "slower" if slower else "no significant difference",
        }
        if faster:
            result["latency_ms"] = comparison.saved_ms
            result["latency_pct"] = comparison.saved_pct
    return result, evidence


def benefit_points(saved: dict) -> float:
    """What tfaudit.priority counts: latency % + ½ size %, conservative ends."""
    def low(key: str) -> float:
        m = saved.get(key)
        return 0.0 if m is None else max(0.0, m.value if m.low is None else min(m.value, m.low))

    return low("latency_pct") + 0.5 * low("size_pct")


def severity_for(saved: dict) -> str:
    """medium: a quarter of the size and at least 1 MiB, or 20 % faster; low: any real saving; else info."""
    size_bytes = saved["size_bytes"].value if "size_bytes" in saved else 0.0
    size_pct = saved["size_pct"].value if "size_pct" in saved else 0.0
    # A latency saving counts only when it is worth a user's notice: at least MIN_LATENCY_MS at the low end.
    latency_pct = saved["latency_pct"].low if "latency_pct" in saved and saved["latency_ms"].low >= MIN_LATENCY_MS else 0.0
    if (size_pct >= 25 and size_bytes >= MIB) or latency_pct >= 20:
        return "medium"
    if size_bytes >= 100 * 1024 or latency_pct >= 5:
        return "low"
    return "info"


def pareto_frontier(results: list[Measured]) -> list[str]:
    """Variants no other variant beats on size, median latency and fidelity loss at once."""
    points = [(r.name, (r.size_bytes, r.timing.median_ms, r.loss)) for r in results if r.ran and r.size_bytes]
    frontier = []
    for name, p in points:
        dominated = any(all(a <= b for a, b in zip(q, p)) and any(a < b for a, b in zip(q, p)) for _, q in points)
        if not dominated:
            frontier.append(name)
    return frontier


def samples_for(result: Measured, size_bytes: int | None = None):
    """The scatter points of one finished variant."""
    from tfaudit.api import Sample

    size = size_bytes if size_bytes is not None else result.size_bytes
    if not size:
        return
    if result.timing is not None:
        yield Sample("variant_latency_vs_size", round(result.timing.median_ms, 4), mb(size), result.name)
    if result.fidelity is not None and np.isfinite(result.loss):
        yield Sample("variant_fidelity_vs_size", result.loss, mb(size), result.name)


def input_names(ctx) -> list[str]:
    return [spec.name for spec in ctx.inputs.specs]


def representative_code(ctx) -> str:
    shapes = ", ".join(f'"{s.name}": {s.dtype} {list(s.shape) if s.shape else s.shape}' for s in ctx.inputs.specs)
    return (
        "def representative_dataset():\n"
        f"    # ~100-500 real requests, one row each: {{{shapes}}}\n"
        "    for row in real_rows:\n"
        f"        yield {{{', '.join(f'{chr(34)}{n}{chr(34)}: row[{chr(34)}{n}{chr(34)}]' for n in input_names(ctx))}}}\n"
    )
