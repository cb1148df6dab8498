"""The serving probe, in the worker: request streams replayed through the wrappers users write around the model,
and Keras ``predict()`` per small request against a direct call. Yields the live latencies; returns plain records."""
from __future__ import annotations

import itertools
import logging
import re
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import numpy as np

from tfaudit.api import DEFAULT_BATCH_SIZES, Progress, Sample, compare_in_turn, process_memory_bytes

from .calling import as_tensors, materialise, rounded_ms
from .catalogue import PATTERNS, PREDICT_MINIMUM, RETRACING_WARNING
from .traces import OPTION_VALUES

# The request stream, per budget: requests per replay and how many replays per pattern.
STREAM_REQUESTS = {"quick": 40, "standard": 120, "thorough": 400}
STREAM_REPEATS = {"quick": 3, "standard": 5, "thorough": 10}
KERAS_REQUESTS = {"quick": 10, "standard": 30, "thorough": 100}
KERAS_BATCH_SIZES = (1, 2, 4, 8)
MIN_DISTINCT = 3  # shapes or option values a stream holds at least: a retracing wrapper then traces more than once


class WarningCatcher(logging.Handler):
    """Collects TF's "triggered tf.function retracing" warnings from the tensorflow logger.

    TF emits it at most twice per wrapped Python function per process, so only the first
    audit in a process sees it (each check runs in its own worker).
    """

    def __init__(self) -> None:
        super().__init__(level=logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if RETRACING_WARNING in message:
            self.messages.append(re.sub(r" at 0x[0-9a-f]+", "", message.split(". ")[0]))


def replay(wrapper, stream: list, feeds: dict) -> dict:
    """One replay of ``stream`` through ``wrapper``: each request's milliseconds, the requests that traced, memory around it, TF's warnings."""
    import tensorflow as tf

    catcher = WarningCatcher()
    logger = tf.get_logger()
    logger.addHandler(catcher)
    latencies, traced_at = [], []
    memory_before = process_memory_bytes()
    try:
        for i, key in enumerate(stream):
            count = wrapper.experimental_get_tracing_count()
            start = time.perf_counter()
            materialise(wrapper(*feeds[key]))
            latencies.append((time.perf_counter() - start) * 1000.0)
            if wrapper.experimental_get_tracing_count() > count:
                traced_at.append(i)
    finally:
        logger.removeHandler(catcher)
    return {"ms": rounded_ms(latencies), "traced_at": traced_at, "memory_before": memory_before, "memory_after": process_memory_bytes(),
            "warnings": catcher.messages}


def request_shapes(ctx) -> list[tuple]:
    batches = list(DEFAULT_BATCH_SIZES) if ctx.inputs.batch_dynamic else [None]
    sequences = list(ctx.inputs.sequence_lengths) if ctx.inputs.has_sequence_dims and ctx.inputs.synthetic else [None]
    return [(b, s) for b in batches for s in sequences]


@dataclass
class Pattern:
    """One way of calling the model: a factory of fresh wrappers and the request stream it replays."""

    name: str
    make: Callable[[], Any]
    stream: list
    feeds: dict


def spread(values: list, count: int) -> list:
    """``count`` of ``values`` evenly spread, the first and the last among them."""
    if count >= len(values):
        return list(values)
    return [values[i] for i in sorted({round(k * (len(values) - 1) / (count - 1)) for k in range(count)})]


def distinct_per_stream(ctx, shapes: list[tuple], repeats: int) -> int:
    """How many distinct shapes (and option values) a stream may hold: each is a trace in every replay of a retracing
    wrapper, so the replays' traces stay within twice the budget's timing time (a trace timed on a fresh wrapper here),
    and at least MIN_DISTINCT so a retracing wrapper traces more than once."""
    import tensorflow as tf

    serve = ctx.model.serving_fn()
    names = [s.name for s in ctx.inputs.specs]
    batch, seq = shapes[0]
    feed = as_tensors(ctx.inputs.make(batch=batch, seq=seq))
    fresh = tf.function(lambda *tensors: serve(**dict(zip(names, tensors))))
    start = time.perf_counter()
    materialise(fresh(*[feed[n] for n in names]))
    trace_ms = (time.perf_counter() - start) * 1000.0
    traces = ctx.budget.timing_seconds * 1000.0 * 2 / (repeats * max(trace_ms, 1e-3))
    return max(MIN_DISTINCT, int(traces / 2))  # half for the shapes, half for the option values


def build_patterns(ctx, shape_stream: list, option_stream: list, option: str) -> list[Pattern]:
    """Fresh-wrapper factories: each replay starts from an empty trace cache, as a new process would."""
    import tensorflow as tf

    serve = ctx.model.serving_fn()
    names = [s.name for s in ctx.inputs.specs]
    specs = [tf.TensorSpec(s.shape, s.dtype, name=s.name) for s in ctx.inputs.specs]

    def predict(*tensors):
        return serve(**dict(zip(names, tensors)))

    def predict_with_option(*args):
        *tensors, value = args
        # The option travels with the result, as a per-request setting (top_k, steps) would.
        return serve(**dict(zip(names, tensors))), tf.convert_to_tensor(value)

    def wrapper(fn, **options):
        return lambda: tf.function(fn, **options)

    patterns = []
    if len(set(shape_stream)) > 1:
        feeds = {}
        for batch, seq in set(shape_stream):
            tensors = as_tensors(ctx.inputs.make(batch=batch, seq=seq))
            feeds[(batch, seq)] = [tensors[n] for n in names]
        patterns += [
            Pattern("plain", wrapper(predict), shape_stream, feeds),
            Pattern("signature", wrapper(predict, input_signature=specs), shape_stream, feeds),
            Pattern("reduce_retracing", wrapper(predict, reduce_retracing=True), shape_stream, feeds),
        ]
    default = as_tensors(ctx.inputs.make())
    base = [default[n] for n in names]
    option_spec = tf.TensorSpec([], tf.int32, name=option)
    values = sorted(set(option_stream))
    patterns += [
        Pattern("python_scalar", wrapper(predict_with_option), option_stream, {v: base + [v] for v in values}),
        Pattern(
            "tensor_scalar",
            wrapper(predict_with_option, input_signature=specs + [option_spec]),
            option_stream,
            {v: base + [tf.constant(v, tf.int32)] for v in values},
        ),
    ]
    return patterns


def stream_length(ctx, shapes: list[tuple], options: list[int], patterns: int, repeats: int) -> int:
    """Requests per replay: the budget's count, capped so a slow model stays within the budget."""
    serve = ctx.model.serving_fn()
    batch = max(b or 1 for b, _ in shapes)
    seq = max(s or 1 for _, s in shapes)
    largest = as_tensors(ctx.inputs.make(batch=batch, seq=seq))
    materialise(serve(**largest))
    start = time.perf_counter()
    materialise(serve(**largest))
    call_ms = (time.perf_counter() - start) * 1000.0
    allowed = ctx.budget.timing_seconds * 1000.0 * 2 / (patterns * repeats * max(call_ms, 1e-3))
    wanted = STREAM_REQUESTS.get(ctx.budget.name, 120)
    return int(max(2 * max(len(shapes), len(options)), min(wanted, allowed)))


def serving_probe(ctx, option: str, progress: Callable[[float, str], Progress]) -> Iterator:
    """Replay the request streams through each wrapper pattern, in turn; yields the first replay's latencies and progress,
    returns every replay of every pattern."""
    rng = np.random.default_rng(0)
    shapes = request_shapes(ctx)
    repeats = STREAM_REPEATS.get(ctx.budget.name, 5)
    distinct = distinct_per_stream(ctx, shapes, repeats)
    shapes, options = spread(shapes, distinct), spread(list(OPTION_VALUES), distinct)
    count = stream_length(ctx, shapes, options, len(PATTERNS) if len(shapes) > 1 else 2, repeats)
    shape_stream = [shapes[i] for i in rng.integers(0, len(shapes), size=count)]
    option_stream = [int(v) for v in rng.choice(options, size=count)]
    patterns = build_patterns(ctx, shape_stream, option_stream, option)

    # Untimed: the first trace in a process pays one-time costs, and the first of each Python function its conversion
    # (a fresh wrapper of the same function converts it no more).
    first_of_function: dict = {}
    for pattern in patterns:
        first_of_function.setdefault(pattern.make().python_function, pattern)
    for pattern in first_of_function.values():
        replay(pattern.make(), list(pattern.feeds)[:1], pattern.feeds)
    results: dict[str, list[dict]] = {p.name: [] for p in patterns}
    for rep in range(repeats):
        # Interleaved, in the reverse order every other time, so the host's drift and the order hit every pattern alike.
        for pattern in patterns if rep % 2 == 0 else patterns[::-1]:
            result = replay(pattern.make(), pattern.stream, pattern.feeds)
            results[pattern.name].append(result)
            if rep == 0:
                traced_at = set(result["traced_at"])
                for i, ms in enumerate(result["ms"]):
                    yield Sample(f"latency_ms:{pattern.name}", i, ms, "trace" if i in traced_at else "")
        yield progress((rep + 1) / repeats, f"request stream {rep + 1}/{repeats}")
    return {"requests": count, "shapes": [list(s) for s in sorted(set(shape_stream), key=str)], "option": option,
            "option_values": sorted(set(option_stream)), "replays": results, "confidence": ctx.budget.confidence}


def keras_probe(ctx) -> Iterator:
    """model.predict() per small request against model(x, training=False), on the same requests, in ABBA rounds until
    decided past PREDICT_MINIMUM; yields their latencies, returns the record (None where it does not apply: not
    Keras-loadable, several inputs, a fixed batch, string inputs)."""
    if not ctx.inventory.get("keras_loadable") or len(ctx.inputs.specs) != 1 or not ctx.inputs.batch_dynamic:
        return None
    if ctx.inputs.placeholder_string_inputs:
        return None
    model = ctx.model.keras_model()
    if model is None:
        return None
    import tensorflow as tf

    rng = np.random.default_rng(1)
    count = KERAS_REQUESTS.get(ctx.budget.name, 30)
    sizes = [int(b) for b in rng.choice(KERAS_BATCH_SIZES, size=count)]
    name = ctx.inputs.specs[0].name
    requests = [ctx.inputs.make(batch=b, seq=None)[name] for b in sizes]
    model.predict(requests[0], verbose=0)  # build the predict function once, as a server would
    model(tf.constant(requests[0]), training=False)
    # Both sides walk the same requests in the same order, so each ABBA round sees the same sizes on either side.
    predicting, calling = itertools.cycle(requests), itertools.cycle(requests)
    _, rounds = compare_in_turn(lambda: model.predict(next(predicting), verbose=0),
                                lambda: model(tf.constant(next(calling)), training=False).numpy(), PREDICT_MINIMUM,
                                warmup=1, max_seconds=ctx.budget.timing_seconds, confidence=ctx.budget.confidence)
    predict, direct = ({"ms": rounded_ms(calls), "warmup": 1} for calls in (rounds.calls_a, rounds.calls_b))
    for i, (p, d) in enumerate(zip(predict["ms"], direct["ms"])):
        yield Sample("latency_ms:keras_predict", i, p)
        yield Sample("latency_ms:keras_direct", i, d)
    return {"batch_sizes": sizes, "predict": predict, "direct": direct, "rounds": rounds.to_json(), "confidence": ctx.budget.confidence}
