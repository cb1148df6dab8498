"""Memory: does serving memory grow per call, per new input shape, and how big is each batch size?

The check calls the serving signature in phases, after a warm-up:

1. ``fixed``: one input shape, repeatedly, for ``FIXED_SECONDS[budget]`` (at most
   ``FIXED_MAX_CALLS``). Growth here is state the model keeps per call, or a leak.
2. ``heap``: a short repeat of the fixed phase under tracemalloc (it doubles the cost of a
   call, so it is kept short) to tell growth in Python objects from native/TF memory.
3. ``batch``: each batch size for ``BATCH_SECONDS[budget]``; the peak memory per batch size.
4. ``varied``: a stream of input shapes never seen before (new batch sizes, or new sequence
   lengths), all no larger than shapes already run so the working set cannot explain growth.
   Then the first ``WRAPPER_SHAPES`` of them again through a plain ``tf.function`` wrapper
   (how Python servers often call a model): each new shape retraces it, and what a retrace
   keeps is measured too.

Memory is anonymous resident memory (``RssAnon``: what the process allocated, without the
mapped TensorFlow libraries, so a worker forked from the zygote and a fresh interpreter read the
same; see tfaudit.engine.resources), read from a ``ResourceSampler`` (with this process's GPU memory via
NVML) on a background thread for the timeline and peaks, and at ~``FIT_POINTS`` checkpoints
per phase from the calling loop, so each reading is paired with an exact call count.
On a GPU that TensorFlow sees, ``tf.config.experimental.get_memory_info`` adds the TF
allocator's current and peak bytes per phase.

Growth per call (or per new shape) is the Theil–Sen slope of memory against calls, with
Sen's rank-based 95 % interval. A slope is reported as growth only when it is

- significant: its interval excludes zero;
- practically significant: the interval's low end is at least ``MIN_BYTES_PER_CALL``
  (1 KiB per call is ~1 GB per million calls), and the phase grew by at least
  ``MIN_PHASE_GROWTH_BYTES`` in total, well above page/allocator noise;
- persistent: the second half of the phase still grows at ``PERSISTENCE`` of the full rate,
  so a one-off allocator step (which Theil–Sen can mistake for a slope) is not a leak.

Findings:

- ``memory/growth-fixed-shape`` (RAM) and ``memory/gpu-growth-fixed-shape`` (NVML): severity
  from the hours until the growth, at the measured back-to-back call rate (the 90th percentile over
  the phase's checkpoint intervals: what the host sustains when other processes leave it alone,
  which a shared host's average swings far from), exhausts the memory available now: < 1 h critical, < 24 h high, < 7 days medium, else low. Savings
  ``memory_bytes`` = what the growth takes over ``SERVING_HORIZON_HOURS`` (a week) of serving at
  the measured call rate, at most the memory available now (a leak cannot take more: the server
  is OOM-killed first). A leak is priced by what it costs a server, not by what grew during the
  test, so one that exhausts memory within the week is priced at all of it and ranks first.
- ``memory/growth-per-new-shape``: the signature itself keeps memory per new input shape (the
  fixed-shape slope subtracted). Severity by bytes per new shape: < 1 MiB info, < 10 MiB low,
  < 100 MiB medium, else high. The wrapper's retrace cost is evidence only: it is the
  caller's code, not the model.
- ``memory/stable`` (info): nothing grew; carries the measured numbers.

Metrics
-------

- ``growth_bytes_per_1000_calls`` (bytes, lower is better): the fixed-shape Theil–Sen slope of
  anonymous memory × 1000, with its 95 % interval × 1000; emitted after the fixed phase, growth or not. When
  the slope is not growth (above), the interval reaches from 0 to the phase's resolution, the
  smallest slope it could report (``MIN_BYTES_PER_CALL``, or ``MIN_PHASE_GROWTH_BYTES`` over the
  calls made when that is larger): "no growth" is a measurement at a resolution, not exactly 0.
- ``peak_memory_mb`` (MB): the highest anonymous-memory peak over the batch-size phase (samples,
  and the kernel's high-water mark between them).
- ``gpu_growth_bytes_per_1000_calls`` (bytes): the same slope for this process's GPU memory
  (NVML); only when every fixed-phase reading has a GPU value.
"""
from __future__ import annotations

import time
import tracemalloc
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import numpy as np

from tfaudit.api import Check, CheckMeta, Effort, Finding, Fix, Measure, Metric, Progress, Risk, Sample, SkipCheck
from tfaudit.engine.inputs import DEFAULT_BATCH_SIZES, DEFAULT_SEQUENCE_LENGTH, InputError
from tfaudit.engine.resources import peak_anonymous_bytes, reset_peak

CHECK = "memory"
MEMORY_MEASURED = "anonymous resident memory (RssAnon: allocated by the process, not its mapped libraries)"
KIB = 1024
MIB = 1024 * 1024

# Per budget: seconds (and a call cap) per phase, batch sizes, new shapes in the varied stream.
WARMUP_SECONDS = {"quick": 0.3, "standard": 1.0, "thorough": 3.0}
FIXED_SECONDS = {"quick": 1.5, "standard": 6.0, "thorough": 30.0}
FIXED_MAX_CALLS = {"quick": 5_000, "standard": 30_000, "thorough": 200_000}
HEAP_SECONDS = {"quick": 0.3, "standard": 1.0, "thorough": 4.0}
BATCH_SECONDS = {"quick": 0.1, "standard": 0.4, "thorough": 1.5}
BATCH_SIZES = {"quick": DEFAULT_BATCH_SIZES, "standard": DEFAULT_BATCH_SIZES + (64,), "thorough": DEFAULT_BATCH_SIZES + (64, 128, 256)}
NEW_SHAPES = {"quick": 16, "standard": 40, "thorough": 100}
WRAPPER_SHAPES = {"quick": 8, "standard": 16, "thorough": 40}
MAX_SEQUENCE_LENGTH = 128
FIT_POINTS = 150  # loop checkpoints per phase
SAMPLER_INTERVAL_S = 0.02
TIMELINE_POINTS_PER_PHASE = 60  # keeps each chart series to a few hundred points

MIN_BYTES_PER_CALL = 1 * KIB
MIN_BYTES_PER_SHAPE = 4 * KIB
MIN_PHASE_GROWTH_BYTES = 1 * MIB
PERSISTENCE = 0.5
# A leaking model must not take the machine down: the fixed phase stops after this much growth.
MAX_PHASE_GROWTH_BYTES = 1024 * MIB
MAX_PHASE_GROWTH_SHARE = 0.25  # of the memory available when the check starts
HOURS_TO_EXHAUST = (("critical", 1.0), ("high", 24.0), ("medium", 24.0 * 7))
SERVING_HORIZON_HOURS = 24.0 * 7
BYTES_PER_SHAPE = (("high", 100 * MIB), ("medium", 10 * MIB), ("low", 1 * MIB))
# Ops that write state which outlives the call: a likely cause of fixed-shape growth.
STATE_WRITE_OPS = ("Assign", "ResourceScatter", "ScatterNd", "LookupTableInsert", "LookupTableImport", "QueueEnqueue", "StackPush", "TensorArrayWrite")


# --- statistics (numpy only) --------------------------------------------------------------------


def theil_sen(x, y, confidence: float = 0.95, max_points: int = 400) -> Measure:
    """Median of pairwise slopes, with Sen's rank-based interval (Kendall's S variance, no ties correction).

    More than ``max_points`` points are thinned evenly first, which keeps the pairs O(max_points²).
    """
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if len(x) > max_points:
        keep = np.linspace(0, len(x) - 1, max_points).round().astype(int)
        x, y = x[keep], y[keep]
    n = len(x)
    i, j = np.triu_indices(n, k=1)
    dx = x[j] - x[i]
    usable = dx != 0
    slopes = np.sort((y[j] - y[i])[usable] / dx[usable])
    if len(slopes) == 0:
        return Measure(0.0)
    from statistics import NormalDist

    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    spread = z * np.sqrt(n * (n - 1) * (2 * n + 5) / 18.0)
    count = len(slopes)
    low = int(np.clip(np.floor((count - spread) / 2), 0, count - 1))
    high = int(np.clip(np.ceil((count + spread) / 2), 0, count - 1))
    return Measure(float(np.median(slopes)), float(slopes[low]), float(slopes[high]))


@dataclass(frozen=True)
class Growth:
    """A fitted slope and whether it counts as growth (see the module docstring)."""

    slope: Measure  # bytes per step (call or new shape)
    late_slope: float  # the second half's slope
    steps: int
    total_bytes: float  # slope × steps
    min_step_bytes: float

    @property
    def resolution(self) -> float:
        """The smallest slope this phase could report as growth (per step)."""
        return max(self.min_step_bytes, MIN_PHASE_GROWTH_BYTES / self.steps) if self.steps else float("inf")

    @property
    def significant(self) -> bool:
        return (
            self.slope.excludes_zero()
            and self.slope.low >= self.min_step_bytes
            and self.total_bytes >= MIN_PHASE_GROWTH_BYTES
            and self.late_slope >= PERSISTENCE * self.slope.value
        )

    def summary(self) -> dict[str, Any]:
        return {
            "bytes_per_step": round(self.slope.value, 1),
            "bytes_per_step_ci95": [round(self.slope.low, 1), round(self.slope.high, 1)],
            "second_half_bytes_per_step": round(self.late_slope, 1),
            "steps": self.steps,
            "total_growth_bytes": round(self.total_bytes),
            "growth": self.significant,
        }


def fit_growth(steps, values, min_step_bytes: float = MIN_BYTES_PER_CALL) -> Growth:
    steps, values = np.asarray(steps, dtype=float), np.asarray(values, dtype=float)
    slope = theil_sen(steps, values)
    half = len(steps) // 2
    late = theil_sen(steps[half:], values[half:]).value if len(steps) - half >= 3 else slope.value
    span = float(steps[-1] - steps[0]) if len(steps) else 0.0
    return Growth(slope, late, int(span), slope.value * span, min_step_bytes)


def beyond(slope: Measure, fixed: Measure) -> Measure:
    """Per-call growth with new shapes minus the fixed-shape growth, with the conservative (widest) interval."""
    return Measure(slope.value - fixed.value, slope.low - fixed.high, slope.high - fixed.low)


def horizon_bytes(per_call: float, calls_per_second: float, available: float | None) -> float:
    """Bytes a growth of ``per_call`` takes over the serving horizon, at most ``available``."""
    grown = max(0.0, per_call) * calls_per_second * 3600 * SERVING_HORIZON_HOURS
    return min(grown, available) if available else grown


def severity_from_hours(hours: float) -> str:
    return next((severity for severity, limit in HOURS_TO_EXHAUST if hours < limit), "low")


def severity_from_shape_bytes(nbytes: float) -> str:
    return next((severity for severity, limit in BYTES_PER_SHAPE if nbytes >= limit), "info")


def downsample(items: list, limit: int) -> list:
    if len(items) <= limit:
        return items
    return [items[i] for i in np.linspace(0, len(items) - 1, limit).round().astype(int)]


def mb(nbytes: float) -> float:
    return round(nbytes / MIB, 3)


def per_1000_calls(name: str, growth: Growth) -> Metric:
    """The slope × 1000 with its interval; "no growth" carries the resolution it was measured at.

    When the check does not call the slope growth, the interval is widened to reach 0 and the
    phase's resolution, so a baseline never reads "no growth" as exactly 0 (or as a tiny but
    tight slope) and calls the next run's allocator noise a regression.
    """
    slope = growth.slope
    low, high = (slope.value, slope.value) if slope.low is None else (slope.low, slope.high)
    if not growth.significant:
        low, high = min(low, 0.0), max(high, growth.resolution)
    return Metric(name, slope.value * 1000, "bytes", low * 1000, high * 1000)


# --- driving the model -------------------------------------------------------------------------


@dataclass
class Phase:
    """Checkpoints of one phase: (calls done, reading) pairs, and its wall-clock window."""

    name: str
    calls: list[int] = field(default_factory=list)
    readings: list[Any] = field(default_factory=list)
    started: float = 0.0  # seconds on the sampler's clock
    ended: float = 0.0
    stopped_early: bool = False  # memory grew past the safety cap

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
) -> Phase:
    """Call ``call(i)`` until ``seconds`` pass or ``max_calls`` are done; read memory at ~FIT_POINTS checkpoints (or after every call)."""
    phase = Phase(name, started=clock())
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


def state_writes(ctx) -> dict[str, int]:
    ops = ctx.inventory.get("ops", {})
    return {op: n for op, n in sorted(ops.items()) if op.startswith(STATE_WRITE_OPS)}


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


# --- findings ----------------------------------------------------------------------------------


def input_lines(ctx) -> str:
    lines = []
    for spec in ctx.inputs.specs:
        shape = "unknown" if spec.shape is None else "[" + ", ".join("None" if d is None else str(d) for d in spec.shape) + "]"
        lines.append(f"#   {spec.name}: {spec.dtype} {shape}")
    return "\n".join(lines)


def direct_call_code(ctx) -> str:
    args = ", ".join(f'{s.name}=tf.constant(request["{s.name}"])' for s in ctx.inputs.specs)
    return (
        f'serve = tf.saved_model.load("{ctx.model.path}").signatures["{ctx.model.signature}"]  # load ONCE, at start-up\n'
        f"{input_lines(ctx)}\n"
        "for request in requests:\n"
        f"    outputs = serve({args})  # a direct call: no model.predict(), no new model per request\n"
        "    result = {k: v.numpy() for k, v in outputs.items()}  # keep numbers, not tensors or graphs"
    )


GPU_FIX_CODE = (
    "import os\n"
    'os.environ["TF_FORCE_GPU_ALLOW_GROWTH"] = "true"  # before TensorFlow touches the GPU\n'
    "import tensorflow as tf\n"
    'gpu = tf.config.list_physical_devices("GPU")[0]\n'
    "# Or cap what this process may take (MB), so a leak fails fast instead of starving neighbours:\n"
    "tf.config.set_logical_device_configuration(gpu, [tf.config.LogicalDeviceConfiguration(memory_limit=4096)])"
)


def growth_finding(ctx, which: str, growth: Growth, rate: float, available: int | None, evidence: dict, heap: Growth | None) -> Finding:
    """``which`` is "ram" (anonymous memory) or "gpu" (NVML)."""
    per_hour = Measure(growth.slope.value * rate * 3600, growth.slope.low * rate * 3600, growth.slope.high * rate * 3600)
    hours = available / per_hour.value if available else float("inf")
    writes = state_writes(ctx)
    python_share = heap.slope.value / growth.slope.value if heap is not None and growth.slope.value > 0 else 0.0
    if which == "gpu":
        cause = "GPU memory of this process grows with every call of one fixed shape"
    elif writes:
        cause = "the serving graph writes state on every call (" + ", ".join(f"{op} ×{n}" for op, n in writes.items()) + ")"
    elif python_share >= 0.5:
        cause = f"Python objects grow with the calls (tracemalloc: {python_share:.0%} of the growth)"
    else:
        cause = "native (TensorFlow) memory grows per call with no state writes in the graph: a leak or a runtime cache"
    per_1000 = growth.slope.value * 1000
    horizon = Measure(*(horizon_bytes(b, rate, available) for b in (growth.slope.value, growth.slope.low, growth.slope.high)))
    summary = (
        f"With one fixed input shape, {'GPU memory' if which == 'gpu' else 'memory'} grew {growth.slope.value / KIB:,.1f} KiB per call "
        f"(95% interval {growth.slope.low / KIB:,.1f}–{growth.slope.high / KIB:,.1f}) over {growth.steps:,} calls: "
        f"{per_1000 / MIB:,.1f} MB per 1,000 calls, {per_hour.value / MIB:,.0f} MB per hour at the measured {rate:,.0f} calls/s"
        + (f"; the {available / MIB:,.0f} MB available now would last {hours:,.1f} h." if available else ".")
        + f" Over a week of serving at that rate it takes {horizon.value / MIB:,.0f} MB"
        + (" (all the memory available: the server is OOM-killed first)." if available and horizon.value >= available else ".")
        + f" Likely cause: {cause}."
    )
    fix_text = (
        "Keep no per-call state in the serving path: export the model without the ops that append to variables or "
        "tables, load it once, call the signature directly (not `model.predict()` in a loop, not a new model per "
        "request) and keep outputs as NumPy values."
    )
    code = direct_call_code(ctx)
    if which == "gpu":
        fix_text += " On a GPU, also let TensorFlow grow its pool on demand or cap it, so growth shows up early."
        code += "\n\n" + GPU_FIX_CODE
    slug = "gpu-growth-fixed-shape" if which == "gpu" else "growth-fixed-shape"
    return Finding(
        id=f"{CHECK}/{slug}",
        check=CHECK,
        severity=severity_from_hours(hours),
        title=f"{'GPU memory' if which == 'gpu' else 'Memory'} grows by {growth.slope.value / KIB:,.1f} KiB per call",
        summary=summary,
        evidence={
            **evidence,
            "series": which,
            "cause": cause,
            "state_writes_in_serving_graph": writes,
            "bytes_per_call": growth.summary(),
            "mb_per_1000_calls": round(per_1000 / MIB, 3),
            "mb_per_hour": round(per_hour.value / MIB, 1),
            "calls_per_second": round(rate, 1),
            "available_mb": mb(available) if available else None,
            "hours_to_exhaust_available": round(hours, 2) if available else None,
            "mb_per_serving_week": mb(horizon.value),
            "savings_memory_bytes_means": "growth over a week of serving at the measured call rate, at most the memory available",
        },
        savings={"memory_bytes": horizon},
        effort=Effort("hours", 2.0, "Find and remove the per-call state, or change how requests call the model."),
        fix=Fix(fix_text, code),
        why="Memory that grows per call never comes back: the server slows, swaps, and is eventually OOM-killed.",
        verify="Re-run `tfaudit MODEL --checks memory`: the slope's interval should include zero (finding `memory/stable`).",
        confidence=0.9,
        risk=Risk("low", "Removing state changes behaviour only if something reads that state."),
    )


def new_shape_finding(ctx, per_shape: Measure, varies: str, shapes: int, wrapper: dict | None, evidence: dict) -> Finding:
    severity = severity_from_shape_bytes(per_shape.value)
    wrapper_text = ""
    if wrapper and wrapper["growth"]["growth"]:
        wrapper_text = (
            f" Through a plain `tf.function` wrapper, each new shape also retraced it and kept "
            f"{wrapper['bytes_per_new_shape_beyond_fixed'][0] / KIB:,.0f} KiB."
        )
    spec_lines = ",\n".join(
        f'    tf.TensorSpec([{", ".join("None" if d is None else str(d) for d in (s.shape or ()))}], tf.{s.dtype}, name="{s.name}")'
        for s in ctx.inputs.specs
    )
    code = (
        "# Pad or bucket requests to a few shapes, so the number of distinct shapes stays small:\n"
        "BUCKETS = (8, 16, 32, 64, 128)\n"
        "size = next(b for b in BUCKETS if b >= n)  # n = this request's " + varies + "\n\n"
        "# And if you wrap the model in a tf.function, give it the signature (no retrace per shape):\n"
        f"@tf.function(input_signature=[\n{spec_lines},\n])\n"
        f"def serve({', '.join(s.name for s in ctx.inputs.specs)}):\n"
        f"    return model.signatures[\"{ctx.model.signature}\"]({', '.join(f'{s.name}={s.name}' for s in ctx.inputs.specs)})"
    )
    return Finding(
        id=f"{CHECK}/growth-per-new-shape",
        check=CHECK,
        severity=severity,
        title=f"Each new input shape keeps {per_shape.value / KIB:,.0f} KiB",
        summary=(
            f"Calling the signature with {shapes} never-seen {varies}s kept {per_shape.value / KIB:,.1f} KiB per new shape "
            f"(95% interval {per_shape.low / KIB:,.1f}–{per_shape.high / KIB:,.1f}) beyond the fixed-shape growth: "
            f"{per_shape.value * 1000 / MIB:,.0f} MB per 1,000 distinct shapes. It stops once shapes repeat, so bound the "
            f"number of shapes.{wrapper_text}"
        ),
        evidence={**evidence, "bytes_per_new_shape": [round(per_shape.value), round(per_shape.low), round(per_shape.high)], "wrapper": wrapper},
        effort=Effort("hours", 2.0, "Bucket or pad request shapes; add an input_signature to any wrapper."),
        fix=Fix("Bound the number of distinct input shapes (pad or bucket), and give wrappers an `input_signature`.", code),
        why="Per-shape caches grow with every new shape a server sees; with free-form lengths they never stop growing.",
        verify="Replay your real request shapes and watch memory flatten once every bucket has been seen.",
        confidence=0.7,
        risk=Risk("low", "Padding changes outputs only for models that do not mask the padding."),
    )


# --- the check ---------------------------------------------------------------------------------


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


@dataclass
class Measured:
    warmup: Phase
    fixed: Phase
    heap: Phase | None  # None when tracemalloc was already on
    batch_peaks: dict[int, int]  # batch size -> peak memory bytes
    varies: str  # "batch size", "sequence length", or "" when the signature has no dynamic dims
    varied: Phase | None
    wrapper_memory: list[int]  # memory before and after each new shape through a plain tf.function
    wrapper_traces: int
    tf_gpu: dict[str, Any]  # phase -> TF allocator stats (None without a TF GPU)
    seconds: float = 0.0


class MemoryCheck(Check):
    meta = CheckMeta(
        id=CHECK,
        title="Memory growth and peak per batch size",
        description=(
            "Calls the model repeatedly with one shape, with new shapes and per batch size; fits memory growth per "
            "call and per new shape (Theil–Sen with an interval) and reports peaks per batch size."
        ),
    )

    def run(self, ctx) -> Iterator:
        from tfaudit.engine.resources import ResourceSampler

        budget = ctx.budget.name if ctx.budget.name in FIXED_SECONDS else "standard"
        try:
            fixed_inputs = as_tensors(ctx.inputs.make())
        except InputError as exc:
            raise SkipCheck(f"cannot make inputs: {exc}") from None
        # options["nvml"] lets tests put a fake at the NVML boundary; real runs use pynvml.
        sampler = ResourceSampler(interval_s=SAMPLER_INTERVAL_S, nvml=ctx.options.get("nvml"))
        timeline = Timeline(sampler)
        sampler.start()
        try:
            measured = yield from self._measure(ctx, budget, fixed_inputs, sampler, timeline)
        finally:
            sampler.stop()
        yield from timeline.emit("end")
        yield Progress(1.0, "done")
        yield from judge(ctx, budget, measured, sampler)

    def _measure(self, ctx, budget: str, fixed_inputs: dict, sampler, timeline: Timeline) -> Iterator:
        """Yields progress and samples; returns a Measured."""
        import psutil

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
        cap = min(MAX_PHASE_GROWTH_BYTES, MAX_PHASE_GROWTH_SHARE * psutil.virtual_memory().available)
        start_memory = sampler.sample_now().memory_bytes
        fixed = drive(
            "fixed", call_fixed, sampler.sample_now, clock, seconds=FIXED_SECONDS[budget],
            max_calls=FIXED_MAX_CALLS[budget], give_up=lambda reading: reading.memory_bytes - start_memory > cap,
        )
        timeline.baseline = fixed.readings[0].memory_bytes
        yield from timeline.emit("fixed")
        yield per_1000_calls("growth_bytes_per_1000_calls", fit_growth(fixed.calls, fixed.memory()))
        gpu_readings = [r.gpu_bytes for r in fixed.readings]
        if all(g is not None for g in gpu_readings):
            yield per_1000_calls("gpu_growth_bytes_per_1000_calls", fit_growth(fixed.calls, gpu_readings))
        tf_gpu["fixed"] = allocator()

        yield Progress(0.5, "Python heap under tracemalloc")
        heap = heap_phase(call_fixed, clock, HEAP_SECONDS[budget])
        yield from timeline.emit("heap")

        yield Progress(0.6, "peak memory per batch size")
        batch_sizes = BATCH_SIZES[budget] if ctx.inputs.batch_dynamic else ()
        batch_peaks: dict[int, int] = {}
        for batch in batch_sizes or (None,):
            inputs = as_tensors(ctx.inputs.make(batch=batch))
            high_water_mark = reset_peak()
            phase = drive("batch", lambda _: materialise(serve(**inputs)), sampler.sample_now, clock, seconds=BATCH_SECONDS[budget], max_calls=10_000)
            in_window = [p.memory_bytes for p in list(sampler.points) if phase.started <= p.t <= phase.ended]
            between_samples = [peak_anonymous_bytes() or 0] if high_water_mark else []
            batch_peaks[batch or signature_batch(ctx)] = max(in_window + phase.memory() + between_samples)
        for batch, peak in batch_peaks.items():
            yield Sample("peak_mb_by_batch", batch, mb(peak), "batch")
        yield Metric("peak_memory_mb", mb(max(batch_peaks.values())), "MB")
        yield from timeline.emit("batch")
        tf_gpu["batch"] = allocator()

        yield Progress(0.75, "calling with new shapes")
        varies, shapes = new_shape_stream(ctx, batch_sizes, NEW_SHAPES[budget])
        varied, wrapper_memory, wrapper_traces = None, [], 0
        if shapes:
            if varies == "sequence length":  # run the longest first, so the stream's working set is already paid for
                materialise(serve(**as_tensors(ctx.inputs.make(seq=MAX_SEQUENCE_LENGTH))))
            feeds = [as_tensors(ctx.inputs.make(batch=b, seq=s)) for b, s in shapes]
            varied = drive("varied", lambda i: materialise(serve(**feeds[i])), sampler.sample_now, clock, seconds=3600, max_calls=len(feeds), every_call=True)
            yield from timeline.emit("varied")
            wrapper_memory, wrapper_traces = wrapper_phase(serve, feeds[: WRAPPER_SHAPES[budget]], sampler.sample_now)
            yield from timeline.emit("wrapper")
        tf_gpu["varied"] = allocator()
        return Measured(warmup, fixed, heap, batch_peaks, varies, varied, wrapper_memory, wrapper_traces, tf_gpu, clock())


def sustained_rate(phase: Phase) -> float:
    """Calls per second when the host disturbed the loop least: the 90th percentile over checkpoint intervals.

    The phase's average rate swung 6× between audits of one leaking model on a shared host (677 to
    4,291 calls/s), and with it the hours to exhaustion across the 1 h severity threshold.
    """
    times, calls = np.array([r.t for r in phase.readings]), np.array(phase.calls, dtype=float)
    spans, done = np.diff(times), np.diff(calls)
    usable = spans > 0
    if usable.sum() < 5:
        return phase.n_calls / phase.seconds if phase.seconds > 0 else 0.0
    return float(np.percentile(done[usable] / spans[usable], 90))


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


def measure_list(measure: Measure) -> list[int]:
    return [round(measure.value), round(measure.low), round(measure.high)]


def judge(ctx, budget: str, m: Measured, sampler) -> Iterator[Finding]:
    """Fit the slopes, build the evidence, and yield the findings (``memory/stable`` when nothing grew)."""
    import psutil

    from tfaudit.engine.resources import gpu_status

    points = list(sampler.points)
    fixed = m.fixed
    memory_growth = fit_growth(fixed.calls, fixed.memory())
    gpu_readings = [r.gpu_bytes for r in fixed.readings]
    has_gpu = all(g is not None for g in gpu_readings)
    gpu_growth = fit_growth(fixed.calls, gpu_readings) if has_gpu else None
    heap_growth = fit_growth(m.heap.calls, m.heap.readings, min_step_bytes=0) if m.heap else None
    rate = sustained_rate(fixed)
    evidence: dict[str, Any] = {
        "memory_measured": MEMORY_MEASURED,
        "baseline_memory_mb": mb(fixed.readings[0].memory_bytes),
        "peak_memory_mb": mb(max(p.memory_bytes for p in points)),
        "peak_rss_mb": mb(max(p.rss_bytes for p in points)),
        "warmup_calls": m.warmup.n_calls,
        "fixed_shape": {
            **memory_growth.summary(), "calls": fixed.n_calls, "seconds": round(fixed.seconds, 3),
            "calls_per_second": round(rate, 1), "stopped_early_at_growth_cap": fixed.stopped_early,
        },
        "python_heap_bytes_per_call": heap_growth.summary() if heap_growth else "not measured: tracemalloc was already running",
        "peak_memory_mb_by_batch": {str(b): mb(p) for b, p in m.batch_peaks.items()},
        "gpu_status": "ok" if has_gpu else (sampler.gpu_reason or "no GPU"),
        "check_seconds": round(m.seconds, 2),
        "budget": budget,
    }
    if has_gpu:
        gpu_peak = max(p.gpu_bytes for p in points if p.gpu_bytes is not None)
        evidence["gpu"] = {"baseline_mb": mb(gpu_readings[0]), "peak_mb": mb(gpu_peak), "fixed_shape": gpu_growth.summary()}
    if any(m.tf_gpu.values()):
        evidence["tf_gpu_allocator_by_phase"] = m.tf_gpu

    per_shape, shape_growth_significant, wrapper = None, False, None
    if m.varied is not None:
        varied_growth = fit_growth(np.arange(len(m.varied.calls)), m.varied.memory(), min_step_bytes=MIN_BYTES_PER_SHAPE)
        wrapper_growth = fit_growth(np.arange(len(m.wrapper_memory)), m.wrapper_memory, min_step_bytes=MIN_BYTES_PER_SHAPE)
        # Every call of the varied stream is also a call: take the fixed-shape growth per call out.
        per_shape = beyond(varied_growth.slope, memory_growth.slope)
        wrapper = {
            "shapes": len(m.wrapper_memory) - 1,
            "traces": m.wrapper_traces,
            "growth": wrapper_growth.summary(),
            "bytes_per_new_shape_beyond_fixed": measure_list(beyond(wrapper_growth.slope, memory_growth.slope)),
        }
        evidence["new_shapes"] = {
            "varies": m.varies,
            "shapes": len(m.varied.calls) - 1,
            "growth_per_call_with_new_shapes": varied_growth.summary(),
            "bytes_per_new_shape_beyond_fixed": measure_list(per_shape),
            "wrapper": wrapper,
        }
        shape_growth_significant = varied_growth.significant and per_shape.low >= MIN_BYTES_PER_SHAPE
    else:
        evidence["new_shapes"] = "not measured: the signature has no dynamic dims, so every request has one shape"

    found = False
    if memory_growth.significant:
        found = True
        available = int(psutil.virtual_memory().available)
        yield growth_finding(ctx, "ram", memory_growth, rate, available, evidence, heap_growth)
    if gpu_growth is not None and gpu_growth.significant:
        found = True
        gpu_total = max(g.memory_total_bytes for g in gpu_status(ctx.options.get("nvml")).gpus)
        yield growth_finding(ctx, "gpu", gpu_growth, rate, gpu_total - gpu_readings[-1], evidence, None)
    if shape_growth_significant:
        found = True
        yield new_shape_finding(ctx, per_shape, m.varies, len(m.varied.calls) - 1, wrapper, evidence)
    if not found:
        yield stable_finding(memory_growth, evidence)


def stable_finding(growth: Growth, evidence: dict) -> Finding:
    return Finding(
        id=f"{CHECK}/stable",
        check=CHECK,
        severity="info",
        title="Memory stays flat under repeated calls",
        summary=(
            f"Memory changed {growth.slope.value:,.0f} bytes per call (95% interval {growth.slope.low:,.0f}–"
            f"{growth.slope.high:,.0f}) over {growth.steps:,} calls of one shape: no growth worth fixing "
            f"(threshold {MIN_BYTES_PER_CALL:,} bytes per call). Peak {evidence['peak_memory_mb']:,.1f} MB (anonymous memory)."
        ),
        evidence=evidence,
        effort=Effort("minutes", 0.1, "Nothing to do."),
        fix=Fix("Nothing to fix; use the per-batch-size peaks to size the serving container."),
        why="Knowing the peak per batch size sets container memory limits without guessing.",
        confidence=0.8,
    )
