"""The SavedModel a converter reads: exported, re-exported when its graph would lose the weights, or given new weights.

Also what a converter crash most likely comes from (variables of unknown shape), and the
resource-variable ops a flatbuffer kept. TensorFlow is imported inside the functions.
"""
from __future__ import annotations

import contextlib
import os
import tempfile
from typing import Any, Iterator

import numpy as np

from tfaudit.api import HelperCrashed as ConversionCrashed
from tfaudit.api import HelperFailed as ConversionFailed
from tfaudit.api import one_line


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


def audit_cache(ctx, kind: str) -> str | None:
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
    cached = audit_cache(ctx, kind)
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
