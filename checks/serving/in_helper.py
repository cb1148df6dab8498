"""What runs in the helper processes: a serving process (threads and precision set before its first op), and LiteRT.

The check calls these by reference (``helper.call("…", helper_open, …)``); each answers plain data.
"""
from __future__ import annotations

import os
import time
from typing import Any

from tfaudit.api import PracticalMinimum, compare_in_turn, host_reference, import_user_modules, load_model, one_line, time_in_turn

from .._compression import interpreter_runner, read_feeds, write_feeds
from .endpoint import Endpoint, timed_first
from .stats import thinned

_HELPER: dict[str, Any] = {}  # this helper's loaded model, its endpoints and its requests as tensors


def helper_open(model: str, signature: str, modules: list[str], device: str, intra: int | None = None,
                inter: int | None = None, precision: str = "float32", first_feed: str | None = None,
                warmup_records: str | None = None, noise_feeds: list[str] | None = None, noise_seconds: float = 0.0,
                noise_rounds: int = 0) -> dict[str, Any]:
    """Set threads and precision before any op, load the model, and time the first request; with ``noise_feeds``, then
    time each of them and the host reference in turn (``in_turn_ms``: their medians, this process's latency ÷ reference)."""
    start = time.perf_counter()
    import tensorflow as tf

    if intra is not None:
        tf.config.threading.set_intra_op_parallelism_threads(intra)
    if inter is not None:
        tf.config.threading.set_inter_op_parallelism_threads(inter)
    if precision == "bfloat16":
        tf.config.optimizer.set_experimental_options({"auto_mixed_precision_onednn_bfloat16": True})
    elif precision == "float16":
        tf.config.optimizer.set_experimental_options({"auto_mixed_precision": True})
    import_user_modules(modules)
    if os.path.isdir(model):  # what a server loads: the SavedModel, no inventory
        loaded = tf.saved_model.load(model)
        serve = loaded.signatures[signature]
    else:
        loaded = load_model(model, signature)
        serve = loaded.serving_fn()
    reply: dict[str, Any] = {"load_ms": (time.perf_counter() - start) * 1000.0}
    _HELPER.clear()
    # The loaded object must live: a function traced later (XLA) over a signature whose variables were collected fails.
    _HELPER.update(loaded=loaded, serve=serve, device=device, endpoints={}, tensors={})
    if warmup_records:
        started = time.perf_counter()
        reply["warmup_requests"] = replay_warmup(serve, warmup_records)
        reply["warmup_ms"] = (time.perf_counter() - started) * 1000.0
    if first_feed:
        endpoint = helper_endpoint(False)
        tensors = helper_tensors(endpoint, first_feed)
        reply["first_ms"] = timed_first(lambda: endpoint(tensors))
        reply["second_ms"] = timed_first(lambda: endpoint(tensors))
    if noise_feeds:
        reply["in_turn_ms"] = in_turn_with_reference(noise_feeds, noise_seconds, noise_rounds)
    return reply


def in_turn_with_reference(feeds: list[str], seconds: float, rounds: int) -> dict[str, Any]:
    """The medians of each feed's call and of the host reference, timed in turn (keys: the feeds' order, then "reference")."""
    endpoint = helper_endpoint(False)
    calls = [lambda tensors=helper_tensors(endpoint, feed): endpoint(tensors) for feed in feeds]
    timings = time_in_turn(*calls, host_reference(), warmup=2, max_seconds=seconds, max_rounds=rounds)
    return {"calls": [t.median_ms for t in timings[:-1]], "reference": timings[-1].median_ms, "rounds": len(timings[-1].samples_ms)}


def helper_endpoint(xla: bool) -> Endpoint:
    if xla not in _HELPER["endpoints"]:
        _HELPER["endpoints"][xla] = Endpoint(_HELPER["serve"], _HELPER["device"], xla=xla)
    return _HELPER["endpoints"][xla]


def helper_tensors(endpoint: Endpoint, feed_path: str) -> dict:
    if feed_path not in _HELPER["tensors"]:
        _HELPER["tensors"][feed_path] = endpoint.tensors(read_feeds(feed_path)[0])
    return _HELPER["tensors"][feed_path]


def helper_turn(feed: str, calls: int, xla: bool = False) -> dict[str, Any]:
    """One turn of a comparison: ``calls`` back-to-back calls on ``feed``, their total and each one's time in ms."""
    endpoint = helper_endpoint(xla)
    tensors = helper_tensors(endpoint, feed)
    took = []
    for _ in range(calls):
        start = time.perf_counter()
        endpoint(tensors)
        took.append((time.perf_counter() - start) * 1000.0)
    return {"ms": sum(took), "calls_ms": took}


def helper_outputs(feeds: str, out: str) -> dict[str, Any]:
    """The outputs on each of ``feeds``, written to ``out``."""
    endpoint = helper_endpoint(False)
    write_feeds(out, [endpoint(endpoint.tensors(feed)) for feed in read_feeds(feeds)])
    return {}


def replay_warmup(serve, path: str) -> int:
    """Run each PredictLog request through the signature once, as TF Serving does when it loads a model."""
    import tensorflow as tf
    from tensorflow_serving.apis import prediction_log_pb2

    count = 0
    for record in tf.data.TFRecordDataset(path).as_numpy_iterator():
        log = prediction_log_pb2.PredictionLog.FromString(record)
        inputs = {name: tf.constant(tf.make_ndarray(proto)) for name, proto in log.predict_log.request.inputs.items()}
        for value in serve(**inputs).values():
            value.numpy()
        count += 1
    return count


def litert_threads_job(model: str, signature: str, feed: str, threads: list[int | None], minimums: list[dict[str, Any]],
                       seconds: float, warmup: int, confidence: float) -> dict[str, Any]:
    """In the conversion process: the flatbuffer at each ``num_threads`` against LiteRT's default (``threads[0]``, None), in
    ABBA rounds until decided (``compare_in_turn``): per count, the rounds and its calls, thinned."""
    with open(model, "rb") as f:
        content = f.read()
    request = read_feeds(feed)[0]
    runners = [interpreter_runner(content, signature, num_threads=count) for count in threads]
    default = runners[0]
    compared: list[dict[str, Any]] = []
    try:
        for runner in runners[1:]:
            _, rounds = compare_in_turn(lambda: default(**request), lambda runner=runner: runner(**request),
                                        [PracticalMinimum(**one) for one in minimums],
                                        warmup=warmup, max_seconds=seconds, confidence=confidence)
            compared.append({"rounds": rounds.to_json(), "default_ms": thinned(rounds.calls_a), "ms": thinned(rounds.calls_b)})
    except Exception as exc:  # LiteRT raises RuntimeError/ValueError with the failing node
        return {"error": f"LiteRT cannot run the float32 model: {one_line(exc)}"}
    return {"compared": compared}
