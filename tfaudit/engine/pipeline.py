"""A user's tf.data pipeline, built in a worker (``tfaudit data``): its factory imported by the import rule, the line of
the user's code behind each transformation recorded while the factory runs, and its chain of stages walked.

TensorFlow records no source lines, so ``build`` wraps the ``tf.data.Dataset`` methods that make a dataset (and the
file readers' constructors) while the factory runs: a call made from the user's code (not from TensorFlow's) is
recorded with its arguments, its input dataset and its result. A stage is one such call; the chain runs from the
final dataset back through each call's input. A node no recorded call made (a library built it) is walked through
TensorFlow's private ``_input_dataset``, which ``check_private_walk`` tries on this TensorFlow first: it fails
loudly, never silently, where that attribute is gone. The recorded calls are what lets a stage be made again with
other arguments (``Pipeline.rebuild``): the same functions, a changed ``num_parallel_calls``.
"""
from __future__ import annotations

import ast
import importlib
import importlib.util
import linecache
import operator
import os
import sys
from dataclasses import dataclass, field
from typing import Any, Callable

from tfaudit.engine.worker import error_line

# Methods of tf.data.Dataset that return a new dataset from this one (the first argument is the input).
CHAINED = (
    "map", "flat_map", "interleave", "filter", "batch", "padded_batch", "ragged_batch", "unbatch", "rebatch", "shuffle",
    "cache", "prefetch", "repeat", "take", "skip", "shard", "apply", "with_options", "window", "take_while", "scan",
    "enumerate", "ignore_errors", "snapshot", "group_by_window", "bucket_by_sequence_length", "concatenate",
    "map_with_legacy_function", "unique", "assert_cardinality", "rejection_resample", "random",
)
# Static makers of a dataset: sources of a chain.
SOURCES = ("from_tensor_slices", "from_tensors", "range", "from_generator", "list_files", "zip", "sample_from_datasets",
           "choose_from_datasets", "load", "counter")
# File readers, made by their constructors (their paths under tf.data).
READERS = ("TFRecordDataset", "TextLineDataset", "FixedLengthRecordDataset", "experimental.CsvDataset")
# How many input elements one output element stands for, where the stage says it without measuring.
SAME_COUNT = ("map", "prefetch", "cache", "shuffle", "with_options", "repeat", "take", "skip", "ignore_errors", "enumerate",
              "snapshot", "map_with_legacy_function", "assert_cardinality")
BATCHING = ("batch", "padded_batch", "ragged_batch")
# The same, for stages a library made, by their dataset class (_ParallelMapDataset: ParallelMap).
LIBRARY_SAME_COUNT = ("Map", "ParallelMap", "Prefetch", "Cache", "CacheInMemory", "Shuffle", "Options", "Take", "Skip", "Repeat",
                      "IgnoreErrors", "AssertCardinality")
LIBRARY_BATCHING = ("Batch", "ParallelBatch", "PaddedBatch")
# Where num_parallel_calls stands among a stage's positional arguments.
PARALLEL_CALLS_POSITION = {"map": 1, "interleave": 3}
# Code that is not the user's: a call made from these packages is a library's, not a line to name.
LIBRARIES = ("tensorflow", "keras", "tf_keras", "keras_hub", "keras_nlp", "keras_cv", "tensorflow_datasets", "tensorflow_io",
             "tensorflow_text", "tensorflow_addons", "tfaudit")


class PipelineError(Exception):
    """The pipeline cannot be audited: one line for the user (exit 2)."""


@dataclass
class Call:
    """One recorded call of a dataset maker from the user's code."""

    method: str
    args: tuple
    kwargs: dict
    input: Any  # the dataset it was called on; None for a source
    result: Any
    where: str  # "file.py:12"
    code: str  # that line of the user's code


@dataclass
class Stage:
    """One step of the chain, from the source (index 0) to the final dataset."""

    index: int
    kind: str  # the method ("map", "batch", "TFRecordDataset") or, unrecorded, the dataset's class
    node: str  # the dataset's class, as TensorFlow names it
    dataset: Any
    call: Call | None = None  # None: a library made it (no line of the user's code)

    @property
    def where(self) -> str:
        return self.call.where if self.call else ""

    @property
    def code(self) -> str:
        return self.call.code if self.call else ""

    @property
    def label(self) -> str:
        return f"{self.kind} ({self.where})" if self.where else f"{self.kind} (made inside a library call)"

    @property
    def sequential(self) -> bool:
        """A map or interleave the user's code called without num_parallel_calls: one element at a time."""
        position = PARALLEL_CALLS_POSITION.get(self.kind)
        return position is not None and self.call is not None and self.argument("num_parallel_calls", position) is None

    def argument(self, name: str, position: int, default: Any = None) -> Any:
        if self.call is None:
            return default
        if name in self.call.kwargs:
            return self.call.kwargs[name]
        return self.call.args[position] if len(self.call.args) > position else default

    def random_ops(self) -> list[str]:
        """The random ops a map's function runs (a cache after them would freeze them); [] where none or not a map."""
        function = getattr(getattr(self.dataset, "_map_func", None), "function", None)
        if function is None:
            return []
        graphs = [function.graph, *(f.graph for f in getattr(function.graph, "_functions", {}).values() if hasattr(f, "graph"))]
        return sorted({op.type for graph in graphs for op in graph.get_operations()
                       if "Random" in op.type and not op.type.startswith("Stateless")})

    def declared_ratio(self) -> tuple[float, str] | None:
        """How many input elements one of its elements stands for, where the stage says it (a map: 1; batch(16): 16);
        None where only counting can tell (filter, interleave, unbatch …)."""
        if self.kind in SAME_COUNT or (self.call is None and self.kind in LIBRARY_SAME_COUNT):
            return 1.0, "one element per element"
        if self.kind in BATCHING or (self.call is None and self.kind in LIBRARY_BATCHING):
            try:
                size = int(self.argument("batch_size", 0) if self.call else self.dataset._batch_size)
            except (AttributeError, TypeError, ValueError):
                return None
            return float(size), f"batch_size {size}"
        return None

    def to_dict(self) -> dict[str, Any]:
        return {"index": self.index, "kind": self.kind, "node": self.node, "where": self.where, "code": self.code,
                "arguments": self.arguments_text()}

    def arguments_text(self) -> dict[str, str]:
        if self.call is None:
            return {}
        texts = {f"#{i}": short_repr(a) for i, a in enumerate(self.call.args)}
        texts.update({k: short_repr(v) for k, v in self.call.kwargs.items()})
        return texts


@dataclass
class Pipeline:
    target: str
    arguments: dict[str, Any]
    dataset: Any
    stages: list[Stage] = field(default_factory=list)
    model: Any = None  # --model: the LoadedModel its elements feed
    step: str = ""  # --step: the user's step function (MODULE:FUNCTION) its elements feed
    consumer: Callable[[Any], Any] | None = None  # one step on an element: the model's serving signature, or the user's step

    def consume(self, element: Any) -> None:
        """One step on ``element``, waited for (nothing without --model or --step)."""
        if self.consumer is None:
            return
        import tensorflow as tf

        for value in tf.nest.flatten(self.consumer(element)):
            if hasattr(value, "numpy"):
                value.numpy()

    def inventory(self) -> dict[str, Any]:
        import tensorflow as tf

        cardinality = int(self.dataset.cardinality())
        model = None if self.model is None else {"path": self.model.path, "signature": self.model.signature, "format": self.model.format}
        return {
            "kind": "pipeline",
            "feeds_model": model,
            "feeds_step": self.step or None,
            "path": self.target,
            "arguments": {k: short_repr(v) for k, v in self.arguments.items()},
            "format": "tf.data pipeline",
            "element_spec": element_spec_text(self.dataset.element_spec),
            "cardinality": {tf.data.INFINITE_CARDINALITY: "infinite", tf.data.UNKNOWN_CARDINALITY: "unknown"}.get(cardinality, cardinality),
            "stages": [s.to_dict() for s in self.stages],
            "options": options_in_effect(self.dataset),
        }

    def rebuild(self, changes: dict[int, dict[str, Any]]) -> Any:
        """The pipeline made again from the input of the first stage in ``changes`` (stage index: keyword arguments to
        change), every stage from there called as recorded but for those; None where one of them was not recorded
        (a library made it)."""
        first = min(changes)
        if first == 0:
            return None
        return self.continued(first - 1, self.stages[first - 1].dataset, changes)

    def continued(self, index: int, dataset: Any, changes: dict[int, dict[str, Any]] | None = None) -> Any:
        """The stages after ``index`` called again as recorded (with ``changes``) on ``dataset`` in place of stage
        ``index``'s output: a stage inserted there (a cache). None where one of them was not recorded."""
        changes = changes or {}
        if any(s.call is None for s in self.stages[index + 1:]):
            return None
        for stage in self.stages[index + 1:]:
            call = stage.call
            assert call is not None
            kwargs = {**call.kwargs, **changes.get(stage.index, {})}
            dataset = getattr(type(dataset), call.method)(dataset, *call.args, **kwargs)
        return dataset


def short_repr(value: Any, limit: int = 60) -> str:
    if callable(value):
        return getattr(value, "__qualname__", None) or type(value).__name__
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def element_spec_text(spec: Any) -> str:
    import tensorflow as tf

    def one(s: Any) -> str:
        if isinstance(s, tf.TensorSpec):
            return f"{s.dtype.name}{list(s.shape) if s.shape.rank is not None else '[?]'}".replace("None", "?")
        return type(s).__name__

    return str(tf.nest.map_structure(one, spec))


def options_in_effect(dataset: Any) -> dict[str, Any]:
    """What TensorFlow will do to the pipeline by itself: the optimisations and autotuning its options leave on."""
    options = dataset.options()
    optimization = options.experimental_optimization
    return {
        "autotune": options.autotune.enabled is not False,
        "autotune_cpu_budget": options.autotune.cpu_budget or "all cores",
        "autotune_ram_budget": options.autotune.ram_budget or "half the RAM",
        "map_parallelization": optimization.map_parallelization is not False,
        "inject_prefetch": optimization.inject_prefetch is not False,
        "parallel_batch": optimization.parallel_batch is not False,
        "map_and_batch_fusion": optimization.map_and_batch_fusion is not False,
        "deterministic": options.deterministic is not False,
        "private_threadpool_size": options.threading.private_threadpool_size or "shared pool",
        "max_intra_op_parallelism": options.threading.max_intra_op_parallelism or "default",
    }


# --- the factory ---------------------------------------------------------------------------------


def parse_arguments(pairs: list[str]) -> dict[str, Any]:
    """``k=v`` pairs; a value is a Python literal where it reads as one (3, 0.5, True, "x", [1, 2]), else the text."""
    arguments: dict[str, Any] = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep or not key.isidentifier():
            raise PipelineError(f"--arg {pair!r}: give NAME=VALUE")
        try:
            arguments[key] = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            arguments[key] = text
    return arguments


def resolve_factory(target: str) -> Callable[..., Any]:
    """``package.module:function`` (imported from the user's folders, after the installation) or ``path/file.py:function``."""
    from tfaudit.engine.launch import adopt_user_path

    where, sep, name = target.rpartition(":")
    if not sep or not where or not name:
        raise PipelineError(f"{target!r}: give MODULE:FUNCTION or FILE.py:FUNCTION")
    try:
        if where.endswith(".py"):
            if not os.path.isfile(where):
                raise PipelineError(f"{target}: no such file: {where}")
            folder = os.path.dirname(os.path.abspath(where))
            if folder not in sys.path:
                sys.path.append(folder)  # its own imports of its neighbours, after the installation's paths
            spec = importlib.util.spec_from_file_location(os.path.splitext(os.path.basename(where))[0], where)
            assert spec is not None and spec.loader is not None
            module = importlib.util.module_from_spec(spec)
            sys.modules[spec.name] = module
            spec.loader.exec_module(module)
        else:
            adopt_user_path()
            module = importlib.import_module(where)
    except PipelineError:
        raise
    except BaseException as exc:  # noqa: BLE001 - whatever the user's module raises on import is the reason
        raise PipelineError(f"{target}: cannot import {where}: {error_line(exc)}") from None
    factory = module
    for part in name.split("."):
        factory = getattr(factory, part, None)
        if factory is None:
            raise PipelineError(f"{target}: {where} has no {name}")
    if not callable(factory):
        raise PipelineError(f"{target}: {name} is not a function")
    return factory


def build(target: str, arguments: dict[str, Any]) -> Pipeline:
    """Call the factory with its arguments, recording its calls; the pipeline with its chain of stages."""
    import tensorflow as tf

    check_private_walk()
    factory = resolve_factory(target)
    with Recorder() as recorder:
        try:
            dataset = factory(**arguments)
        except BaseException as exc:  # noqa: BLE001 - what the factory raises is the user's error, in one line
            raise PipelineError(f"{target} raised {error_line(exc)}") from None
    if not isinstance(dataset, tf.data.Dataset):
        raise PipelineError(f"{target} returned {type(dataset).__name__}, not a tf.data.Dataset")
    if int(dataset.cardinality()) == 0:
        raise PipelineError(f"{target} returned an empty dataset")
    return Pipeline(target, arguments, dataset, walk(dataset, recorder.calls))


def check_private_walk() -> None:
    import tensorflow as tf

    source = tf.data.Dataset.range(3)
    mapped = source.map(lambda x: x + 1)
    if getattr(mapped, "_input_dataset", None) is not source:
        raise PipelineError(f"TensorFlow {tf.__version__} no longer exposes a dataset's input (_input_dataset): "
                            "tfaudit data cannot walk the pipeline's stages on it")


def walk(dataset: Any, calls: list[Call]) -> list[Stage]:
    by_result: dict[int, Call] = {}
    for call in calls:  # recorded as each returned: a call made inside another (apply's function) comes first, and names the stage
        by_result.setdefault(id(call.result), call)
    chain: list[Stage] = []
    node: Any = dataset
    while node is not None:
        call = by_result.get(id(node))
        kind = call.method if call else type(node).__name__.lstrip("_").removesuffix("V2").removesuffix("Dataset") or "Dataset"
        chain.append(Stage(0, kind, type(node).__name__, node, call))
        node = call.input if call else getattr(node, "_input_dataset", None)
    chain.reverse()
    for index, stage in enumerate(chain):
        stage.index = index
    return chain


class Recorder:
    """Wraps the dataset makers while the factory runs; ``calls`` are those made from outside TensorFlow and tfaudit."""

    def __init__(self) -> None:
        self.calls: list[Call] = []
        self.saved: list[tuple[Any, str, Any]] = []

    def __enter__(self) -> "Recorder":
        import tensorflow as tf

        dataset_class = tf.data.Dataset
        for name in CHAINED:
            original = dataset_class.__dict__.get(name)
            if original is not None and callable(original):
                self.patch(dataset_class, name, self.method(name, original))
        for name in SOURCES:
            original = dataset_class.__dict__.get(name)
            if isinstance(original, staticmethod):
                self.patch(dataset_class, name, staticmethod(self.source(name, original.__func__)))
        for path in READERS:
            reader = operator.attrgetter(path)(tf.data)
            self.patch(reader, "__init__", self.constructor(path.rpartition(".")[2], reader.__init__))
        return self

    def __exit__(self, *exc: Any) -> None:
        for owner, name, original in reversed(self.saved):
            setattr(owner, name, original)

    def patch(self, owner: Any, name: str, replacement: Any) -> None:
        self.saved.append((owner, name, owner.__dict__[name]))
        setattr(owner, name, replacement)

    def record(self, method: str, args: tuple, kwargs: dict, input: Any, result: Any) -> None:
        frame = sys._getframe(2)
        filename = frame.f_code.co_filename
        if filename.startswith("<") or str(frame.f_globals.get("__name__", "")).split(".")[0] in LIBRARIES:
            return
        code = linecache.getline(filename, frame.f_lineno).strip()
        self.calls.append(Call(method, args, kwargs, input, result, f"{os.path.basename(filename)}:{frame.f_lineno}", code))

    def method(self, name: str, original: Callable) -> Callable:
        recorder = self

        def recorded(self, *args, **kwargs):
            result = original(self, *args, **kwargs)
            recorder.record(name, args, kwargs, self, result)
            return result

        return recorded

    def source(self, name: str, original: Callable) -> Callable:
        recorder = self

        def recorded(*args, **kwargs):
            result = original(*args, **kwargs)
            recorder.record(name, args, kwargs, None, result)
            return result

        return recorded

    def constructor(self, name: str, original: Callable) -> Callable:
        recorder = self

        def recorded(self, *args, **kwargs):
            original(self, *args, **kwargs)
            recorder.record(name, args, kwargs, None, self)

        return recorded


def attach_model(pipeline: Pipeline, path: str, signature: str | None, trusted: bool, user_modules: tuple[str, ...]) -> None:
    """``--model``: load it and learn how an element feeds its signature; a PipelineError when it does not load or the
    elements do not match its inputs."""
    from tfaudit.engine.model import LoadError, input_specs, load_model

    try:
        model = load_model(path, signature, refuse_untrusted=not trusted, user_modules=user_modules)
    except LoadError as exc:
        raise PipelineError(f"--model: {exc}") from None
    feed = feeder(pipeline.dataset.element_spec, input_specs(model.inventory), f"{model.signature} of {path}")
    serve = model.serving_fn()
    pipeline.model, pipeline.consumer = model, lambda element: serve(**feed(element))


def attach_step(pipeline: Pipeline, target: str) -> None:
    """``--step``: the user's step function (a training step, say), called with each element; a PipelineError when it
    does not import, or raises on the first element."""
    step = resolve_factory(target)
    try:
        first = next(iter(pipeline.dataset))
        pipeline.step, pipeline.consumer = target, step
        pipeline.consume(first)
    except PipelineError:
        raise
    except BaseException as exc:  # noqa: BLE001 - what the step raises on an element is the user's error, in one line
        raise PipelineError(f"--step {target} raised {error_line(exc)} on the dataset's first element") from None


def feeder(spec: Any, inputs: list[dict], what: str) -> Callable[[Any], dict]:
    """How an element becomes the model's keyword inputs: a dict by the inputs' names, a (features, label) tuple by its
    features, a lone tensor for a model of one input; a PipelineError naming the first mismatch."""
    import tensorflow as tf

    names = [i["name"] for i in inputs]
    wanted = ", ".join(f"{i['name']} {i['dtype']}{i['shape']}" for i in inputs)
    path: list[int] = []
    while isinstance(spec, (tuple, list)) and spec:
        path.append(0)
        spec = spec[0]
    if isinstance(spec, dict):
        missing = [n for n in names if n not in spec]
        if missing:
            raise PipelineError(f"the dataset's elements {element_spec_text(spec)} have no {', '.join(missing)} for {what} ({wanted})")
        specs = {n: spec[n] for n in names}
    elif isinstance(spec, tf.TensorSpec) and len(names) == 1:
        specs = {names[0]: spec}
    else:
        raise PipelineError(f"the dataset's elements {element_spec_text(spec)} do not feed {what} ({wanted})")
    for given in inputs:
        got = specs[given["name"]]
        shape = tf.TensorShape(given["shape"])
        if not isinstance(got, tf.TensorSpec) or got.dtype.name != given["dtype"] or not got.shape.is_compatible_with(shape):
            raise PipelineError(f"the dataset's {given['name']} is {element_spec_text(got)}, but {what} takes "
                                f"{given['dtype']}{list(shape)}".replace("None", "?"))

    def feed(element: Any) -> dict:
        for index in path:
            element = element[index]
        return {name: element[name] for name in names} if isinstance(element, dict) else {names[0]: element}

    return feed

