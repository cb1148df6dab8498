"""The memory check's findings: what each says, why it matters, how to fix and verify it."""
from __future__ import annotations

from tfaudit.api import Effort, Risk, Rule, catalogue

KIB = 1024
MIB = 1024 * 1024
# When a slope counts as growth (user minimums; growth.py applies them):
MIN_BYTES_PER_CALL = 1 * KIB  # about 1 GB per million calls
MIN_PHASE_GROWTH_BYTES = 1 * MIB  # over the phase, so a page or an allocator's step alone is not a leak
PERSISTENCE = 0.5  # of the whole phase's rate, still grown in its second half: a one-off step is not a leak
MIN_BYTES_PER_SHAPE = 4 * KIB  # per new input shape, beyond the fixed-shape growth: an allocator's rounding is not a cache
HOURS_TO_EXHAUST = (("critical", 1.0), ("high", 24.0), ("medium", 24.0 * 7))  # growth: the hours the memory available now lasts
BYTES_PER_SHAPE = (("high", 100 * MIB), ("medium", 10 * MIB), ("low", 1 * MIB))  # growth per new shape: the bytes each one keeps


def hours_said(hours: float) -> str:
    return f"{hours / 24:g} days" if hours > 24 else f"{hours:g} h"


SEVERITY_BY_HOURS = ("from the hours until the growth, at the measured call rate, exhausts the memory available now: "
                     + ", ".join(f"< {hours_said(hours)} {severity}" for severity, hours in HOURS_TO_EXHAUST) + ", else low")
SEVERITY_BY_SHAPE_BYTES = ("from the low end of the 95 % interval of the bytes kept per new shape: "
                           + ", ".join(f"< {limit // MIB} MiB {lower}" for (_, limit), lower in
                                       zip(reversed(BYTES_PER_SHAPE), ("info", "low", "medium"))) + ", else high")
GROWTH_SUMMARY = (
    "With one fixed input shape, $memory grew $kib KiB per call (95% interval $low_kib–$high_kib) over $calls calls: "
    "$mb_per_1000 MB per 1,000 calls, $mb_per_hour MB per hour at the measured $rate calls/s$lasts Over a week of serving "
    "at that rate it takes $week_mb MB$exhausts Likely cause: $cause."
)
LASTS = "; the $available_mb MB available now would last $hours h."
EXHAUSTS = " (all the memory available: the server is OOM-killed first)."
SLOPE_METHOD = "Theil–Sen slope (Sen's rank-based)"
CAUSE_GPU = "GPU memory of this process grows with every call of one fixed shape"
CAUSE_STATE = "the serving graph writes state on every call ($writes)"
CAUSE_PYTHON = "Python objects grow with the calls (tracemalloc: $share of the growth)"
CAUSE_NATIVE = "native (TensorFlow) memory grows per call with no state writes in the graph: a leak or a runtime cache"
DIRECT_CALL = (
    'serve = tf.saved_model.load("$path").signatures["$signature"]  # load ONCE, at start-up\n'
    "$input_lines\n"
    "for request in requests:\n"
    "    outputs = serve($args)  # a direct call: no model.predict(), no new model per request\n"
    "    result = {k: v.numpy() for k, v in outputs.items()}  # keep numbers, not tensors or graphs"
)
GPU_POOL = (
    "import os\n"
    'os.environ["TF_FORCE_GPU_ALLOW_GROWTH"] = "true"  # before TensorFlow touches the GPU\n'
    "import tensorflow as tf\n"
    'gpu = tf.config.list_physical_devices("GPU")[0]\n'
    "# Or cap what this process may take (MB), so a leak fails fast instead of starving neighbours:\n"
    "tf.config.set_logical_device_configuration(gpu, [tf.config.LogicalDeviceConfiguration(memory_limit=4096)])"
)
NO_STATE = (
    "Keep no per-call state in the serving path: export the model without the ops that append to variables or "
    "tables, load it once, call the signature directly (not `model.predict()` in a loop, not a new model per "
    "request) and keep outputs as NumPy values."
)
WRAPPER_RETRACES = " Through a plain `tf.function` wrapper, each new shape also retraced it and kept $kib KiB."


def growth_rule(finding_id: str, title: str, fix: str, example: str) -> Rule:
    return Rule(
        id=finding_id,
        severity="low",
        title=title,
        summary=GROWTH_SUMMARY,
        why="Memory that grows per call never comes back: the server slows, swaps, and is eventually OOM-killed.",
        fix=fix,
        example=example,
        verify="Re-run `tfaudit MODEL --checks memory`: the slope's interval should include zero (finding `memory/stable`).",
        effort=Effort("hours", 2.0, "Find and remove the per-call state, or change how requests call the model."),
        risk=Risk("low", "Removing state changes behaviour only if something reads that state."),
        severity_rule=SEVERITY_BY_HOURS,
        minimum=(f"{MIN_BYTES_PER_CALL // KIB} KiB per call (about 1 GB per million calls), {MIN_PHASE_GROWTH_BYTES // MIB} MiB over "
                 f"the phase, still growing in its second half at {PERSISTENCE:.0%} of the rate"),
    )


RULES = catalogue(
    growth_rule("memory/growth-fixed-shape", "Memory grows by $kib KiB per call", NO_STATE, DIRECT_CALL),
    growth_rule(
        "memory/gpu-growth-fixed-shape", "GPU memory grows by $kib KiB per call",
        NO_STATE + " On a GPU, also let TensorFlow grow its pool on demand or cap it, so growth shows up early.",
        DIRECT_CALL + "\n\n" + GPU_POOL,
    ),
    Rule(
        id="memory/growth-per-new-shape",
        severity="info",
        title="Each new input shape keeps $kib KiB",
        summary=(
            "Calling the signature with $shapes never-seen ${varies}s kept $kib_1 KiB per new shape (95% interval "
            "$low_kib–$high_kib) beyond the fixed-shape growth: $mb_per_1000 MB per 1,000 distinct shapes. It stops once "
            "shapes repeat, so bound the number of shapes.$wrapper"
        ),
        why="Per-shape caches grow with every new shape a server sees; with free-form lengths they never stop growing.",
        fix="Bound the number of distinct input shapes (pad or bucket), and give wrappers an `input_signature`.",
        example=(
            "# Pad or bucket requests to a few shapes, so the number of distinct shapes stays small:\n"
            "BUCKETS = (8, 16, 32, 64, 128)\n"
            "size = next(b for b in BUCKETS if b >= n)  # n = this request's $varies\n\n"
            "# And if you wrap the model in a tf.function, give it the signature (no retrace per shape):\n"
            "@tf.function(input_signature=[\n$specs,\n])\n"
            "def serve($names):\n"
            '    return model.signatures["$signature"]($args)'
        ),
        verify="Replay your real request shapes and watch memory flatten once every bucket has been seen.",
        effort=Effort("hours", 2.0, "Bucket or pad request shapes; add an input_signature to any wrapper."),
        risk=Risk("low", "Padding changes outputs only for models that do not mask the padding."),
        severity_rule=SEVERITY_BY_SHAPE_BYTES,
        minimum=f"{MIN_BYTES_PER_SHAPE // KIB} KiB per new shape beyond the fixed-shape growth",
    ),
    Rule(
        id="memory/stable",
        kind="fact",
        severity="info",
        title="Memory stays flat under repeated calls",
        summary=(
            "Memory changed $slope bytes per call (95% interval $low–$high) over $steps calls of one shape: no growth "
            "worth fixing (threshold $threshold bytes per call). Peak $peak MB (anonymous memory)."
        ),
        why="Knowing the peak per batch size sets container memory limits without guessing.",
        fix="Nothing to fix; use the per-batch-size peaks to size the serving container.",
        effort=Effort("minutes", 0.1, "Nothing to do."),
        severity_rule="info: a measurement, nothing to fix",
    ),
)
