"""The pipeline's first pass, in the worker: a fresh iterator's first element and each GetNext timed, memory read
between them, the bytes read through the OS, what TensorFlow ran with AUTOTUNE's choices; more passes where the first
read the whole dataset."""
from __future__ import annotations

import time
from typing import Any

import numpy as np

from tfaudit.api import process_memory_bytes

SAMPLER_INTERVAL_S = 0.02  # memory read between GetNexts at most this often (and the sampler's interval)
PASSES_AGAIN = 4  # more passes over a dataset the first pass exhausted: the allocator's arenas take the first of them to settle


def element_bytes(element: Any) -> int:
    """The bytes an element holds: its tensors' (strings by their lengths; ragged and sparse by their components; a
    nested dataset, as `window` makes, by none: it holds no elements until read)."""
    import tensorflow as tf

    total = 0
    for tensor in tf.nest.flatten(element, expand_composites=True):
        if getattr(tensor, "dtype", None) == tf.variant:
            continue
        values = np.asarray(tensor)
        total += sum(len(v) for v in values.ravel()) if values.dtype == object else values.nbytes
    return int(total)


def read_again(dataset) -> bool:
    """Whether a second iterator gives an element: not where the source is a stream read once (a generator, a queue)."""
    try:
        next(iter(dataset))
    except StopIteration:
        return False
    return True


def first_pass(dataset, take: int, seconds: float) -> dict[str, Any]:
    """A fresh iterator's first element and its next ones, each GetNext timed, up to ``take`` elements or ``seconds``."""
    started, cpu_started = time.perf_counter(), time.process_time()
    iterator = iter(dataset)
    try:
        element = next(iterator)
    except StopIteration:
        return {"elements": 0, "empty": True}
    first_ms = (time.perf_counter() - started) * 1000
    size = element_bytes(element)
    getnext: list[float] = []
    exhausted = False
    steady_start = last_read = time.perf_counter()
    memory_trace = [(1, process_memory_bytes())]  # (elements delivered, anonymous bytes), read between GetNexts
    while 1 + len(getnext) < take and time.perf_counter() - steady_start < seconds:
        before = time.perf_counter()
        try:
            next(iterator)
        except StopIteration:
            exhausted = True
            break
        got = time.perf_counter()
        getnext.append((got - before) * 1000)
        if got - last_read >= SAMPLER_INTERVAL_S:
            memory_trace.append((1 + len(getnext), process_memory_bytes()))
            last_read = time.perf_counter()
    memory_trace.append((1 + len(getnext), process_memory_bytes()))
    wall = time.perf_counter() - started
    return {
        "tensorflow_ran": autotune_model(iterator),
        "elements": 1 + len(getnext),
        "empty": False,
        "exhausted": exhausted,
        "stopped_at": "end of the dataset" if exhausted else "take" if 1 + len(getnext) >= take else "time",
        "first_ms": first_ms,
        "steady_seconds": time.perf_counter() - steady_start,
        "wall_seconds": wall,
        "cpu_seconds": time.process_time() - cpu_started,
        "element_bytes": size,
        "getnext_ms": percentiles(getnext),
        "getnext_ms_series": getnext,
        "memory_trace": memory_trace,
    }


def passes_again(dataset, first: dict[str, Any], take: int, seconds: float) -> list[int]:
    """Anonymous memory at the end of the first pass and of up to PASSES_AGAIN more over the whole dataset (within
    ``seconds``): what grows again with the same elements is kept per element read; what does not, once per element."""
    ends = [first["memory_trace"][-1][1]]
    spent = 0.0
    while len(ends) <= PASSES_AGAIN and spent < seconds:
        again = first_pass(dataset, take, seconds - spent)
        if again["empty"] or not again["exhausted"]:
            break
        ends.append(again["memory_trace"][-1][1])
        spent += again["wall_seconds"]
    return ends


def file_reads() -> tuple[int, int] | None:
    """This process's bytes read so far through the OS (files and pipes) and the part of them read from storage (not
    from the page cache): Linux's per-process I/O accounting; None where it is not kept."""
    import psutil

    try:
        counters = psutil.Process().io_counters()
        return int(counters.read_chars), int(counters.read_bytes)
    except (AttributeError, OSError, psutil.Error):
        return None


def reads_since(start: tuple[int, int] | None) -> dict[str, int] | None:
    now = file_reads()
    if start is None or now is None:
        return None
    return {"bytes": now[0] - start[0], "storage_bytes": now[1] - start[1]}


def autotune_model(iterator) -> dict[str, Any]:
    """What TensorFlow ran after its rewrites, and the values AUTOTUNE chose: the iterator's performance model
    (``IteratorGetModelProto``, through the iterator's private resource handle), node by node from the output."""
    import tensorflow as tf
    from tensorflow.core.framework import model_pb2

    try:
        proto = model_pb2.ModelProto()
        proto.ParseFromString(tf.raw_ops.IteratorGetModelProto(iterator=iterator._iterator_resource).numpy())
    except Exception as exc:  # noqa: BLE001 - an older or newer TensorFlow: say what it gave
        return {"nodes": [], "why_not": f"TensorFlow {tf.__version__} gave no performance model: {type(exc).__name__}"}
    nodes = []
    for node in proto.nodes.values():
        nodes.append({
            "id": int(node.id), "name": node.name, "inputs": [int(i) for i in node.inputs],
            "tuned": {p.name: p.state_value for p in node.parameters if p.tunable},
            "fixed": {p.name: p.value for p in node.parameters if not p.tunable},
            "elements": int(node.num_elements), "ms_per_element": node.processing_time / 1e6 / max(1, node.num_elements),
        })
    return {"nodes": sorted(nodes, key=lambda n: n["id"]), "why_not": ""}


def percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    data = np.asarray(values)
    return {"p50": float(np.percentile(data, 50)), "p90": float(np.percentile(data, 90)), "p99": float(np.percentile(data, 99)),
            "mean": float(data.mean()), "n": len(values), "within_50us": float(np.mean(data <= 0.05))}


def downsample(values: list[float], limit: int) -> list[tuple[int, float]]:
    if len(values) <= limit:
        return list(enumerate(values))
    keep = np.linspace(0, len(values) - 1, limit).round().astype(int)
    return [(int(i), values[i]) for i in keep]
