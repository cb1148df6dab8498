"""Helpers shared by the quantization and pruning checks: conversion, LiteRT runs, fidelity, sizes.

NumPy at module top only; TensorFlow and LiteRT are imported inside the functions, as checks run
them in their worker. TFLite conversions run in a helper process (``tfaudit.api.helper_process``): the converter can crash natively (SIGSEGV on a variable of unknown
shape), and a crash must end one conversion, not the check.

Fidelity is always measured against the original SavedModel on the same inputs:

- ``relative_l2``: ‖candidate − reference‖ / ‖reference‖ over every float output, flattened;
  this is the "fidelity loss" the findings, the bound and the charts use;
- ``max_abs``, ``cosine``;
- ``top1_agreement`` (all samples) and ``top1`` (the statistics below) when an output looks
  like class scores ([batch, classes], classes ≥ 2).

Top-1 flips are judged with statistics, not one flip. A flip counts as a fidelity loss only
when the reference's top-1 margin (best minus second-best score) is more than
``NEAR_TIE_FACTOR`` × the variant's typical per-sample output error (the median over samples of
the largest absolute output change): a swap within that margin is what an error of the measured
size produces on a near tie, and the relative L2 bound already judges that error. The counted
disagreement rate gets a 95 % Wilson interval: the top-1 bound (agreement ≥ 1 − bound) is
"within" when the interval's upper end is at most the bound, "beyond" when its lower end is
above it, else "unresolved" (too few samples: the quantization check then measures more, up to
its budget) and judged on the point estimate.

A variant is within the bound ``max_fidelity_loss`` (option, default 0.01) when its relative L2
error is at most the bound and, for class scores, the top-1 bound is not broken.
"""
from __future__ import annotations

import contextlib
import io
import json
import os
import tempfile
import zipfile
from dataclasses import dataclass, field
from typing import Any, Iterator

import numpy as np

from tfaudit.api import HelperCrashed as ConversionCrashed  # noqa: F401 - the names the compression checks catch
from tfaudit.api import HelperFailed as ConversionFailed
from tfaudit.api import HelperTimeout as ConversionTimeout  # noqa: F401
from tfaudit.api import Helper, fix_dir, one_line, publish_fix, with_artifact  # noqa: F401

DEFAULT_MAX_FIDELITY_LOSS = 0.01
MIB = 1024 * 1024
# Per budget: inputs the fidelity is measured on, and representative samples for calibration.
EVAL_SAMPLES = {"quick": 16, "standard": 32, "thorough": 128}
CALIBRATION_SAMPLES = {"quick": 16, "standard": 32, "thorough": 200}
EXTRA_ROWS = 64  # rows per chunk when top-1 agreement needs more samples
MIN_LATENCY_MS = 0.05
IN_TURN_SHARE = 0.5  # of the budget's measurement time, for a candidate and its baseline timed call by call in turn
IN_TURN_ROUNDS_PER_REPEAT = 10  # … stopping earlier at 10 × the budget's repeats rounds (150 at quick): microsecond models need no full window


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


def more_feeds(ctx, index: int) -> list[dict[str, np.ndarray]]:
    """The ``index``-th chunk of EXTRA_ROWS further rows, none of them in eval_feeds."""
    if ctx.inputs.batch_dynamic:
        return [ctx.inputs.make(batch=EXTRA_ROWS, seed=100 + index)]
    fixed = next((s.shape[0] for s in ctx.inputs.specs if s.shape), 1) or 1
    per_chunk = max(1, EXTRA_ROWS // fixed)
    return [ctx.inputs.make(seed=10_000 + index * per_chunk + i) for i in range(per_chunk)]


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
        result["top1"] = top1_statistics(reference, candidate, scores)
        result["top1_agreement"] = 1.0 - result["top1"]["flips"] / result["top1"]["samples"]
    return {k: (round(v, 6) if isinstance(v, float) else v) for k, v in result.items()}


def _classes(reference: list[dict], names: list[str]) -> str | None:
    """The first output shaped like class scores: [batch, classes] with classes >= 2."""
    return next((n for n in names if reference[0][n].ndim == 2 and reference[0][n].shape[-1] >= 2), None)


NEAR_TIE_FACTOR = 2.0  # a swap of two scores needs a change of at most twice the largest one
Z95 = 1.959964


def top1_statistics(reference: list[dict], candidate: list[dict], scores: str) -> dict[str, Any]:
    """Top-1 flips per sample, with near ties (see the module docstring) set apart."""
    ref = np.concatenate([np.asarray(r[scores], np.float64) for r in reference])
    got = np.concatenate([np.asarray(c[scores], np.float64) for c in candidate])
    ordered = np.sort(ref, axis=-1)
    margin = ordered[:, -1] - ordered[:, -2]
    near_tie = NEAR_TIE_FACTOR * float(np.median(np.max(np.abs(got - ref), axis=-1)))
    flipped = ref.argmax(-1) != got.argmax(-1)
    ties = flipped & (margin <= near_tie)
    return {
        "compared": f"top-1 class of output {scores!r} per sample, candidate vs SavedModel",
        "samples": int(len(ref)),
        "flips": int(flipped.sum()),
        "near_tie_flips": int(ties.sum()),
        "near_tie_margin": round(near_tie, 8),
        "counted_flips": int(flipped.sum() - ties.sum()),
        "flipped_margins": [round(float(m), 8) for m in margin[flipped][:10]],
    }


def wilson(count: int, n: int) -> tuple[float, float]:
    """95 % Wilson score interval of a proportion count/n."""
    if n <= 0:
        return 0.0, 1.0
    p = count / n
    centre = (p + Z95**2 / (2 * n)) / (1 + Z95**2 / n)
    half = Z95 * np.sqrt(p * (1 - p) / n + Z95**2 / (4 * n * n)) / (1 + Z95**2 / n)
    return max(0.0, float(centre - half)), min(1.0, float(centre + half))


def top1_verdict(top1: dict[str, Any], bound: float) -> dict[str, Any]:
    """The counted disagreement against the bound: within / beyond / unresolved, and how sure."""
    n, k = top1["samples"], top1["counted_flips"]
    low, high = wilson(k, n)
    verdict = "within" if high <= bound else "beyond" if low > bound else "unresolved"
    # Flip-free samples the upper end needs to reach the bound: z²(1 − b)/b.
    needed = int(np.ceil(Z95**2 * (1 - bound) / bound)) if bound > 0 else None
    return {
        "agreement": round(1 - k / n, 6),
        "agreement_ci95": [round(1 - high, 6), round(1 - low, 6)],
        "verdict": verdict,
        "passes": verdict == "within" or (verdict == "unresolved" and k / n <= bound),
        "flip_free_samples_to_resolve": needed,
    }


def top1_text(fid: dict[str, Any], bound: float) -> str:
    """One sentence: what was compared, what flipped, and how sure the verdict is."""
    top1 = fid.get("top1")
    if not top1:
        return ""
    judged = top1_verdict(top1, bound)
    low, high = judged["agreement_ci95"]
    text = f"top-1 class: {top1['samples'] - top1['flips']}/{top1['samples']} samples unchanged"
    if top1["near_tie_flips"]:
        text += (
            f" ({top1['near_tie_flips']} flip(s) on near ties — reference margin ≤ {top1['near_tie_margin']:.2g}, "
            f"{NEAR_TIE_FACTOR:g}× the variant's typical output error — not counted)"
        )
    text += f"; counted agreement {judged['agreement']:.1%}, 95 % interval [{low:.1%}, {high:.1%}] vs ≥ {1 - bound:.0%}: "
    if judged["verdict"] == "unresolved":
        text += f"not resolved with {top1['samples']} samples (about {judged['flip_free_samples_to_resolve']} flip-free ones would), judged on the point estimate"
    else:
        text += f"{judged['verdict']} the bound"
    return text


def within_bound(fid: dict[str, Any] | None, bound: float) -> bool:
    if not fid:
        return False
    if fid.get("top1"):
        return fid["relative_l2"] <= bound and top1_verdict(fid["top1"], bound)["passes"]
    top1 = fid.get("top1_agreement")
    return fid["relative_l2"] <= bound and (top1 is None or top1 >= 1 - bound)


# --- conversion ----------------------------------------------------------------------------------


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


def conversion_source(ctx, tmpdir: str) -> str:
    """A SavedModel directory the converter can read: the model itself, a Keras 3 model exported,
    or the loaded SavedModel saved again when its own graph would lose the weights.

    TFLiteConverter.from_saved_model reads a SavedModel's MetaGraph the TF1 way: it runs the
    saver's restore op and freezes the variables it initialized. A tf.Module that tracks a
    Keras 3 model as an attribute (``self.model = keras_model``, the model called in a
    tf.function) is saved with each Keras variable twice in that graph: the serving signature
    reads handles named after the Keras variables, while the restore op assigns the checkpoint
    to a second set of handles ("Variable", "Variable_1", ... — the tf.Variables inside the
    Keras variables). The variables the signature reads are then never initialized, nothing
    is frozen, and the flatbuffer keeps them as VAR_HANDLE/READ_VARIABLE ops without values:
    no weights in it, garbage or NaN outputs, calibration failing in READ_VARIABLE
    (``unrestored_variables`` finds this). tf.saved_model.load restores through the object
    graph instead, so the loaded object holds the right values, and saving it again
    (``export_serving``) writes one handle per variable, read and restored alike.

    An export (~2-3 s on MobileNetV2) is kept in the audit's scratch dir for the other check;
    ``reexport_reason(path)`` says why a returned directory is a re-export. When the re-export
    fails, the model itself is returned (its conversion then shows what is wrong).
    """
    if ctx.model.format != "keras":
        reason = unrestored_variables(ctx.model.path, ctx.model.signature)
        if reason is None:
            return ctx.model.path
        try:
            path = _export_cached(ctx, "saved-model-reexports", tmpdir)
        except Exception as exc:  # noqa: BLE001 - a function the loaded object cannot save again
            _REEXPORTED[ctx.model.path] = {**reason, "reexport_failed": one_line(exc)}
            return ctx.model.path
        _REEXPORTED[path] = reason
        return path
    try:
        return _export_cached(ctx, "keras-exports", tmpdir)
    except Exception as exc:  # a layer tf.saved_model.save cannot trace, for one
        raise ConversionFailed(f"the Keras model could not be exported as a SavedModel to convert: {one_line(exc)}") from None


def _export_cached(ctx, kind: str, tmpdir: str) -> str:
    cached = _audit_cache(ctx, kind)
    if cached is None:
        return export_serving(ctx, os.path.join(tmpdir, "exported"))
    if not os.path.isdir(cached):
        partial = f"{cached}.{os.getpid()}"
        export_serving(ctx, partial)
        os.replace(partial, cached)
    return cached


_REEXPORTED: dict[str, dict[str, Any]] = {}  # conversion source -> why it is a re-export (unrestored_variables)


def reexport_reason(source: str) -> dict[str, Any] | None:
    """Why conversion_source re-exported the model to ``source`` (or failed to, for the model's own path); None otherwise."""
    return _REEXPORTED.get(source)


def unrestored_variables(saved_model_dir: str, signature: str) -> dict[str, Any] | None:
    """The variable handles ``signature`` reads in the SavedModel's graph that its restore op never assigns.

    None when every one is restored, or when the graph is not the TF2 layout this reads (a
    signature that calls one function with its variable handles as inputs, a restore op that
    is a function call too): then nothing is known to be wrong. See conversion_source for what
    the converter does with unrestored handles.
    """
    try:
        from tensorflow.core.protobuf import saved_model_pb2

        proto = saved_model_pb2.SavedModel()
        with open(os.path.join(saved_model_dir, "saved_model.pb"), "rb") as f:
            proto.ParseFromString(f.read())
        graph = next((m for m in proto.meta_graphs if "serve" in m.meta_info_def.tags), proto.meta_graphs[0])
        nodes = {node.name: node for node in graph.graph_def.node}

        def handles(node_name: str) -> set[str] | None:
            node = nodes.get(node_name.split(":")[0].lstrip("^"))
            if node is None or node.op not in ("StatefulPartitionedCall", "PartitionedCall"):
                return None
            return {i.split(":")[0] for i in node.input if not i.startswith("^") and getattr(nodes.get(i.split(":")[0]), "op", "") == "VarHandleOp"}

        outputs = graph.signature_def[signature].outputs
        read: set[str] = set()
        for tensor in outputs.values():
            found = handles(tensor.name)
            if found is None:
                return None
            read |= found
        restored = handles(graph.saver_def.restore_op_name) if graph.saver_def.restore_op_name else None
    except Exception:  # noqa: BLE001 - an unreadable or unusual graph: no diagnosis, the conversion still runs
        return None
    if not read or restored is None or read <= restored:
        return None
    missing = sorted(read - restored)
    return {
        "signature_variables": len(read),
        "not_restored": len(missing),
        "not_restored_examples": missing[:5],
        "restored_instead": sorted(restored - read)[:5],
        "why": (
            f"in the SavedModel's graph, which TFLiteConverter.from_saved_model loads, the {signature!r} signature reads "
            f"{len(read)} variable handle(s) of which {len(missing)} are never assigned by the restore op (e.g. "
            f"{', '.join(missing[:3])}); it restores other handles instead (e.g. {', '.join(sorted(restored - read)[:3])}). "
            "The converter freezes only restored variables, so it keeps these as VAR_HANDLE/READ_VARIABLE ops without their "
            "values. Typical cause: a Keras 3 model tracked as an attribute of a tf.Module (each Keras variable is saved twice)."
        ),
    }


def resource_variable_ops(content: bytes) -> dict[str, int]:
    """How many VAR_HANDLE / READ_VARIABLE / ASSIGN_VARIABLE / CALL_ONCE ops a flatbuffer holds (all subgraphs)."""
    try:
        from tensorflow.lite.python import schema_py_generated as schema
        from tensorflow.lite.python import schema_util

        wanted = {getattr(schema.BuiltinOperator, n): n for n in ("VAR_HANDLE", "READ_VARIABLE", "ASSIGN_VARIABLE", "CALL_ONCE")}
        model = schema.Model.GetRootAs(content, 0)
        codes = [schema_util.get_builtin_code_from_operator_code(model.OperatorCodes(i)) for i in range(model.OperatorCodesLength())]
        counts: dict[str, int] = {}
        for g in range(model.SubgraphsLength()):
            subgraph = model.Subgraphs(g)
            for o in range(subgraph.OperatorsLength()):
                name = wanted.get(codes[subgraph.Operators(o).OpcodeIndex()])
                if name:
                    counts[name] = counts.get(name, 0) + 1
        return counts
    except Exception:  # noqa: BLE001 - another schema: unknown
        return {}


# --- conversions in a child process -------------------------------------------------------------


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
    isolated.prepare("loading the model to convert it", "tfaudit.checks._compression:preload", directory=source, modules=modules)


def write_feeds(path: str, feeds: list[dict[str, np.ndarray]]) -> str:
    """Feeds (or outputs) for the other process: a list of {name: array}, in order."""
    arrays = {f"f{i}_{j}": np.asarray(v) for i, feed in enumerate(feeds) for j, v in enumerate(feed.values())}
    np.savez(path, names=np.array([list(feed) for feed in feeds] + [[]], dtype=object), **arrays)
    return path


def read_feeds(path: str) -> list[dict[str, np.ndarray]]:
    with np.load(path, allow_pickle=True) as data:  # our own file, written by write_feeds
        names = list(data["names"])[:-1]
        return [{n: data[f"f{i}_{j}"] for j, n in enumerate(feed)} for i, feed in enumerate(names)]


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
    reply = isolated.call(f"converting {variant}", "tfaudit.checks._compression:convert_job",
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
    cached = _audit_cache(ctx, "float32-flatbuffers")
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


def crash_suspects(ctx) -> list[str]:
    """What in the model a converter crash most likely comes from: variables of unknown shape."""
    paths = attribute_paths(ctx.model.obj)
    return [f"variable {paths.get(id(v), v.name)} shape {dims}" for v, dims in unknown_shapes(serving_variables(ctx))]


def attribute_paths(obj, depth: int = 3) -> dict[int, str]:
    """id(variable) -> where the model object holds it ("h", "encoder.state"), as its author named it."""
    import tensorflow as tf

    found: dict[int, str] = {}
    queue = [(obj, "")]
    for _ in range(depth):
        children = []
        for parent, prefix in queue:
            for key, value in list(getattr(parent, "__dict__", {}).items()):
                if key.startswith("_"):
                    continue
                if isinstance(value, tf.Variable):
                    found.setdefault(id(value), prefix + key)
                elif hasattr(value, "_trackable_children"):  # a tf.Module, Keras layer or restored object
                    children.append((value, f"{prefix}{key}."))
        queue = children
    return found


def unknown_shapes(variables) -> list[tuple[Any, Any]]:
    """(variable, dims) of the variables whose shape is not fully known (dims: a list with None, or "unknown rank")."""
    import tensorflow as tf

    found = []
    for variable in variables:
        shape = tf.TensorShape(getattr(variable, "shape", None))
        if not shape.is_fully_defined():
            found.append((variable, shape.as_list() if shape.rank is not None else "unknown rank"))
    return found


def crash_evidence(ctx, exc: ConversionCrashed) -> dict[str, Any]:
    suspects = crash_suspects(ctx)
    return {
        "signal": exc.signal,
        "message": str(exc),
        "suspects": suspects,
        "suspects_why": "TFLite has no way to hold state whose shape changes at run time (here: grown by the serving function)" if suspects else "",
    }


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
    timing: Any = None  # tfaudit.engine.measure.Timing
    fidelity: dict[str, Any] | None = None
    error: str = ""  # why it did not convert or run
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    saved_model_dir: str = ""  # where a pruned model was written, for reuse; not evidence
    baseline_timing: Any = None  # the baseline timed in turn with this model, when it was; not evidence
    outputs: list[dict] | None = None  # LiteRT outputs on the fidelity feeds; not evidence

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


def interpreter_runner(content: bytes, signature: str, num_threads: int | None = os.cpu_count() or 1):
    """A signature runner; ``num_threads`` None is LiteRT's own default."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=content, num_threads=num_threads)
    signatures = interpreter.get_signature_list()
    return interpreter.get_signature_runner(signature if signature in signatures else next(iter(signatures)))


def litert_job(model: str, signature: str, feeds: str, out: str, latency: str | None = None, warmup: int = 0,
               repeats: int = 0, max_seconds: float = 0.0, baseline: str | None = None) -> dict[str, Any]:
    """In the child: time ``model`` on the ``latency`` feed (as ctx.timer does), and write its outputs on ``feeds``.

    With ``baseline`` (another flatbuffer), the two are timed call by call in turn for ``max_seconds``
    (host_index.time_interleaved), so a comparison of the two sees the same moments of the host.
    """
    from tfaudit.engine.host_index import time_interleaved
    from tfaudit.engine.measure import time_call

    with open(model, "rb") as f:
        runner = interpreter_runner(f.read(), signature)
    reply: dict[str, Any] = {}
    try:
        if latency:
            request = read_feeds(latency)[0]
            if baseline:
                with open(baseline, "rb") as f:
                    base = interpreter_runner(f.read(), signature)
                base_timing, timing = time_interleaved(lambda: base(**request), lambda: runner(**request), warmup=warmup, max_seconds=max_seconds,
                                                       max_rounds=repeats * IN_TURN_ROUNDS_PER_REPEAT)
                reply["baseline_samples_ms"] = list(base_timing.samples_ms)
            else:
                timing = time_call(lambda: runner(**request), warmup=warmup, repeats=repeats, max_seconds=max_seconds)
            reply["samples_ms"] = list(timing.samples_ms)
            reply["warmup"] = warmup
        write_feeds(out, [runner(**feed) for feed in read_feeds(feeds)])
    except Exception as exc:  # LiteRT raises RuntimeError/ValueError with the failing node
        if "Flex delegate" in str(exc):
            return {"error": "converted only with SELECT_TF_OPS, and this LiteRT build has no Flex delegate to run those ops"}
        return {"error": f"converted, but the LiteRT interpreter cannot run it: {one_line(exc)}"}
    return reply


class LiteRT:
    """Runs flatbuffers in the isolated process: a LiteRT crash ends one measurement, not the check."""

    def __init__(self, ctx, isolated: Helper, tmpdir: str, feeds: list[dict], reference: list[dict]):
        self.ctx, self.isolated, self.tmpdir = ctx, isolated, tmpdir
        self.feeds, self.reference = feeds, reference
        self.feeds_path = write_feeds(os.path.join(tmpdir, "feeds.npz"), feeds)
        self.latency_path = write_feeds(os.path.join(tmpdir, "latency.npz"), [latency_feed(ctx)])

    def outputs(self, model: str, feeds_path: str, latency: bool = False, what: str = "", baseline: str | None = None) -> tuple[list[dict], Any, Any]:
        """(outputs on the feeds, Timing or None, the baseline's Timing timed in turn or None); raises ConversionFailed / ConversionCrashed."""
        from tfaudit.engine.measure import Timing

        out = os.path.join(self.tmpdir, "outputs.npz")
        budget = self.ctx.budget
        timing = {"latency": self.latency_path, "warmup": budget.warmup, "repeats": budget.repeats, "max_seconds": budget.timing_seconds} if latency else {}
        if latency and baseline:
            timing.update(baseline=baseline, max_seconds=budget.timing_seconds * IN_TURN_SHARE)
        reply = self.isolated.call(f"running {what or os.path.basename(model)} in LiteRT", "tfaudit.checks._compression:litert_job",
                                   model=model, signature=self.ctx.model.signature, feeds=feeds_path, out=out, **timing)
        if "error" in reply:
            raise ConversionFailed(reply["error"])
        made = lambda key: Timing(tuple(reply[key]), reply["warmup"]) if key in reply else None  # noqa: E731
        return read_feeds(out), made("samples_ms"), made("baseline_samples_ms")

    def measure(self, result: Measured, model: str, baseline: str | None = None) -> Measured:
        """Size, latency (LiteRT, threads = host cores) and fidelity of the flatbuffer at ``model``; errors land in ``result.error``.

        With ``baseline``, the latency is timed call by call in turn with that flatbuffer (``result.baseline_timing``).
        """
        result.size_bytes = os.path.getsize(model)
        try:
            result.outputs, result.timing, result.baseline_timing = self.outputs(model, self.feeds_path, latency=True, what=result.name, baseline=baseline)
            result.fidelity = fidelity(self.reference, result.outputs)
        except ConversionCrashed as exc:
            result.timing = None
            result.error = f"converted, but LiteRT crashed running it: {exc}"
            result.extra["crash"] = {"stage": "LiteRT run", **crash_evidence(self.ctx, exc)}
        except ConversionFailed as exc:
            result.timing = None
            result.error = str(exc)
        return result


def zipped_size(content: bytes) -> int:
    """Size after zip at deflate's default level, as tfmot's pruning guide measures a model's compressibility.

    Level 9 took 8× as long (1.9 vs 0.23 s on 5 MB of 50 %-sparse float32) for 1–3 % less.
    """
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("model.tflite", content)
    return len(buffer.getvalue())


# --- comparing ----------------------------------------------------------------------------------


def savings(base: Measured, candidate: Measured, size_key: str = "size_bytes") -> tuple[dict, dict]:
    """(Finding.savings, evidence): size always; latency only when measurably faster, by at least MIN_LATENCY_MS."""
    from tfaudit.api import Measure
    from tfaudit.engine.measure import compare

    before, after = getattr(base, size_key), getattr(candidate, size_key)
    result, evidence = {}, {}
    if before and after:
        result["size_bytes"] = Measure(float(before - after))
        result["size_pct"] = Measure(round(100.0 * (before - after) / before, 2))
    base_timing = candidate.baseline_timing or base.timing  # timed in turn with the candidate when it was
    if base_timing is not None and candidate.timing is not None:
        comparison = compare(base_timing, candidate.timing)
        faster = comparison.significant and comparison.saved_ms.value > 0
        slower = comparison.significant and comparison.saved_ms.value < 0
        evidence["latency_vs_baseline"] = {
            "speedup": round(comparison.speedup.value, 3),
            "speedup_ci95": [round(comparison.speedup.low, 3), round(comparison.speedup.high, 3)],
            "verdict": "faster" if faster else "slower" if slower else "no significant difference",
        }
        if faster and comparison.saved_ms.value >= MIN_LATENCY_MS:  # a significant 0.1 µs is not a saving anyone serves
            result["latency_ms"] = comparison.saved_ms
            result["latency_pct"] = comparison.saved_pct
    return result, evidence


def benefit_points(saved: dict, end: str = "low") -> float:
    """What tfaudit.report.priority counts: latency % (when its ms reach MIN_LATENCY_MS) + ½ size %.

    ``end`` "low" (conservative, as the ranking counts) or "high": the ends of its interval.
    """
    def at(key: str) -> float:
        m = saved.get(key)
        if m is None:
            return 0.0
        bound = m.low if end == "low" else m.high
        return m.value if bound is None else bound

    latency = 0.0
    if "latency_pct" in saved and at("latency_ms") >= MIN_LATENCY_MS:
        latency = max(0.0, at("latency_pct"))
    return latency + 0.5 * max(0.0, at("size_pct"))


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


# --- --fix-dir: the fixed artifacts, written and measured again ---------------------------------------

def remeasure(litert: "LiteRT", baseline: str, artifact: str, size_key: str = "size_bytes") -> tuple[dict, dict]:
    """(verified savings, evidence) of the flatbuffer at ``artifact`` against ``baseline``, both read from disk now.

    A fresh LiteRT interpreter runs each, timed call by call in turn; sizes and zipped sizes are of
    the files; fidelity is against the SavedModel.
    """
    made = litert.measure(Measured("artifact"), artifact, baseline=baseline)
    base = Measured("baseline", size_bytes=os.path.getsize(baseline), timing=made.baseline_timing)
    for measured, path in ((made, artifact), (base, baseline)):
        with open(path, "rb") as f:
            measured.zipped_bytes = zipped_size(f.read())
    verified, comparison = savings(base, made, size_key)
    evidence = {
        "artifact_bytes": made.size_bytes, "baseline_bytes": base.size_bytes,
        "artifact_zipped_bytes": made.zipped_bytes, "baseline_zipped_bytes": base.zipped_bytes,
        "fidelity": made.fidelity, "error": made.error or None, **comparison,
    }
    return verified, evidence
