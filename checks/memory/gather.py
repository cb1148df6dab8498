"""What the memory check measures, in the worker: memory at checkpoints of phases of calls, and peaks per batch size.

Each reading is paired with an exact call count (``FIT_POINTS`` checkpoints a phase, read from the
calling loop); a background sampler (anonymous memory, and this process's GPU memory via NVML)
feeds the live timeline and the peaks. Returns plain data for ``judge``.
"""
from __future__ import annotations

import time
import tracemalloc
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import numpy as np

from tfaudit.api import (
    DEFAULT_BATCH_SIZES,
    DEFAULT_SEQUENCE_LENGTH,
    InputError,
    Progress,
    Sample,
    SkipCheck,
    gpu_memory_total_bytes,
    peak_anonymous_bytes,
    reset_peak_memory,
)

from .growth import EARLY_LOOKS, MIN_BYTES_PER_CALL, mb, no_growth_decided

WARMUP_SECONDS = {"quick": 0.3, "standard": 1.0, "thorough": 3.0}
FIXED_SECONDS = {"quick": 1.5, "standard": 6.0, "thorough": 30.0}
FIXED_MAX_CALLS = {"quick": 5_000, "standard": 30_000, "thorough": 200_000}
HEAP_SECONDS = {"quick": 0.3, "standard": 1.0, "thorough": 4.0}
BATCH_SECONDS = {"quick": 0.1, "standard": 0.4, "thorough": 1.5}  # at most: a batch's phase ends at an early look once its peak settled
PEAK_MIN_CALLS = 5
BATCH_SIZES = {"quick": DEFAULT_BATCH_SIZES, "standard": DEFAULT_BATCH_SIZES + (64,), "thorough": DEFAULT_BATCH_SIZES + (64, 128, 256)}
NEW_SHAPES = {"quick": 16, "standard": 40, "thorough": 100}
WRAPPER_SHAPES = {"quick": 8, "standard": 16, "thorough": 40}
MAX_SEQUENCE_LENGTH = 128
FIT_POINTS = 150  # loop checkpoints per phase
SAMPLER_INTERVAL_S = 0.02
TIMELINE_POINTS_PER_PHASE = 60  # keeps each chart series to a few hundred points
MAX_PHASE_GROWTH_BYTES = 1024 * 1024 * 1024
MAX_PHASE_GROWTH_SHARE = 0.25  # of the memory available when the check starts
# Ops that write state which outlives the call: a likely cause of fixed-shape growth.
STATE_WRITE_OPS = ("Assign", "ResourceScatter", "ScatterNd", "LookupTableInsert", "LookupTableImport", "QueueEnqueue", "StackPush", "TensorArrayWrite")


@dataclass
class Phase:
    """Checkpoints of one phase: (calls done, reading) pairs, and its wall-clock window."""

    name: str
    calls: list[int] = field(default_factory=list)
    readings: list[Any] = field(default_factory=list)
    started: float = 0.0  # seconds on the sampler's clock
    ended: float = 0.0
    stopped_early: bool = False  # memory grew past the safety cap
    decided_at: float | None = None  # seconds in, where an early look decided no growth

    @property
    def n_calls(self) -> int:
        return self.calls[-1] if self.calls else 0

    @property
    def seconds(self) -> float:
        return self.ended - self.started

    def memory(self) -> list[int]:
        return [r.memory_bytes for r in self.readings]


def drive(
    name: str, call: Callable[[int], None], read: Callable[[], Any], clock: Callable[[], float], *,
    seconds: float, max_calls: int, every_call: bool = False, give_up: Callable[[Any], bool] | None = None,
    decided: Callable[[Phase], bool] | None = None,
) -> Phase:
    """Call ``call(i)`` until ``seconds`` pass or ``max_calls`` are done; read memory at ~FIT_POINTS checkpoints (or after every call).
    ``decided`` is asked at EARLY_LOOKS of ``seconds``: when it answers yes, the phase ends there."""
    phase = Phase(name, started=clock())
    looks = [share * seconds for share in EARLY_LOOKS] if decided is not None else []
    every = 0.0 if every_call else seconds / FIT_POINTS
    phase.calls.append(0)
    phase.readings.append(read())
    next_reading = clock() + every
    calls = 0
    while calls < max_calls:
        call(calls)
        calls += 1
        now = clock()
        if now >= next_reading or calls == max_calls or now - phase.started >= seconds:
            phase.calls.append(calls)
            phase.readings.append(read())
            next_reading = now + every
            if give_up is not None and give_up(phase.readings[-1]):
                phase.stopped_early = True
                break
            if looks and now - phase.started >= looks[0]:
                looks.pop(0)
                if decided(phase):
                    phase.decided_at = now - phase.started
                    break
        if now - phase.started >= seconds:
            break
    phase.ended = clock()
    return phase


def as_tensors(inputs: dict[str, np.ndarray]) -> dict:
    import tensorflow as tf

    return {name: tf.constant(value) for name, value in inputs.items()}


def materialise(outputs) -> None:
    """Wait for the outputs (GPU ops are asynchronous) and drop them."""
    for value in (outputs.values() if isinstance(outputs, dict) else [outputs]):
        value.numpy()


def new_shape_stream(ctx, batch_sizes: tuple[int, ...], count: int) -> tuple[str, list[tuple[int | None, int | None]]]:
    """(what varies, [(batch, seq)]) of never-used shapes, shuffled, none larger than a shape already run."""
    rng = np.random.default_rng(0)
    if ctx.inputs.has_sequence_dims:
        longest = min(MAX_SEQUENCE_LENGTH, ctx.inputs.constraints.max_sequence_length or MAX_SEQUENCE_LENGTH)
        lengths = [s for s in range(1, longest) if s != DEFAULT_SEQUENCE_LENGTH]
        picked = rng.permutation(lengths)[:count]
        return "sequence length", [(None, int(s)) for s in picked]
    if ctx.inputs.batch_dynamic:
        unused = [b for b in range(1, max(batch_sizes)) if b not in batch_sizes]
        picked = rng.permutation(unused)[:count]
        return "batch size", [(int(b), None) for b in picked]
    return "", []


def signature_batch(ctx) -> int:
    """The batch size a signature with a fixed batch dim takes (1 when there is none)."""
    return next((s.shape[0] for s in ctx.inputs.specs if s.shape and s.shape[0] is not None), 1)


def tf_gpu_allocator() -> Callable[[], dict | None]:
    """A reader of TF's GPU allocator stats (current/peak MB, peak reset per read); None without a TF GPU."""
    import tensorflow as tf

    if not tf.config.list_physical_devices("GPU"):
        return lambda: None

    def read() -> dict:
        info = tf.config.experimental.get_memory_info("GPU:0")  # raises on CPU: only called with a GPU
        tf.config.experimental.reset_memory_stats("GPU:0")
        return {"current_mb": mb(info["current"]), "peak_mb": mb(info["peak"])}

    return read


class Timeline:
    """Emits the sampler's points since the last call as chart samples, a few per phase."""

    def __init__(self, sampler):
        self.sampler = sampler
        self.emitted_until = -1.0
        self.baseline: int | None = None  # set after warm-up; delta_mb starts then

    def emit(self, label: str) -> Iterator[Sample]:
        points = sorted((p for p in list(self.sampler.points) if p.t > self.emitted_until), key=lambda p: p.t)
        for p in downsample(points, TIMELINE_POINTS_PER_PHASE):
            x = round(p.t, 3)
            yield Sample("ram_mb", x, mb(p.memory_bytes), label)
            if self.baseline is not None:
                yield Sample("delta_mb", x, mb(p.memory_bytes - self.baseline), label)
            if p.gpu_bytes is not None:
                yield Sample("gpu_mb", x, mb(p.gpu_bytes), label)
        if points:
            self.emitted_until = points[-1].t


def downsample(items: list, limit: int) -> list:
    if len(items) <= limit:
        return items
    return [items[i] for i in np.linspace(0, len(items) - 1, limit).round().astype(int)]


def gather(ctx) -> Iterator:
    """Yields progress and the live timeline; returns the measurements ``judge`` decides from."""
    import psutil

    budget = ctx.budget.name if ctx.budget.name in FIXED_SECONDS else "standard"
    try:
        fixed_inputs = as_tensors(ctx.inputs.make())
    except InputError as exc:
        raise SkipCheck(f"cannot make inputs: {exc}") from None
    sampler = ctx.sampler(SAMPLER_INTERVAL_S)  # options["nvml"] lets tests put a fake at the NVML boundary
    timeline = Timeline(sampler)
    sampler.start()
    try:
        measured = yield from phases(ctx, budget, fixed_inputs, sampler, timeline)
    finally:
        sampler.stop()
    yield from timeline.emit("end")
    yield Progress(1.0, "done")
    points = list(sampler.points)
    gpu_points = [p.gpu_bytes for p in points if p.gpu_bytes is not None]
    return {
        **measured,
        "budget": budget,
        "peak_memory_bytes": max(p.memory_bytes for p in points),
        "peak_rss_bytes": max(p.rss_bytes for p in points),
        "peak_gpu_bytes": max(gpu_points) if gpu_points else None,
        "gpu_reason": sampler.gpu_reason,
        "available_bytes": int(psutil.virtual_memory().available),
        "gpu_total_bytes": gpu_memory_total_bytes(ctx.options.get("nvml")) if measured["fixed"]["gpu"] is not None else None,
        "model": {"path": ctx.model.path, "signature": ctx.model.signature},
        "inputs": [{"name": s.name, "dtype": s.dtype, "shape": None if s.shape is None else list(s.shape)} for s in ctx.inputs.specs],
        "state_writes": {op: n for op, n in sorted(ctx.inventory.get("ops", {}).items()) if op.startswith(STATE_WRITE_OPS)},
    }


def phases(ctx, budget: str, fixed_inputs: dict, sampler, timeline: Timeline) -> Iterator:
    """Yields progress and samples; returns what each phase read."""
    serve = ctx.model.serving_fn()
    allocator = tf_gpu_allocator()
    started = time.perf_counter()

    def clock() -> float:
        return time.perf_counter() - started

    def call_fixed(_: int) -> None:
        materialise(serve(**fixed_inputs))

    tf_gpu: dict[str, Any] = {}
    yield Progress(0.0, "warming up")
    warmup = drive("warmup", call_fixed, sampler.sample_now, clock, seconds=WARMUP_SECONDS[budget], max_calls=10 * ctx.budget.repeats)
    yield from timeline.emit("warmup")
    tf_gpu["warmup"] = allocator()

    yield Progress(0.1, "calling with one fixed shape")
    fixed = fixed_phase(call_fixed, budget, sampler, clock, ctx.budget.confidence)
    timeline.baseline = fixed.readings[0].memory_bytes
    yield from timeline.emit("fixed")
    gpu_readings = [r.gpu_bytes for r in fixed.readings]
    tf_gpu["fixed"] = allocator()

    yield Progress(0.5, "Python heap under tracemalloc")
    heap = heap_phase(call_fixed, clock, HEAP_SECONDS[budget])
    yield from timeline.emit("heap")

    yield Progress(0.6, "peak memory per batch size")
    batch_sizes = BATCH_SIZES[budget] if ctx.inputs.batch_dynamic else ()
    batch_peaks = peaks_per_batch(ctx, serve, batch_sizes, BATCH_SECONDS[budget], sampler, clock)
    yield from timeline.emit("batch")
    tf_gpu["batch"] = allocator()

    yield Progress(0.75, "calling with new shapes")
    varies, varied, wrapper_memory, wrapper_traces = yield from new_shapes_phase(ctx, serve, batch_sizes, budget, sampler, clock, timeline)
    tf_gpu["varied"] = allocator()
    return {
        "seconds": clock(),
        "warmup_calls": warmup.n_calls,
        "fixed": {
            "calls": fixed.calls, "t": [r.t for r in fixed.readings], "memory": fixed.memory(),
            "gpu": gpu_readings if all(g is not None for g in gpu_readings) else None,
            "seconds": fixed.seconds, "stopped_early": fixed.stopped_early, "decided_at_s": fixed.decided_at,
        },
        "heap": {"calls": heap.calls, "bytes": heap.readings} if heap else None,
        "batch_peaks": [[batch, peak] for batch, peak in batch_peaks.items()],
        "varies": varies,
        "varied_memory": varied.memory() if varied else None,
        "wrapper_memory": wrapper_memory,
        "wrapper_traces": wrapper_traces,
        "tf_gpu": tf_gpu,
    }


def fixed_phase(call_fixed: Callable[[int], None], budget: str, sampler, clock, confidence: float) -> Phase:
    """Calls with one fixed shape, stopped early when memory grows past what the host can spare, or at an early look
    that decided no growth (``no_growth_decided``)."""
    import psutil

    cap = min(MAX_PHASE_GROWTH_BYTES, MAX_PHASE_GROWTH_SHARE * psutil.virtual_memory().available)
    start_memory = sampler.sample_now().memory_bytes
    return drive(
        "fixed", call_fixed, sampler.sample_now, clock, seconds=FIXED_SECONDS[budget],
        max_calls=FIXED_MAX_CALLS[budget], give_up=lambda reading: reading.memory_bytes - start_memory > cap,
        decided=lambda phase: no_growth_decided(phase.calls, phase.memory(), confidence),
    )


def peaks_per_batch(ctx, serve, batch_sizes, seconds: float, sampler, clock) -> dict[int, int]:
    """The anonymous-memory peak while calling at each batch size: samples, and the kernel's high-water mark between them."""
    batch_peaks: dict[int, int] = {}
    for batch in batch_sizes or (None,):
        inputs = as_tensors(ctx.inputs.make(batch=batch))
        high_water_mark = reset_peak_memory()
        phase = drive("batch", lambda _, feed=inputs: materialise(serve(**feed)), sampler.sample_now, clock, seconds=seconds, max_calls=10_000,
                      decided=peak_settled)
        in_window = [p.memory_bytes for p in list(sampler.points) if phase.started <= p.t <= phase.ended]
        between_samples = [peak_anonymous_bytes() or 0] if high_water_mark else []
        batch_peaks[batch or signature_batch(ctx)] = max(in_window + phase.memory() + between_samples)
    return batch_peaks


def peak_settled(phase: Phase) -> bool:
    """At least PEAK_MIN_CALLS calls, and the later half of the readings rose above the earlier half's highest by less than
    the growth check's minimum (MIN_BYTES_PER_CALL) a call: pages the sampling itself allocates move no peak."""
    memory, calls = phase.memory(), phase.calls
    half = len(memory) // 2
    if phase.n_calls < PEAK_MIN_CALLS or half == 0 or calls[-1] <= calls[half]:
        return False
    return max(memory[half:]) - max(memory[:half]) < MIN_BYTES_PER_CALL * (calls[-1] - calls[half])


def new_shapes_phase(ctx, serve, batch_sizes, budget: str, sampler, clock, timeline: Timeline) -> Iterator:
    """Calls with a new shape each, directly and through a plain tf.function wrapper; returns (what varies, the phase, wrapper memory, its traces)."""
    varies, shapes = new_shape_stream(ctx, batch_sizes, NEW_SHAPES[budget])
    if not shapes:
        return varies, None, [], 0
    if varies == "sequence length":  # run the longest first, so the stream's working set is already paid for
        materialise(serve(**as_tensors(ctx.inputs.make(seq=MAX_SEQUENCE_LENGTH))))
    feeds = [as_tensors(ctx.inputs.make(batch=b, seq=s)) for b, s in shapes]
    varied = drive("varied", lambda i: materialise(serve(**feeds[i])), sampler.sample_now, clock, seconds=3600, max_calls=len(feeds), every_call=True)
    yield from timeline.emit("varied")
    wrapper_memory, wrapper_traces = wrapper_phase(serve, feeds[: WRAPPER_SHAPES[budget]], sampler.sample_now)
    yield from timeline.emit("wrapper")
    return varies, varied, wrapper_memory, wrapper_traces


def heap_phase(call: Callable[[int], None], clock, seconds: float) -> Phase | None:
    """The fixed phase again, reading tracemalloc's traced bytes; None when tracemalloc was already on."""
    if tracemalloc.is_tracing():
        return None
    tracemalloc.start()
    try:
        return drive("heap", call, lambda: tracemalloc.get_traced_memory()[0], clock, seconds=seconds, max_calls=100_000)
    finally:
        tracemalloc.stop()


def wrapper_phase(serve, feeds: list[dict], read) -> tuple[list[int], int]:
    """The shapes again through a plain tf.function, which retraces for each: (memory before and after each, traces)."""
    import logging

    import tensorflow as tf

    @tf.function
    def wrapped(**inputs):
        return serve(**inputs)

    tf_logger = logging.getLogger("tensorflow")
    level = tf_logger.level
    tf_logger.setLevel(logging.ERROR)  # retracing warnings are the expected result here
    try:
        readings = [read().memory_bytes]
        for feed in feeds:
            materialise(wrapped(**feed))
            readings.append(read().memory_bytes)
    finally:
        tf_logger.setLevel(level)
    return readings, int(wrapped.experimental_get_tracing_count())
