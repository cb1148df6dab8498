"""Load a model and inventory it.

Runs inside a worker process, so TensorFlow is imported at module top.
Supported: SavedModel directories (plain or written by tf_keras) and Keras 3 ``.keras`` files.
Every failure to load becomes a ``LoadError`` whose message is one line naming the problem and path.
"""
from __future__ import annotations

import inspect
import json
import os
import re
import zipfile
from dataclasses import dataclass, field
from typing import Any, Callable

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402
from google.protobuf import message as pb_message  # noqa: E402
from google.protobuf import text_format  # noqa: E402
from tensorflow.core.protobuf import saved_model_pb2  # noqa: E402
from tfaudit.engine.trust import called_functions  # noqa: E402

SERVING_DEFAULT = "serving_default"
CHECKPOINT_GRAPH_KEY = "_CHECKPOINTABLE_OBJECT_GRAPH"
# Not counted in the op histogram: graph plumbing, plus function calls (their bodies are counted).
PLUMBING_OPS = frozenset(
    {"Placeholder", "Identity", "IdentityN", "NoOp", "StatefulPartitionedCall", "PartitionedCall"}
)
MAX_MESSAGE = 300
# Libraries that register custom ops at import: (op-name prefix, module, pip package). Ops without
# a prefix are found by importing each installed library in turn.
OP_LIBRARIES = (
    ("TFText>", "tensorflow_text", "tensorflow-text"),
    ("Sentencepiece", "tensorflow_text", "tensorflow-text"),
    ("Addons>", "tensorflow_addons", "tensorflow-addons"),
    ("IO>", "tensorflow_io", "tensorflow-io"),
    ("TFRA>", "tensorflow_recommenders_addons", "tensorflow-recommenders-addons"),
    ("SimpleML", "tensorflow_decision_forests", "tensorflow-decision-forests"),
)


class LoadError(Exception):
    """The model could not be loaded; the message is one line naming the problem and the path."""


@dataclass
class LoadedModel:
    path: str
    format: str  # "saved_model" | "tf_keras_saved_model" | "keras"
    signature: str
    inventory: dict
    obj: Any  # tf.saved_model.load result, or the Keras 3 model
    _serving: Callable[..., dict] | None = field(default=None, init=False, repr=False)
    _keras: Any = field(default=None, init=False, repr=False)

    def serving_fn(self) -> Callable[..., dict]:
        """Call with keyword tensors named as the signature inputs; returns {name: tf.Tensor}."""
        if self._serving is None:
            if self.format == "keras":
                self._serving = _keras_serving_fn(self.obj, input_specs(self.inventory))
            else:
                self._serving = self.obj.signatures[self.signature]
        return self._serving

    def keras_model(self):
        """The Keras model when one can be loaded (tf_keras SavedModel or .keras), else None."""
        if self.format == "keras":
            return self.obj
        if self.format == "tf_keras_saved_model" and self._keras is None:
            import tf_keras

            try:
                self._keras = tf_keras.models.load_model(self.path, compile=False)
            except Exception as exc:
                raise LoadError(f"cannot load tf_keras model from {self.path}: {_one_line(exc)}") from None
        return self._keras


def input_specs(inventory: dict) -> list[dict]:
    """The chosen signature's inputs: [{"name", "shape": [int | None], "dtype"}]."""
    return inventory["signatures"][inventory["signature"]]["inputs"]


def load_model(path: str, signature: str | None = None, refuse_untrusted: bool = False, user_modules: tuple[str, ...] = ()) -> LoadedModel:
    """The model at ``path``; with ``refuse_untrusted`` (the audit's first load, without --trust-model), a LoadError
    before anything of it runs when it holds what ``tfaudit.engine.trust`` refuses."""
    path = os.path.abspath(path)
    if not os.path.exists(path):
        raise LoadError(f"no such file or directory: {path}")
    if os.path.isfile(path) and os.path.basename(path) in ("saved_model.pb", "saved_model.pbtxt"):
        path = os.path.dirname(path)
    if os.path.isdir(path):
        return _load_saved_model(path, signature, refuse_untrusted, user_modules)
    if path.endswith(".keras"):
        return _load_keras(path, signature, refuse_untrusted)
    raise LoadError(f"not a model (expected a SavedModel directory or a .keras file): {path}")


# --- SavedModel -------------------------------------------------------------------------------


def _load_saved_model(path: str, signature: str | None, refuse_untrusted: bool, user_modules: tuple[str, ...]) -> LoadedModel:
    meta_graph = _read_meta_graph(path)
    names = sorted(k for k in meta_graph.signature_def if not k.startswith("__"))
    chosen = _choose_signature(names, signature, path) if names else None
    loaded, op_libraries = _open_saved_model(path, meta_graph, refuse_untrusted, user_modules)
    if chosen is None:
        listed = "; ".join(f"{f['name']}({trace_text(f)})" for f in tensor_functions(loaded)) or "none with tensor inputs"
        raise LoadError(f"has no serving signature; its restored functions: {listed}; audit one with --function NAME: {path}")
    has_keras_metadata = os.path.isfile(os.path.join(path, "keras_metadata.pb"))
    fmt = "tf_keras_saved_model" if has_keras_metadata else "saved_model"
    signatures = {name: _function_io(fn) for name, fn in loaded.signatures.items()}
    inventory = {
        "path": path,
        "format": fmt,
        "signature": chosen,
        "signatures": signatures,
        "functions": _restored_functions(loaded),
        "variables": _checkpoint_variables(path),
        **_disk_usage(path),
        "ops": op_histogram(loaded.signatures[chosen]),
        "versions": {
            "tensorflow": meta_graph.meta_info_def.tensorflow_version or None,
            "keras": _tf_keras_version(path) if has_keras_metadata else None,
        },
        "keras_loadable": has_keras_metadata,
        "op_libraries": op_libraries,
    }
    return LoadedModel(path=path, format=fmt, signature=chosen, inventory=inventory, obj=loaded)


def _open_saved_model(path: str, meta_graph, refuse_untrusted: bool, user_modules: tuple[str, ...]):
    """(the loaded SavedModel, the op libraries imported for it): custom ops registered, and with ``refuse_untrusted``
    the graph read for what ``tfaudit.engine.trust`` refuses before anything of it runs."""
    op_libraries = register_custom_ops(meta_graph.graph_def, path)
    if refuse_untrusted:
        from tfaudit.engine import trust

        unknown = tuple(m for m in user_modules if m not in {module for _, module, _ in OP_LIBRARIES})
        refused = trust.refusal(path, meta_graph, known_library_ops(unknown), unknown)
        if refused:
            raise LoadError(refused)
    try:
        return tf.saved_model.load(path), op_libraries
    except Exception as exc:
        raise LoadError(f"cannot load SavedModel {path}: {_one_line(exc)}") from None


def tensor_functions(loaded) -> list[dict]:
    """The restored functions a request could call: each with its traces that take tensors only (_restored_functions' shape)."""
    found = []
    for function in _restored_functions(loaded):
        traces = [i for i, python in enumerate(function["python_args"]) if not python]
        if traces:
            found.append({**function, "input_signatures": [function["input_signatures"][i] for i in traces]})
    return found


def trace_text(function: dict) -> str:
    """A function's most general tensor trace, as ``float32[None, 8], int32[None]`` (" | …" when it has others)."""
    first = most_general(function["input_signatures"])
    text = ", ".join(f"{spec['dtype']}{spec['shape'] if spec['shape'] is not None else '[?]'}" for spec in first)
    more = len(function["input_signatures"]) - 1
    return text + (f" | {more} other trace{'s' if more > 1 else ''}" if more else "")


def most_general(signatures: list[list[dict]]) -> list[dict]:
    """The trace with the most unknown dimensions (the first of equals): the one that serves the most requests."""
    def unknown(signature: list[dict]) -> int:
        return sum(1000 if spec["shape"] is None else spec["shape"].count(None) for spec in signature)

    return max(signatures, key=unknown)


def export_function(path: str, name: str, out: str, refuse_untrusted: bool, user_modules: tuple[str, ...]) -> str:
    """``--function NAME``: the SavedModel's restored function NAME (a dotted attribute path) saved again to ``out`` with
    its most general tensor trace as ``serving_default``, so that every check audits it as it would a signature."""
    if not os.path.isdir(path):
        raise LoadError(f"--function applies to a SavedModel directory: {path}")
    meta_graph = _read_meta_graph(path)
    loaded, _ = _open_saved_model(path, meta_graph, refuse_untrusted, user_modules)
    functions = {f["name"]: f for f in tensor_functions(loaded)}
    target = loaded
    for part in name.split("."):
        target = getattr(target, part, None)
    if not isinstance(target, tf.types.experimental.PolymorphicFunction):
        listed = ", ".join(sorted(functions)) or "none with tensor inputs"
        raise LoadError(f"--function {name}: no such restored function (found: {listed}): {path}")
    concretes = [c for c in saved_traces(target) if all(isinstance(x, tf.TypeSpec) for x in tf.nest.flatten(c.structured_input_signature))]
    if not concretes:
        raise LoadError(f"--function {name}: no trace of it takes tensors only (its traces bake in Python values): {path}")
    specs = [[_spec(x) for x in tf.nest.flatten(c.structured_input_signature)] for c in concretes]
    chosen = concretes[specs.index(most_general(specs))]
    try:
        tf.saved_model.save(loaded, out, signatures={SERVING_DEFAULT: chosen})
    except Exception as exc:
        raise LoadError(f"--function {name}: cannot save it again as a serving signature: {_one_line(exc)}: {path}") from None
    return out


def import_modules(names: list[str]) -> None:
    """``--import``: modules the user names to register custom ops, imported before loading."""
    import importlib

    for name in names:
        try:
            importlib.import_module(name)
        except Exception as exc:  # ImportError, or whatever the module raises while registering
            raise LoadError(f"--import {name} failed: {_one_line(exc)}") from None


def unregistered_ops(graph_def) -> list[str]:
    from tensorflow.python.framework import op_def_registry

    ops = {node.op for node in graph_def.node}
    ops |= {node.op for function in graph_def.library.function for node in function.node_def}
    functions = {function.signature.name for function in graph_def.library.function}
    return sorted(op for op in ops - functions if op_def_registry.get(op) is None)


def known_library_ops(unknown_modules: tuple[str, ...]) -> frozenset[str]:
    """Ops registered now beyond TensorFlow's own that a library of OP_LIBRARIES registered: all of them when the user
    imported no other module, else those named with a library's prefix (an unprefixed op could be the user's)."""
    from tfaudit.engine import trust

    extra = trust.registered_ops() - trust.core_ops()
    if not unknown_modules:
        return extra
    return frozenset(op for op in extra if any(op.startswith(prefix) for prefix, _, _ in OP_LIBRARIES))


def register_custom_ops(graph_def, path: str) -> list[str]:
    """Import the installed libraries whose ops the graph uses; the modules imported.

    Every op left unregistered becomes a LoadError naming the op and the package to install.
    """
    import importlib
    import importlib.util

    missing = unregistered_ops(graph_def)
    if not missing:
        return []
    imported: list[str] = []

    def load(module: str) -> None:
        if module in imported or importlib.util.find_spec(module) is None:
            return
        try:
            importlib.import_module(module)
        except Exception as exc:  # a library built for another TF version fails in many ways
            raise LoadError(f"the model needs ops from {module}, which is installed but fails to import: {_one_line(exc)}: {path}") from None
        imported.append(module)

    for op in missing:
        for prefix, module, _ in OP_LIBRARIES:
            if op.startswith(prefix):
                load(module)
    missing = unregistered_ops(graph_def)
    for _, module, _ in OP_LIBRARIES:
        if missing:
            load(module)
            missing = unregistered_ops(graph_def)
    if missing:
        op = missing[0]
        package = next((pip for prefix, _, pip in OP_LIBRARIES if op.startswith(prefix)), None)
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        if package:
            raise LoadError(f"op {op}{more} is not registered: pip install {package} (matching TensorFlow {tf.__version__}): {path}")
        raise LoadError(
            f"op {op}{more} is not registered in TensorFlow {tf.__version__} nor by any installed op library; "
            f"pass --import MODULE naming the module that registers it: {path}"
        )
    return imported


def _read_meta_graph(path: str):
    """Parse saved_model.pb(txt) ourselves first: fast, clear errors before TF's loader runs."""
    pb, pbtxt = os.path.join(path, "saved_model.pb"), os.path.join(path, "saved_model.pbtxt")
    proto = saved_model_pb2.SavedModel()
    if os.path.isfile(pb):
        try:
            with open(pb, "rb") as f:
                proto.ParseFromString(f.read())
        except (pb_message.DecodeError, RuntimeWarning, ValueError) as exc:
            raise LoadError(f"corrupt saved_model.pb ({_one_line(exc)}): {pb}") from None
    elif os.path.isfile(pbtxt):
        try:
            with open(pbtxt, encoding="utf-8") as f:
                text_format.Parse(f.read(), proto)
        except (text_format.ParseError, UnicodeDecodeError) as exc:
            raise LoadError(f"corrupt saved_model.pbtxt ({_one_line(exc)}): {pbtxt}") from None
    elif not os.listdir(path):
        raise LoadError(f"empty directory: {path}")
    else:
        nested = [d for d in sorted(os.listdir(path)) if os.path.isfile(os.path.join(path, d, "saved_model.pb"))]
        hint = f" (found one in subdirectory {nested[0]!r})" if nested else ""
        raise LoadError(f"no saved_model.pb in directory{hint}: {path}")
    if not proto.meta_graphs or not proto.meta_graphs[0].HasField("graph_def"):
        raise LoadError(f"corrupt saved_model.pb (no meta graph): {path}")
    # tf.saved_model.load picks the "serve" meta graph when there are several.
    for meta_graph in proto.meta_graphs:
        if "serve" in meta_graph.meta_info_def.tags:
            return meta_graph
    return proto.meta_graphs[0]


def _choose_signature(names: list[str], wanted: str | None, path: str) -> str:
    if wanted is not None:
        if wanted not in names:
            raise LoadError(f"no signature {wanted!r} (available: {', '.join(names)}): {path}")
        return wanted
    if SERVING_DEFAULT in names:
        return SERVING_DEFAULT
    if len(names) == 1:
        return names[0]
    raise LoadError(f"several signatures and no serving_default; pick one of {', '.join(names)}: {path}")


def _function_io(fn) -> dict:
    """Inputs (keyword arguments) and outputs of a signature concrete function."""
    _, kwargs = fn.structured_input_signature
    outputs = fn.structured_outputs
    if not isinstance(outputs, dict):
        outputs = {f"output_{i}": o for i, o in enumerate(tf.nest.flatten(outputs))}
    return {
        "inputs": [{"name": name, **_spec(spec)} for name, spec in sorted(kwargs.items())],
        "outputs": [{"name": name, **_spec(spec)} for name, spec in sorted(outputs.items())],
    }


def _spec(spec) -> dict:
    """{"shape": [int | None] or None for unknown rank, "dtype": "float32"}."""
    shape = tf.TensorShape(spec.shape)
    return {
        "shape": None if shape.rank is None else shape.as_list(),
        "dtype": tf.as_dtype(spec.dtype).name,
    }


def saved_traces(function) -> list:
    """A restored tf.function's saved concrete functions (TF 2.21: the public list ``concrete_functions``)."""
    concretes = getattr(function, "concrete_functions", None)
    return list(concretes) if concretes is not None else function._list_all_concrete_functions()


def _restored_functions(loaded) -> list[dict]:
    """tf.functions restored as attributes of the root object, with their saved traces."""
    functions = []
    for name, value in sorted(vars(loaded).items()):
        if not isinstance(value, tf.types.experimental.PolymorphicFunction):
            continue
        concretes = saved_traces(value)
        input_signatures, python_args = [], []
        for concrete in concretes:
            leaves = tf.nest.flatten(concrete.structured_input_signature)
            input_signatures.append([_spec(x) for x in leaves if isinstance(x, tf.TypeSpec) and hasattr(x, "dtype")])
            python_args.append([repr(x) for x in leaves if not isinstance(x, tf.TypeSpec)])
        functions.append(
            {
                "name": name,
                "concrete_functions": len(concretes),
                "input_signatures": input_signatures,
                "python_args": python_args,
            }
        )
    return functions


def _checkpoint_variables(path: str) -> dict:
    """Count saved variables from the checkpoint index, skipping optimizer state."""
    try:
        reader = tf.train.load_checkpoint(os.path.join(path, "variables", "variables"))
    except Exception:  # a SavedModel without variables has no checkpoint
        return _variable_summary([])
    shapes, dtypes = reader.get_variable_to_shape_map(), reader.get_variable_to_dtype_map()
    model_keys = [
        k
        for k in shapes
        if k != CHECKPOINT_GRAPH_KEY and ".OPTIMIZER_SLOT" not in k and not k.startswith("optimizer/")
    ]
    return _variable_summary([(shapes[k], dtypes[k]) for k in model_keys])


def _variable_summary(shape_dtype_pairs) -> dict:
    summary = {"count": 0, "parameters": 0, "bytes": 0, "by_dtype": {}}
    for shape, dtype in shape_dtype_pairs:
        dtype = tf.as_dtype(dtype)
        parameters = int(tf.TensorShape(shape).num_elements() or 0)
        nbytes = parameters * dtype.size  # 0 for strings: their size is not known from the index
        per_dtype = summary["by_dtype"].setdefault(dtype.name, {"count": 0, "parameters": 0, "bytes": 0})
        for bucket in (summary, per_dtype):
            bucket["count"] += 1
            bucket["parameters"] += parameters
            bucket["bytes"] += nbytes
    return summary


def _disk_usage(path: str) -> dict:
    """{"size_bytes": total, "files": {top-level entry: bytes}}."""
    files = {entry: _tree_size(os.path.join(path, entry)) for entry in sorted(os.listdir(path))}
    return {"size_bytes": sum(files.values()), "files": files}


def _tree_size(path: str) -> int:
    if os.path.isfile(path):
        return os.path.getsize(path)
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(path) for f in fs)


def _tf_keras_version(path: str) -> str | None:
    try:
        from tf_keras.protobuf import saved_metadata_pb2

        metadata = saved_metadata_pb2.SavedMetadata()
        with open(os.path.join(path, "keras_metadata.pb"), "rb") as f:
            metadata.ParseFromString(f.read())
        for node in metadata.nodes:
            if node.node_path == "root":
                return json.loads(node.metadata).get("keras_version")
    except Exception:  # the version is informative only
        return None
    return None


def op_histogram(concrete_fn) -> dict[str, int]:
    """{op type: count} over the function's graph and every library function it reaches.

    Each reachable library function is counted once. Ops in PLUMBING_OPS are left out.
    """
    graph_def = concrete_fn.graph.as_graph_def()
    library = {f.signature.name: f for f in graph_def.library.function}
    counts: dict[str, int] = {}
    seen: set[str] = set()
    pending = [list(graph_def.node)]
    while pending:
        for node in pending.pop():
            if node.op not in PLUMBING_OPS and node.op not in library:
                counts[node.op] = counts.get(node.op, 0) + 1
            for callee in called_functions(node, library):
                if callee not in seen:
                    seen.add(callee)
                    pending.append(list(library[callee].node_def))
    return dict(sorted(counts.items()))


# --- Keras 3 ------------------------------------------------------------------------------------


def _load_keras(path: str, signature: str | None, refuse_untrusted: bool) -> LoadedModel:
    if not zipfile.is_zipfile(path):
        raise LoadError(f"not a valid .keras file (not a zip archive): {path}")
    import keras

    try:  # Keras' safe_mode refuses Python code saved in the file (a Lambda's bytecode): the same rule as trust.refusal
        model = keras.saving.load_model(path, safe_mode=refuse_untrusted, compile=False)
    except Exception as exc:
        if refuse_untrusted and "safe_mode" in str(exc):
            from tfaudit.engine.trust import TRUST_HINT

            raise LoadError(f"refused to load: it holds Python code that Keras' safe_mode refuses ({_one_line(exc)[:200]}); {TRUST_HINT}: {path}") from None
        raise LoadError(f"cannot load Keras model {path}: {_one_line(exc)}") from None
    try:
        inputs = model.inputs
    except Exception:  # a subclassed model that was never built has no inputs
        inputs = None
    if not inputs:
        raise LoadError(f"Keras model has no defined inputs, cannot build a serving signature: {path}")
    chosen = _choose_signature([SERVING_DEFAULT], signature, path)

    input_list = [
        {"name": _identifier(t.name, i), **_spec(tf.TensorSpec(t.shape, t.dtype))} for i, t in enumerate(inputs)
    ]
    serving = _keras_serving_fn(model, input_list)
    concrete = serving.get_concrete_function()
    output_list = [{"name": name, **_spec(spec)} for name, spec in concrete.structured_outputs.items()]
    weights = [(tuple(w.shape), w.dtype) for w in model.weights]
    size = os.path.getsize(path)
    inventory = {
        "path": path,
        "format": "keras",
        "signature": chosen,
        "signatures": {SERVING_DEFAULT: {"inputs": input_list, "outputs": output_list}},
        "functions": [],
        "variables": _variable_summary(weights),
        "size_bytes": size,
        "files": {"model.keras": size},
        "ops": op_histogram(concrete),
        "versions": {"tensorflow": None, "keras": _keras3_version(path)},
        "keras_loadable": True,
    }
    loaded = LoadedModel(path=path, format="keras", signature=chosen, inventory=inventory, obj=model)
    loaded._serving = serving
    return loaded


def _keras_serving_fn(model, inputs: list[dict]):
    """A tf.function taking the inputs as keyword arguments and returning {output name: tensor}."""
    import keras

    specs = [tf.TensorSpec(i["shape"], i["dtype"], name=i["name"]) for i in inputs]
    output_names = list(getattr(model, "output_names", None) or [])

    def serve(*tensors):
        structured = keras.tree.pack_sequence_as(model.input, list(tensors))
        outputs = keras.tree.flatten(model(structured, training=False))
        names = output_names if len(output_names) == len(outputs) else []
        return {names[i] if names else f"output_{i}": out for i, out in enumerate(outputs)}

    # Give the function named parameters so callers can pass inputs by keyword.
    serve.__signature__ = inspect.Signature(
        [inspect.Parameter(i["name"], inspect.Parameter.POSITIONAL_OR_KEYWORD) for i in inputs]
    )
    return tf.function(serve, input_signature=specs)


def _identifier(name: str, index: int) -> str:
    """Input names become keyword arguments, so they must be Python identifiers."""
    name = re.sub(r"\W", "_", name or "")
    return name if name.isidentifier() else f"input_{index}"


def _keras3_version(path: str) -> str | None:
    try:
        with zipfile.ZipFile(path) as archive:
            return json.loads(archive.read("metadata.json")).get("keras_version")
    except Exception:  # the version is informative only
        return None


# --- errors --------------------------------------------------------------------------------------


def _one_line(exc: BaseException) -> str:
    """The first meaningful line of an exception message (TF errors span many lines)."""
    text = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    lines = [line.strip() for line in str(text).splitlines() if line.strip()]
    line = lines[0] if lines else type(exc).__name__
    return line if len(line) <= MAX_MESSAGE else line[: MAX_MESSAGE - 3] + "..."
