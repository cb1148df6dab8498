"""What the serving graph does with each string input: parse it as tf.Example or tf.SequenceExample protos,
decode it as an image, or decode base64 first. Read from the graph (TensorFlow side, in the inventory worker).

Each finding is plain data for ``InputConstraints.encoded`` (tfaudit.engine.payloads makes the bytes):

- ``{"kind": "example", "features": [FEATURE, …]}``; ``{"kind": "sequence_example", "context": [FEATURE, …],
  "feature_lists": [FEATURE, …]}``, where FEATURE is ``{"key", "kind": "dense" | "sparse" | "ragged", "dtype":
  "float32" | "int64" | "string", "shape": [int, …]}`` (dense: -1 for a length that varies). The keys are constant
  inputs of the parse op (or its attributes), followed to their ``Const`` inside whatever function holds it.
- ``{"kind": "image", "format": "jpeg" | "png" | "gif" | "bmp" | "webp" | "any", "channels", "height", "width"}``:
  the decode op's format and channels; the size the graph resizes to, else IMAGE_SIZE.
- ``{"kind": "base64", "inner": ENCODED}``: web-safe base64 of what the decoded bytes feed.
"""
from __future__ import annotations

from typing import Any, Iterator

import tensorflow as tf

IMAGE_SIZE = 224
PASS_THROUGH_OPS = frozenset({
    "Identity", "Reshape", "Squeeze", "ExpandDims", "StridedSlice", "Slice", "GatherV2", "Gather", "Tile", "BroadcastTo",
    "TensorListFromTensor", "TensorListGetItem", "TensorListStack", "TensorListElementShape", "TensorArrayScatterV3",
    "TensorArrayReadV3", "TensorArrayGatherV3", "Enter", "Exit", "Merge", "Switch", "NextIteration", "Unpack", "Pack",
})
CALL_OPS = frozenset({"PartitionedCall", "StatefulPartitionedCall"})
LOOP_OPS = frozenset({"While", "StatelessWhile"})
BRANCH_OPS = frozenset({"If", "StatelessIf"})
IMAGE_FORMATS = {"DecodeJpeg": "jpeg", "DecodeAndCropJpeg": "jpeg", "DecodePng": "png", "DecodeGif": "gif", "DecodeBmp": "bmp",
                 "DecodeWebP": "webp", "DecodeImage": "any"}
PARSE_OPS = frozenset({"ParseExample", "ParseExampleV2", "ParseSingleExample", "ParseSequenceExample", "ParseSequenceExampleV2"})
RESIZE_OPS = frozenset({"ResizeBilinear", "ResizeBicubic", "ResizeNearestNeighbor", "ResizeArea", "ScaleAndTranslate"})


class Graph:
    """A concrete function's graph and its library, as scopes of nodes ("" is the top level)."""

    def __init__(self, graph_def):
        self.scopes = {"": list(graph_def.node)}
        self.scopes.update({f.signature.name: list(f.node_def) for f in graph_def.library.function})
        self.arguments = {f.signature.name: [a.name for a in f.signature.input_arg] for f in graph_def.library.function}
        self.by_name = {scope: {node.name: node for node in nodes} for scope, nodes in self.scopes.items()}

    def consumers(self, scope: str, source: str, seen: set | None = None) -> Iterator[tuple[str, Any]]:
        """(scope, node) of each op that consumes ``source``'s value for what it is, through pass-through ops,
        function calls, loops and branches."""
        seen = set() if seen is None else seen
        if (scope, source) in seen:
            return
        seen.add((scope, source))
        for node in self.scopes[scope]:
            data = [i for i in node.input if not i.startswith("^")]
            positions = [k for k, i in enumerate(data) if i.split(":")[0] == source]
            if not positions:
                continue
            for callee, argument in self.callee_arguments(node, positions):
                yield from self.consumers(callee, argument, seen)
            if node.op in PASS_THROUGH_OPS:
                yield from self.consumers(scope, node.name, seen)
            elif not self.calls(node):
                yield scope, node

    def calls(self, node) -> bool:
        return node.op in CALL_OPS or node.op in LOOP_OPS or node.op in BRANCH_OPS or node.op in self.arguments

    def callee_arguments(self, node, positions: list[int]) -> Iterator[tuple[str, str]]:
        """(function, argument) that the node's inputs at ``positions`` become."""
        if node.op in CALL_OPS:
            bodies, offset = [node.attr["f"].func.name], 0
        elif node.op in self.arguments:
            bodies, offset = [node.op], 0
        elif node.op in LOOP_OPS:
            bodies, offset = [node.attr["body"].func.name, node.attr["cond"].func.name], 0
        elif node.op in BRANCH_OPS:
            bodies, offset = [node.attr["then_branch"].func.name, node.attr["else_branch"].func.name], 1
        else:
            return
        for body in bodies:
            names = self.arguments.get(body, [])
            for k in positions:
                if 0 <= k - offset < len(names):
                    yield body, names[k - offset]

    def constant(self, scope: str, tensor: str):
        """The value of ``tensor`` when it is a Const (through Identity), else None."""
        node = self.by_name[scope].get(tensor.split(":")[0])
        while node is not None and node.op == "Identity" and node.input:
            node = self.by_name[scope].get(node.input[0].split(":")[0])
        if node is None or node.op != "Const":
            return None
        return tf.make_ndarray(node.attr["value"].tensor)

    def resize_size(self) -> tuple[int, int] | None:
        """The (height, width) the first resize op with a constant size resizes to."""
        for scope, nodes in self.scopes.items():
            for node in nodes:
                if node.op in RESIZE_OPS and len(node.input) > 1:
                    size = self.constant(scope, node.input[1])
                    if size is not None and size.shape == (2,) and all(int(v) > 0 for v in size):
                        return int(size[0]), int(size[1])
        return None


def encoded_inputs(serve, string_inputs: list[str]) -> dict[str, dict]:
    """{input: what its bytes must be} for each string input the graph parses or decodes."""
    concrete = serve if hasattr(serve, "graph") else serve.get_concrete_function()
    graph = Graph(concrete.graph.as_graph_def())
    placeholders = {node.name for node in graph.scopes[""] if node.op == "Placeholder"}
    found = {}
    for name in string_inputs:
        if name in placeholders:
            encoded = encoding_of(graph, "", name)
            if encoded is not None:
                found[name] = encoded
    return found


def encoding_of(graph: Graph, scope: str, source: str) -> dict | None:
    for where, node in graph.consumers(scope, source):
        if node.op in PARSE_OPS:
            return parse_spec(graph, where, node)
        if node.op in IMAGE_FORMATS:
            channels = int(node.attr["channels"].i) if "channels" in node.attr else 0
            height, width = graph.resize_size() or (IMAGE_SIZE, IMAGE_SIZE)
            return {"kind": "image", "format": IMAGE_FORMATS[node.op], "channels": channels or 3, "height": height, "width": width}
        if node.op == "DecodeBase64":
            inner = encoding_of(graph, where, node.name)
            return {"kind": "base64", "inner": inner} if inner else None
    return None


def _types(node, attr: str) -> list[str]:
    return [tf.as_dtype(t).name for t in node.attr[attr].list.type]


def _shapes(node, attr: str) -> list[list[int]]:
    return [[int(d.size) for d in shape.dim] for shape in node.attr[attr].list.shape]


def _keys(graph: Graph, scope: str, node, position: int) -> list[str]:
    value = graph.constant(scope, node.input[position])
    return [] if value is None else [k.decode() if isinstance(k, bytes) else str(k) for k in value.ravel()]


def _attr_keys(node, attr: str) -> list[str]:
    return [k.decode() for k in node.attr[attr].list.s]


def _features(dense: tuple[list[str], list[str], list[list[int]]], sparse: tuple[list[str], list[str]],
              ragged: tuple[list[str], list[str]] = ([], [])) -> list[dict]:
    keys, types, shapes = dense
    features = [{"key": k, "kind": "dense", "dtype": t, "shape": s} for k, t, s in zip(keys, types, shapes)]
    features += [{"key": k, "kind": "sparse", "dtype": t, "shape": []} for k, t in zip(*sparse)]
    features += [{"key": k, "kind": "ragged", "dtype": t, "shape": []} for k, t in zip(*ragged)]
    return features


def parse_spec(graph: Graph, scope: str, node) -> dict | None:
    """The features a parse op reads, with their kinds, dtypes and shapes; None when its keys are not constants."""
    op = node.op
    if op == "ParseExampleV2":
        sparse_keys, dense_keys, ragged_keys = (_keys(graph, scope, node, i) for i in (2, 3, 4))
        features = _features((dense_keys, _types(node, "Tdense"), _shapes(node, "dense_shapes")),
                             (sparse_keys, _types(node, "sparse_types")), (ragged_keys, _types(node, "ragged_value_types")))
    elif op == "ParseExample":
        n_sparse, n_dense = int(node.attr["Nsparse"].i), int(node.attr["Ndense"].i)
        sparse_keys = [k for i in range(n_sparse) for k in _keys(graph, scope, node, 2 + i)]
        dense_keys = [k for i in range(n_dense) for k in _keys(graph, scope, node, 2 + n_sparse + i)]
        features = _features((dense_keys, _types(node, "Tdense"), _shapes(node, "dense_shapes")), (sparse_keys, _types(node, "sparse_types")))
    elif op == "ParseSingleExample":
        features = _features((_attr_keys(node, "dense_keys"), _types(node, "Tdense"), _shapes(node, "dense_shapes")),
                             (_attr_keys(node, "sparse_keys"), _types(node, "sparse_types")))
    elif op == "ParseSequenceExampleV2":
        keys = {name: _keys(graph, scope, node, i) for i, name in enumerate(
            ("context_sparse", "context_dense", "context_ragged", "feature_list_sparse", "feature_list_dense", "feature_list_ragged"), start=2)}
        return {"kind": "sequence_example",
                "context": _features((keys["context_dense"], _types(node, "Tcontext_dense"), _shapes(node, "context_dense_shapes")),
                                     (keys["context_sparse"], _types(node, "context_sparse_types")),
                                     (keys["context_ragged"], _types(node, "context_ragged_value_types"))),
                "feature_lists": _features((keys["feature_list_dense"], _types(node, "feature_list_dense_types"), _shapes(node, "feature_list_dense_shapes")),
                                           (keys["feature_list_sparse"], _types(node, "feature_list_sparse_types")),
                                           (keys["feature_list_ragged"], _types(node, "feature_list_ragged_value_types")))}
    else:  # ParseSequenceExample (v1): keys are attributes
        return {"kind": "sequence_example",
                "context": _features((_attr_keys(node, "context_dense_keys"), _types(node, "Tcontext_dense"), _shapes(node, "context_dense_shapes")),
                                     (_attr_keys(node, "context_sparse_keys"), _types(node, "context_sparse_types"))),
                "feature_lists": _features((_attr_keys(node, "feature_list_dense_keys"), _types(node, "feature_list_dense_types"),
                                            _shapes(node, "feature_list_dense_shapes")),
                                           (_attr_keys(node, "feature_list_sparse_keys"), _types(node, "feature_list_sparse_types")))}
    return {"kind": "example", "features": features} if features else None
