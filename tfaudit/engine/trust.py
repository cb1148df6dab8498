"""Safe by default: what a model could run, read from its files before anything of it runs.

``saved_model.pb`` is read as a protobuf: the graph's nodes and every library function that loading,
serving or a restored function could run (the checkpoint's save function, which nothing here calls,
is left out). Ops that write files, call Python or reach the network, and ops that neither
TensorFlow nor a library in ``model.OP_LIBRARIES`` registers, make the audit refuse the model unless
the user trusts it (``--trust-model``). A tf_keras SavedModel's ``keras_metadata.pb`` is read too:
a ``Lambda`` layer saved as Python bytecode runs that bytecode when tf_keras loads the model.
Reading the model's own files (variables, vocabularies) is never a reason to refuse.

The op sets are written once, here: the safety check reports them (``tfaudit.api.UNSAFE_OPS``).
"""
from __future__ import annotations

import json
import os
from typing import Any, Iterable

PYTHON_OPS = frozenset({"PyFunc", "PyFuncStateless", "EagerPyFunc"})
FILE_WRITE_OPS = frozenset({
    "WriteFile", "Save", "SaveV2", "SaveSlices", "MergeV2Checkpoints", "DatasetToTFRecord", "SaveDataset",
    "SaveDatasetV2", "SnapshotDataset", "SnapshotDatasetV2", "CreateSummaryFileWriter", "WriteSummary",
    "WriteScalarSummary", "WriteHistogramSummary", "WriteImageSummary", "WriteAudioSummary",
    "WriteRawProtoSummary", "WriteGraphSummary", "DebugIdentityV2", "DebugIdentityV3",
})
NETWORK_OPS = frozenset({
    "RpcClient", "RpcCall", "RpcServer", "RpcServerStart", "RpcServerRegister", "RemoteCall", "GcsConfigureCredentials",
    "GcsConfigureBlockCache",
})
FILE_READ_OPS = frozenset({
    "ReadFile", "MatchingFiles", "MatchingFilesDataset", "ImmutableConst", "Restore", "RestoreV2", "RestoreSlice",
    "TFRecordDataset", "TFRecordDatasetV2", "TextLineDataset", "TextLineDatasetV2", "FixedLengthRecordDataset",
    "FixedLengthRecordDatasetV2", "WholeFileReader", "WholeFileReaderV2", "ReaderReadV2", "LoadAndRemapMatrix",
    "LoadDataset",
})
ASSET_READ_OPS = frozenset({"InitializeTableFromTextFile", "InitializeTableFromTextFileV2"})
REFUSED = {"call Python": PYTHON_OPS, "write files": FILE_WRITE_OPS, "reach the network": NETWORK_OPS}
TRUST_HINT = "audit it anyway with --trust-model (or trust_model = true in the config), best in a sandbox"
INIT_COLLECTIONS = ("saved_model_main_op", "legacy_init_op", "table_initializer", "init_op")

_core_ops: frozenset[str] | None = None


def registered_ops() -> frozenset[str]:
    """Every op registered in this process now (TensorFlow's C API)."""
    from tensorflow.core.framework import op_def_pb2
    from tensorflow.python.client import pywrap_tf_session as c_api

    ops = op_def_pb2.OpList()
    ops.ParseFromString(c_api.TF_GetBuffer(c_api.TF_GetAllOpList()))
    return frozenset(op.name for op in ops.op)


def remember_core_ops() -> None:
    """What TensorFlow itself registers: called right after it is imported, before any library the user names."""
    global _core_ops
    if _core_ops is None:
        _core_ops = registered_ops()


def core_ops() -> frozenset[str]:
    remember_core_ops()
    assert _core_ops is not None
    return _core_ops


def called_functions(node, library: dict) -> list[str]:
    """Library functions a node calls: by op name, or via func attrs (calls, If/While bodies)."""
    names = [node.op] if node.op in library else []
    for attr in node.attr.values():
        if attr.HasField("func"):
            names.append(attr.func.name)
        names.extend(f.name for f in attr.list.func)
    return [n for n in names if n in library]


def _node_name(tensor: str) -> str:
    return tensor.lstrip("^").split(":")[0]


class Program:
    """The graph and functions of one meta graph, and what each entry point reaches."""

    def __init__(self, meta_graph):
        self.meta_graph = meta_graph
        graph = meta_graph.graph_def
        self.nodes = {node.name: node for node in graph.node}
        self.library = {function.signature.name: function for function in graph.library.function}

    def upstream(self, tensors: Iterable[str]) -> set[str]:
        """Graph nodes the tensors (or ops) depend on, themselves included."""
        seen: set[str] = set()
        pending = [_node_name(t) for t in tensors]
        while pending:
            name = pending.pop()
            if name in seen or name not in self.nodes:
                continue
            seen.add(name)
            pending.extend(_node_name(i) for i in self.nodes[name].input)
        return seen

    def functions_from(self, nodes: Iterable[Any]) -> set[str]:
        """Library functions the nodes call, nested calls included."""
        return self.reachable(name for node in nodes for name in called_functions(node, self.library))

    def reachable(self, functions: Iterable[str]) -> set[str]:
        """The library functions named, and every one they call."""
        seen: set[str] = set()
        pending = [name for name in functions if name in self.library]
        while pending:
            name = pending.pop()
            if name in seen:
                continue
            seen.add(name)
            pending.extend(callee for node in self.library[name].node_def for callee in called_functions(node, self.library))
        return seen

    def entry_points(self) -> dict[str, tuple[set[str], set[str]]]:
        """{what runs: (graph nodes, library functions)} for loading, each signature and each restored function;
        functions nothing names (but the save function) are kept under "other functions"."""
        meta = self.meta_graph
        entries: dict[str, tuple[set[str], set[str]]] = {}
        load = [meta.saver_def.restore_op_name] if meta.saver_def.restore_op_name else []
        for key in INIT_COLLECTIONS:
            if key in meta.collection_def:
                load += list(meta.collection_def[key].node_list.value)
        for name, signature in meta.signature_def.items():
            tensors = [t.name for t in signature.outputs.values()]
            if name.startswith("__"):  # __saved_model_init_op: runs at load
                load += tensors
            else:
                nodes = self.upstream(tensors)
                entries[f"signature {name}"] = (nodes, self.functions_from(self.nodes[n] for n in nodes))
        nodes = self.upstream(load)
        entries["loading"] = (nodes, self.functions_from(self.nodes[n] for n in nodes))
        for path, concretes in self.restored_functions().items():
            entries[path] = (set(), self.reachable(concretes))
        saving = self.upstream([meta.saver_def.save_tensor_name]) if meta.saver_def.save_tensor_name else set()
        reached = set().union(*(functions for _, functions in entries.values()))
        only_saving = self.functions_from(self.nodes[n] for n in saving) - reached
        others = set(self.library) - reached - only_saving
        if others:
            entries["other functions"] = (set(), self.reachable(others))
        return entries

    def restored_functions(self) -> dict[str, list[str]]:
        """{attribute path in the object graph: its concrete functions}, resources' initialisers included."""
        graph = self.meta_graph.object_graph_def
        if not graph.nodes:  # a TF1 SavedModel: its graph's nodes are all there is
            return {}
        paths: dict[int, str] = {0: ""}
        order = [0]
        for node_id in order:
            for child in graph.nodes[node_id].children:
                if child.node_id not in paths:
                    paths[child.node_id] = f"{paths[node_id]}.{child.local_name}".lstrip(".")
                    order.append(child.node_id)
        found = {path: list(graph.nodes[i].function.concrete_functions) for i, path in paths.items()
                 if graph.nodes[i].WhichOneof("kind") == "function"}
        named = {name for concretes in found.values() for name in concretes}
        for node_id, path in paths.items():  # a function's traces are its children: named once, by the function
            node = graph.nodes[node_id]
            if node.WhichOneof("kind") == "bare_concrete_function" and not path.startswith("signatures."):
                if node.bare_concrete_function.concrete_function_name not in named:
                    found[path] = [node.bare_concrete_function.concrete_function_name]
        return found

    def ops(self, nodes: set[str], functions: set[str]) -> set[str]:
        ops = {self.nodes[n].op for n in nodes}
        ops |= {node.op for name in functions for node in self.library[name].node_def}
        return ops - set(self.library)


def refusal(path: str, meta_graph, known_library_ops: frozenset[str] = frozenset(), user_modules: Iterable[str] = ()) -> str | None:
    """Why the SavedModel at ``path`` is refused without --trust-model, in one line; None when nothing it could run is refused.

    ``known_library_ops``: ops registered by the libraries in ``model.OP_LIBRARIES`` (allowed); any other op that
    TensorFlow does not register comes from an unknown library (``user_modules``, the --import modules, named)."""
    program = Program(meta_graph)
    core = core_ops()
    found: dict[str, dict[str, list[str]]] = {}  # why -> op -> where
    for where, (nodes, functions) in program.entry_points().items():
        for op in sorted(program.ops(nodes, functions)):
            why = next((verb for verb, ops in REFUSED.items() if op in ops), None)
            if why is None and op not in core and op not in known_library_ops:
                why = "come from a library tfaudit does not know" + (f" (--import {', '.join(user_modules)})" if user_modules else "")
            if why:
                found.setdefault(why, {}).setdefault(op, []).append(where)
    parts = [f"ops that {why}: " + ", ".join(f"{op} ({', '.join(where)})" for op, where in ops.items()) for why, ops in found.items()]
    lambdas = keras_bytecode(path)
    if lambdas:
        parts.append(f"tf_keras Lambda layers saved as Python bytecode, which loading runs: {', '.join(lambdas)}")
    if not parts:
        return None
    return f"refused to load: it holds {'; '.join(parts)}; {TRUST_HINT}: {path}"


def keras_bytecode(path: str) -> list[str]:
    """The tf_keras layers whose Python function is saved as bytecode (a Lambda of a lambda), by name; [] otherwise."""
    metadata = os.path.join(path, "keras_metadata.pb")
    if not os.path.isfile(metadata):
        return []
    try:
        from tf_keras.protobuf import saved_metadata_pb2
    except ImportError:  # tf_keras absent: such a model cannot be loaded as Keras here at all
        return []
    saved = saved_metadata_pb2.SavedMetadata()
    with open(metadata, "rb") as f:
        saved.ParseFromString(f.read())
    layers = []
    for node in saved.nodes:
        try:
            config = json.loads(node.metadata)
        except ValueError:
            continue
        for layer in _layer_configs(config):
            inner = layer.get("config") or {}
            if isinstance(inner, dict) and "lambda" in (inner.get("function_type"), inner.get("output_shape_type")):
                layers.append(inner.get("name") or layer.get("class_name", "Lambda"))
    return sorted(set(layers))


def _layer_configs(value: Any) -> Iterable[dict]:
    """Every dict with a class_name and a config, however deep (Sequential and functional models nest their layers)."""
    if isinstance(value, dict):
        if "class_name" in value and isinstance(value.get("config"), dict):
            yield value
        for inner in value.values():
            yield from _layer_configs(inner)
    elif isinstance(value, list):
        for inner in value:
            yield from _layer_configs(inner)
