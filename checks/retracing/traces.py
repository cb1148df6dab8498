"""The saved functions as data: their traces, what varies between them, and the code that relaxes them (pure: no TensorFlow).

``gather`` builds these from the restored functions (Python values as TensorFlow gave them) and
stores them as JSON (``to_json``); ``judge`` and ``fix`` read them back (``from_json``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .relaxed_export import tensor_spec_code

KERAS_FRAMEWORK_ARGS = frozenset({"training", "mask"})
ROWS_PER_EXAMPLE_REQUEST = 8  # rows of the example request that fixed-batch batching is measured on
OPTION_VALUES = (1, 2, 3, 4, 5, 6, 7, 8)  # the per-request option's values in the serving probe
JSON_VALUES = (bool, int, float, str, type(None))


@dataclass(frozen=True)
class TensorArg:
    name: str
    shape: tuple | None  # None: unknown rank
    dtype: str

    def to_json(self) -> list:
        return [self.name, None if self.shape is None else list(self.shape), self.dtype]

    @classmethod
    def from_json(cls, data: list) -> "TensorArg":
        name, shape, dtype = data
        return cls(name, None if shape is None else tuple(shape), dtype)


@dataclass
class SavedTrace:
    """One concrete function of a restored function."""

    tensors: list[TensorArg]
    python_args: dict[str, Any]  # JSON values; anything else stored as {"repr": ...}
    graph_bytes: int
    graph_nodes: int

    def to_json(self) -> dict:
        return {
            "tensors": [t.to_json() for t in self.tensors],
            "python_args": {k: v if type(v) in JSON_VALUES else {"repr": repr(v)} for k, v in self.python_args.items()},
            "graph_bytes": self.graph_bytes,
            "graph_nodes": self.graph_nodes,
        }

    @classmethod
    def from_json(cls, data: dict) -> "SavedTrace":
        return cls([TensorArg.from_json(t) for t in data["tensors"]], dict(data["python_args"]), data["graph_bytes"], data["graph_nodes"])


@dataclass
class SavedFunction:
    """A restored function that holds several concrete functions."""

    name: str
    parameters: list[str]  # in call order
    traces: list[SavedTrace]

    @classmethod
    def from_json(cls, data: dict) -> "SavedFunction":
        return cls(data["name"], list(data["parameters"]), [SavedTrace.from_json(t) for t in data["traces"]])


def shown(value: Any) -> str:
    """How a saved Python value reads (its repr, also for values stored as ``{"repr": ...}``)."""
    return value["repr"] if isinstance(value, dict) else repr(value)


def varying_dims(traces: list[SavedTrace]) -> list[dict]:
    """Per tensor argument, the axes whose size differs between traces (rank changes: axis "rank")."""
    varied = []
    for position, first in enumerate(traces[0].tensors):
        shapes = [t.tensors[position].shape for t in traces]
        dtypes = sorted({t.tensors[position].dtype for t in traces})
        if any(s is None for s in shapes) or len({len(s) for s in shapes}) > 1:
            varied.append({"input": first.name, "axis": "rank", "values": sorted({str(s) for s in shapes})})
            continue
        for axis in range(len(shapes[0])):
            sizes = {s[axis] for s in shapes}
            if len(sizes) > 1:
                values = sorted(sizes, key=lambda v: (v is None, v or 0))
                varied.append({"input": first.name, "axis": axis, "values": values})
        if len(dtypes) > 1:
            varied.append({"input": first.name, "axis": "dtype", "values": dtypes})
    return varied


def relaxed_specs(traces: list[SavedTrace], varied: list[dict]) -> list[TensorArg]:
    """The first trace's tensor specs with None on every varied axis."""
    relaxed = []
    for arg in traces[0].tensors:
        axes = {v["axis"] for v in varied if v["input"] == arg.name}
        if "rank" in axes or arg.shape is None:
            relaxed.append(TensorArg(arg.name, None, arg.dtype))
        else:
            relaxed.append(TensorArg(arg.name, tuple(None if i in axes else d for i, d in enumerate(arg.shape)), arg.dtype))
    return relaxed


def same_signature_groups(function: SavedFunction) -> list[list[SavedTrace]]:
    """Traces grouped by their Python arguments and tensor count: within a group only shapes differ."""
    groups: dict[tuple, list[SavedTrace]] = {}
    for trace in function.traces:
        key = (repr(sorted(trace.python_args.items())), tuple(t.name for t in trace.tensors))
        groups.setdefault(key, []).append(trace)
    return [g for g in groups.values() if len(g) > 1]


def baked_python_args(function: SavedFunction) -> dict[str, list]:
    """Python arguments (not Keras' training/mask) whose saved value differs between traces."""
    values: dict[str, list] = {}
    for trace in function.traces:
        for name, value in trace.python_args.items():
            if name not in KERAS_FRAMEWORK_ARGS and value not in values.setdefault(name, []):
                values[name].append(value)
    return {name: sorted(v, key=shown) for name, v in values.items() if len(v) > 1}


def python_value_dtype(values: list) -> str:
    if all(isinstance(v, bool) for v in values):
        return "bool"
    if all(isinstance(v, int) for v in values):
        return "int32"
    if all(isinstance(v, (int, float)) for v in values):
        return "float32"
    return "string"


def synthesisable(dtype: str) -> bool:
    return dtype not in ("string", "resource", "variant")


def callable_with(function: SavedFunction, trace: SavedTrace) -> bool:
    """True when we can rebuild the call: top-level tensors of known shape and a dtype we can fill."""
    names = set(function.parameters)
    return all(t.name in names and t.shape is not None and synthesisable(t.dtype) for t in trace.tensors) and all(
        name in names for name in trace.python_args
    )


def relaxable(function: SavedFunction) -> bool:
    """One group holds all its traces, with no Python arguments, and we can call it: --fix-dir can relax it to one function."""
    groups = same_signature_groups(function)
    return (len(groups) == 1 and len(groups[0]) == len(function.traces) and not groups[0][0].python_args
            and callable_with(function, groups[0][0]))


def fixed_batch(args: list[TensorArg]) -> int | None:
    """The fixed batch size when every input has one (rank >= 1, first dim known), else None."""
    if not args or any(a.shape is None or len(a.shape) == 0 or a.shape[0] is None for a in args):
        return None
    sizes = {a.shape[0] for a in args if a.shape}
    return sizes.pop() if len(sizes) == 1 else None


def spec_code(arg: TensorArg) -> str:
    return tensor_spec_code(arg.name, arg.shape, arg.dtype)


def signature_decorator_code(specs: list[TensorArg]) -> str:
    """The decorator; leaves of a dict argument (``feats/a``) are grouped back into a dict literal."""
    entries: dict[str, list[str]] = {}
    for spec in specs:
        top, _, key = spec.name.partition("/")
        if key:
            entries.setdefault(top, []).append(f'"{key}": {spec_code(TensorArg(key, spec.shape, spec.dtype))}')
        else:
            entries[top] = [spec_code(spec)]
    items = [v[0] if len(v) == 1 and not v[0].startswith('"') else "{" + ", ".join(v) + "}" for v in entries.values()]
    lines = ["@tf.function(input_signature=["] + [f"    {item}," for item in items] + ["])"]
    return "\n".join(lines)
