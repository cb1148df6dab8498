"""Learn what inputs a model accepts beyond its signature, and try them once before any check runs.

Runs in the inventory worker (TensorFlow); check workers receive the result and make their inputs
from it without probing again.

- masks: inputs with ``mask`` in their name, or integer/bool inputs whose every use (through
  casts, shape ops and function calls) is the condition of a Select, a factor of a Mul or a
  logical op: 0/1 data with padding.
- id bounds: each integer input is set alone to a huge id; the runtime's own error
  (``indices[0,0] = 1048576 is not in [0, 2)``) names the size of the table it indexes. The
  probe repeats with that size − 1 until the call succeeds, so the smallest table wins. An input
  that takes the huge id is no index, and keeps the default range.
- max sequence length: the longest sequence the model runs, found by bisection between the
  longest of DEFAULT_SEQUENCE_LENGTHS and the shortest that fails (position tables).
- strings: words of the SavedModel's text assets (vocabularies), in sentences when the
  graph tokenises; else the placeholder.

Then one request at the defaults must run; when it does not, the audit stops with one line naming
the node and the constraint, and how to pass ``--inputs``. One at batch 2 must run too, or every
request keeps the batch that runs (``batch_fixed``).
"""
from __future__ import annotations

import copy
import os
import re
from dataclasses import replace
from typing import Callable

import numpy as np
import tensorflow as tf

from tfaudit.engine.input_graph import encoded_inputs
from tfaudit.engine.inputs import (
    DEFAULT_SEQUENCE_LENGTHS,
    InputConstraints,
    InputError,
    InputFactory,
    InputSpec,
    load_samples,
    nul_trap,
    numpy_dtype,
)

HUGE_ID = 1 << 20
MAX_BOUND_STEPS = 8
OUT_OF_RANGE = re.compile(r"=+ (-?\d+) (?:is not in|out of range) \[0, (\d+)\)")  # a gather; embedding_lookup_sparse
# Ops a mask passes through unchanged in meaning, and the ops a mask ends in.
PASS_THROUGH_OPS = frozenset(
    {"Identity", "Cast", "ExpandDims", "Reshape", "Squeeze", "StridedSlice", "Slice", "Tile", "Transpose", "BroadcastTo"}
)
MAX_VOCABULARY = 2000
MAX_ASSET_BYTES = 16 * 1024 * 1024
TOKENIZING_OPS = ("Tokenize", "StringSplit", "RegexSplit", "StringNGrams", "Sentencepiece")
MASK_USE_OPS = frozenset({"Select(condition)", "Mul", "LogicalAnd", "LogicalOr", "LogicalNot"})
CALL_OPS = frozenset({"PartitionedCall", "StatefulPartitionedCall"})
# A tf.py_function's Python body is never saved: such a model fails on any input, and the safety
# check reports why, so it is no reason to stop the audit.
PYTHON_BODY_MISSING = "Could not find callback with key"


def open_inputs(model, samples_path: str | None = None, constraints: dict | None = None) -> InputFactory:
    """The input factory for a loaded model: probed and tried when ``constraints`` is None."""
    from tfaudit.engine.model import input_specs

    specs = [InputSpec.from_dict(spec) for spec in input_specs(model.inventory)]
    serve = model.serving_fn()
    samples = load_samples(samples_path, specs, parsed_feature_types(serve, specs, samples_path)) if samples_path else None
    if constraints is not None:
        return InputFactory(specs, samples=samples, constraints=InputConstraints.from_dict(constraints))
    factory = InputFactory(specs, samples=samples)
    if samples is None:
        strings = InputConstraints()  # first what string inputs must be, so the probes' requests hold valid ones
        if factory.string_inputs:
            strings = InputConstraints(vocabulary=asset_vocabulary(model.path), sentences=tokenizes(serve),
                                       encoded=encoded_inputs(serve, factory.string_inputs))
        constraints = probe_constraints(serve, factory, graph_masks(serve, specs), strings)
        factory = InputFactory(specs, constraints=constraints)
        if constraints.encoded:
            factory = InputFactory(specs, constraints=replace(constraints, encoded=feature_bounds(serve, factory)))
    return try_requests(serve, factory)


def parsed_feature_types(serve, specs: list[InputSpec], samples_path: str) -> dict[str, str]:
    """{feature key: dtype} of the features the graph parses from its string inputs: what types a classify body's values
    (read only for a .json body, so other samples cost no walk of the graph)."""
    strings = [s.name for s in specs if s.dtype == "string"]
    if not strings or not samples_path.lower().endswith(".json"):
        return {}
    encoded = encoded_inputs(serve, strings)
    return {f["key"]: f["dtype"] for spec in encoded.values() for f in proto_features(spec)}


def try_requests(serve, factory: InputFactory) -> InputFactory:
    """The factory, once the model runs a request from it at the defaults and at batch 2.

    Rejected at the defaults: InputError, one line. Rejected only at batch 2 (inputs whose rows
    depend on each other, like values and row lengths): requests keep the one batch that runs.
    """
    error = call_error(serve, factory.make())
    if error is not None and PYTHON_BODY_MISSING in error:
        return factory
    if error is not None:
        source = "synthetic inputs" if factory.synthetic else "--inputs samples"
        names = ", ".join(f"{s.name} {s.dtype}{list(s.shape) if s.shape is not None else '[?]'}" for s in factory.specs)
        raise InputError(f"the model rejects the {source}: {error}{nul_trap(factory.samples)}; pass real inputs with --inputs "
                         f"(.npz, one array per input: {names}; or .tfrecord, a TF Serving .json body, a folder of images)")
    if factory.batch_dynamic and call_error(serve, factory.make(batch=2)) is not None:
        constraints = replace(factory.constraints, batch_fixed=True)
        return InputFactory(factory.specs, samples=factory.samples, seed=factory.seed, constraints=constraints)
    return factory


def call_error(serve: Callable, feed: dict[str, np.ndarray]) -> str | None:
    """None when the model runs on ``feed``, else the runtime's error in one line."""
    try:
        outputs = serve(**{name: tf.constant(value) for name, value in feed.items()})
        for tensor in tf.nest.flatten(outputs):
            getattr(tensor, "numpy", lambda: None)()
    except (tf.errors.OpError, ValueError, TypeError) as exc:
        return runtime_error_line(exc)
    return None


def runtime_error_line(exc: BaseException) -> str:
    """TF's own message without its stack-trace scaffolding, plus the node it names."""
    text = getattr(exc, "message", None) or str(exc)
    lines = [line.strip() for line in str(text).splitlines() if line.strip()]
    node = next((line.split("Detected at node ", 1)[1].split(" defined at")[0] for line in lines if line.startswith("Detected at node ")), "")
    skip = ("Graph execution error", "Detected at node", "<stack traces", "[[", "File ", "Traceback")
    message = next((line for line in lines if not line.startswith(skip)), lines[0] if lines else type(exc).__name__)
    message = re.sub(r"\s*\[\[.*$|\s*\[Op:.*$", "", message)
    return f"{message} (at node {node})" if node else message


# --- probing --------------------------------------------------------------------------------------


def probe_constraints(serve, factory: InputFactory, masks: set[str], strings: InputConstraints | None = None) -> InputConstraints:
    """``strings`` (vocabulary, sentences, encodings) with the integer inputs' bounds, masks and the longest sequence."""
    masks |= {s.name for s in factory.specs if "mask" in s.name.lower() and s.dtype != "string"}
    integer = [s for s in factory.specs if s.name not in masks and s.dtype != "string" and np.issubdtype(_dtype(s), np.integer)]
    strings = strings or InputConstraints()
    base = InputFactory(factory.specs, constraints=replace(strings, masks=tuple(sorted(masks)))).make(batch=2)
    for spec in integer:
        base[spec.name] = np.zeros_like(base[spec.name])
    bounds: dict[str, int] = {}
    if call_error(serve, base) is None:
        for spec in integer:
            bound = id_bound(serve, base, spec)
            if bound is not None:
                bounds[spec.name] = bound
    constraints = replace(strings, id_bounds=bounds, masks=tuple(sorted(masks)))
    if factory.has_sequence_dims:
        constraints = replace(constraints, max_sequence_length=longest_sequence(serve, factory.specs, constraints))
    return constraints


def asset_vocabulary(model_path: str) -> tuple[str, ...]:
    """Words from the SavedModel's text assets (the vocabularies of its lookup tables and tokenizers)."""
    words: list[str] = []
    assets = os.path.join(model_path, "assets")
    files = sorted(os.listdir(assets)) if os.path.isdir(assets) else []
    for name in files:
        path = os.path.join(assets, name)
        if not os.path.isfile(path) or os.path.getsize(path) > MAX_ASSET_BYTES:
            continue
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                word = line.split("\t")[0].strip()
                if word and not (word.startswith(("[", "<")) and word.endswith(("]", ">"))):  # [PAD], <unk>
                    words.append(word)
                if len(words) >= MAX_VOCABULARY:
                    return tuple(dict.fromkeys(words))
    return tuple(dict.fromkeys(words))


def tokenizes(serve) -> bool:
    concrete = serve if hasattr(serve, "graph") else serve.get_concrete_function()
    graph_def = concrete.graph.as_graph_def()
    ops = {node.op for node in graph_def.node} | {n.op for f in graph_def.library.function for n in f.node_def}
    return any(marker in op for op in ops for marker in TOKENIZING_OPS)


def _dtype(spec: InputSpec) -> np.dtype:
    """The input's NumPy dtype; object for those NumPy has none of (strings, resources)."""
    try:
        return numpy_dtype(spec.dtype)
    except InputError:
        return np.dtype(object)


def id_bound(serve, base: dict[str, np.ndarray], spec: InputSpec) -> int | None:
    """The exclusive bound of the smallest table ``spec`` indexes, or None when it indexes none."""

    def feed_of(value: int) -> dict[str, np.ndarray]:
        return {**base, spec.name: np.full_like(base[spec.name], value)}

    return smallest_bound(serve, feed_of, int(min(HUGE_ID, np.iinfo(base[spec.name].dtype).max)))


def smallest_bound(serve, feed_of: Callable[[int], dict], value: int) -> int | None:
    """Feeds an id of ``value``, then of each table size the runtime's error names less one, until the call runs:
    that size (None when the first call runs, or the error names no table)."""
    for step in range(MAX_BOUND_STEPS):
        with tf.device("/CPU:0"):  # a GPU gather returns zeros for an id out of range instead of raising
            error = call_error(serve, feed_of(value))
        if error is None:
            return None if step == 0 else value + 1
        match = OUT_OF_RANGE.search(error)
        if match is None or int(match.group(2)) <= 0 or int(match.group(2)) - 1 >= value:
            return None
        value = int(match.group(2)) - 1
    return None


def longest_sequence(serve, specs: list[InputSpec], constraints: InputConstraints) -> int | None:
    """None when the longest probe length runs; else the longest length that runs."""

    factory = InputFactory(specs, constraints=constraints)

    def runs(length: int) -> bool:
        return call_error(serve, factory.make(batch=1, seq=length)) is None

    lengths = sorted(DEFAULT_SEQUENCE_LENGTHS)
    if runs(lengths[-1]):
        return None
    good = next((n for n in reversed(lengths[:-1]) if runs(n)), None)
    if good is None:
        return None  # nothing runs: try_requests reports it
    bad = lengths[lengths.index(good) + 1]
    while bad - good > 1:
        middle = (good + bad) // 2
        good, bad = (middle, bad) if runs(middle) else (good, middle)
    return good


def feature_bounds(serve, factory: InputFactory) -> dict[str, dict]:
    """``encoded`` with a ``bound`` on each int feature of a parsed proto that indexes a table, probed through the
    proto as ``id_bound`` probes an integer input (the other int features at 0)."""
    encoded = copy.deepcopy(factory.constraints.encoded)
    base = factory.make(batch=2)
    for name, spec in encoded.items():
        features = proto_features(spec)
        ints = [f for f in features if f["dtype"] == "int64"]
        if not ints:
            continue
        zeros = {f["key"]: 0 for f in ints}

        def feed_of(value: int, key: str) -> dict[str, np.ndarray]:
            forced = {**zeros, key: value}
            return {**base, name: factory.payloads(spec, base[name].shape, np.random.default_rng(0), forced=forced)}

        if call_error(serve, feed_of(0, ints[0]["key"])) is not None:
            continue
        for feature in ints:
            bound = smallest_bound(serve, lambda value: feed_of(value, feature["key"]), HUGE_ID)
            if bound is not None:
                feature["bound"] = bound
    return encoded


def proto_features(encoded: dict) -> list[dict]:
    """The feature dicts of a parsed proto (inside base64 too); [] for images."""
    if encoded["kind"] == "base64":
        return proto_features(encoded["inner"])
    return encoded.get("features", []) + encoded.get("context", []) + encoded.get("feature_lists", [])


# --- masks from the graph ---------------------------------------------------------------------------


def graph_masks(serve, specs: list[InputSpec]) -> set[str]:
    """Inputs whose every use, through pass-through ops and function calls, is a mask use."""
    concrete = serve if hasattr(serve, "graph") else serve.get_concrete_function()
    graph_def = concrete.graph.as_graph_def()
    scopes = {"": list(graph_def.node)}
    scopes.update({f.signature.name: list(f.node_def) for f in graph_def.library.function})
    arguments = {f.signature.name: [a.name for a in f.signature.input_arg] for f in graph_def.library.function}
    placeholders = {node.name for node in graph_def.node if node.op == "Placeholder"}
    masks = set()
    for spec in specs:
        if spec.name in placeholders and (spec.dtype == "bool" or np.issubdtype(_dtype(spec), np.integer)):
            uses = _final_uses("", spec.name, scopes, arguments, set())
            if uses and uses <= MASK_USE_OPS:
                masks.add(spec.name)
    return masks


def _final_uses(scope: str, source: str, scopes, arguments, seen: set) -> set[str]:
    if (scope, source) in seen:
        return set()
    seen.add((scope, source))
    uses: set[str] = set()
    for node in scopes[scope]:
        data_inputs = [i for i in node.input if not i.startswith("^")]
        positions = [k for k, i in enumerate(data_inputs) if i.split(":")[0] == source]
        if not positions:
            continue
        callee = node.attr["f"].func.name if node.op in CALL_OPS else node.op if node.op in arguments else None
        if callee in arguments:
            for k in positions:
                if k < len(arguments[callee]):
                    uses |= _final_uses(callee, arguments[callee][k], scopes, arguments, seen)
        elif node.op in PASS_THROUGH_OPS:
            uses |= _final_uses(scope, node.name, scopes, arguments, seen)
        elif node.op in ("Select", "SelectV2"):
            uses |= {"Select(condition)" if k == 0 else "Select(branch)" for k in positions}
        else:
            uses.add(node.op)
    return uses
