"""The input pipeline check's findings: what each says, why it matters, how to fix and verify it."""
from __future__ import annotations

from tfaudit.api import Effort, PracticalMinimum, Risk, Rule, catalogue

# The least speed-up of the pipeline worth a change: a tenth of its time per element (the same minimum as a model's call).
PIPELINE_MINIMUM = PracticalMinimum(0.10, why="10 % of the pipeline's time per element")
# XProf's input-pipeline analyzer: a step that waits under 5 % of its time on input is not input-bound; over 20 %, highly.
INPUT_BOUND_SHARE = 0.05
HIGHLY_INPUT_BOUND_SHARE = 0.20
# A buffer that holds a tenth of the host's memory is one to size on purpose (on a smaller host it is what runs out);
# a prefetch, which every pipeline has, is listed from a hundredth.
BUFFER_SHARE_OF_MEMORY = 0.10
PREFETCH_LISTED_SHARE = 0.01
# XProf's input-pipeline analyzer: a GetNext that returns within 50 µs means the pipeline kept ahead of its consumer.
GETNEXT_READY_MS = 0.05
# Memory that grows with the elements delivered (the memory check's lines for a model's calls, per element here):
MIN_GROWTH_BYTES_PER_ELEMENT = 1024  # about 1 GB per million elements
MIN_PASS_GROWTH_BYTES = 2**20  # over the first pass, so a page or an allocator's step alone is not growth
GROWTH_PERSISTENCE = 0.5  # of the whole pass's rate, still grown in its second half: buffers that filled once are not growth
HOURS_TO_EXHAUST = (("critical", 1.0), ("high", 24.0), ("medium", 24.0 * 7))  # the hours the memory available now lasts
# Under a mebibyte, a pass's reads are not worth a word (milliseconds even from a disk); a read is cold when
# at least half its bytes came from storage rather than the OS page cache.
READS_WORTH_SAYING_BYTES = 2**20
COLD_READ_SHARE = 0.5

# tf.data.Options the audit sets one at a time on the returned dataset: (slug, what it is called, why it can pay, risk).
OPTIONS = (
    ("deterministic", "elements out of order",
     "A parallel stage that keeps order holds back every element finished before the next one due; without order it "
     "hands each out as it is done.",
     Risk("medium", "Elements come out in another order from run to run: fine for training, not where outputs must line up "
                    "with the inputs or a run must repeat exactly.")),
    ("intra-op-parallelism", "one thread per op",
     "Each op a pipeline runs may use several threads of its own; with many elements in flight at once, one thread each "
     "keeps them from contending.",
     Risk("none", "The same elements in the same order.")),
    ("private-threadpool", "a thread pool of its own",
     "A pool of its own keeps the pipeline's work from queueing behind the model's ops in the shared pool.",
     Risk("none", "The same elements in the same order; the threads are the pipeline's alone.")),
    ("autotune", "AUTOTUNE switched",
     "AUTOTUNE tunes parallelism and buffers as it runs; on small, cheap elements its own bookkeeping can cost more than "
     "it finds, and where the code switched it off it may find what the code left out.",
     Risk("low", "The same elements in the same order; parallelism then follows the code (or AUTOTUNE) on every host.")),
    ("autotune-cpu-budget", "half the cores for the pipeline",
     "AUTOTUNE sizes the pipeline's parallelism to every core of the host; beside a model or step computing on the same "
     "cores, a smaller budget leaves the step cores of its own.",
     Risk("low", "The same elements in the same order; where the step runs elsewhere (a GPU), the pipeline may run slower.")),
    ("map-parallelization", "map_parallelization on",
     "TensorFlow runs stateless maps in parallel by itself unless the options turn it off.",
     Risk("none", "Only stateless maps are changed: the same elements in the same order.")),
)

FIX_WRITER = "pipeline_options.py (every fix measured to pay, applied together and timed again)"
VERIFY = "Run `tfaudit data $target` again: the finding is gone and elements/s rose by about the measured factor."
# What every fix timed against the pipeline as returned shares: how it is verified, decided, ranked and written.
TIMED_FIX = dict(verify=VERIFY, minimum=PIPELINE_MINIMUM.why, per="element", fix_writer=FIX_WRITER,
                 severity_rule="high when the speed-up's interval lies at 2× or more, medium past the minimum")

RULES = catalogue(
    Rule(
        id="data/slow-stage",
        kind="fact",
        severity="info",
        title="The slowest stage is `$kind` at $where: $stage_ms ms of each element's $total_ms ms",
        summary="The pipeline delivers $rate elements/s [$rate_low–$rate_high]; over $scope, the first element took $first_ms ms, "
                "GetNext p50 $p50_ms ms and p99 $p99_ms ms ($ready_share within $ready_ms ms), $cores cores busy.$reads Timed prefix by "
                "prefix from the source, throughput drops most at `$kind` ($where): from $before_rate to $after_rate "
                "elements/s, $share of the pipeline's time per element. `$code`$ran$not_timed",
        why="A pipeline runs no faster than its slowest stage; a fix elsewhere changes little.",
        fix="Make this stage cheaper or run it in parallel: `num_parallel_calls=tf.data.AUTOTUNE` on a map or interleave, "
            "batch before a per-element map (vectorise), cache what does not change after it, or move work out of "
            "`tf.py_function`.",
        example="$example",
        verify=VERIFY,
        effort=Effort("hours", 1, "Changing one stage of the input code."),
        severity_rule="info: where the time goes, in every pipeline of two stages or more; the fixes measured to pay are "
                      "findings of their own",
    ),
    Rule(
        id="data/read-once",
        kind="fact",
        severity="info",
        title="Read once: only the first pass of `$target` was measured",
        summary="A second iterator over the dataset gave no element (a stream read once, like a generator over a queue): "
                "its stages, the fixes and any model loop were not timed. Over $scope, it delivered $rate elements/s; the "
                "first element took $first_ms ms, GetNext p50 $p50_ms ms and p99 $p99_ms ms ($ready_share within $ready_ms "
                "ms), $cores cores busy.$reads$ran",
        why="Timing a stage or a fix needs the same elements again; a stream gives them once.",
        fix="Give `tfaudit data` a factory that can be read again: the same stages over a sample of the stream written to "
            "files, or a generator function that opens the stream each time it is called.",
        example="dataset = tf.data.Dataset.from_generator(open_stream, output_signature=spec)  # open_stream() opens it anew",
        verify=VERIFY,
        effort=Effort("minutes", 0.5, "A factory over a sample, for the audit."),
        severity_rule="info: what was measured, and why nothing more was",
    ),
    Rule(
        id="data/parallel-map",
        severity="medium",
        title="Sequential $stages: in parallel the pipeline is $speedup× faster",
        summary="Each stage that runs one element at a time was built again with `num_parallel_calls=tf.data.AUTOTUNE` (the "
                "same function) and the pipeline timed in turn against it as returned: $decision.",
        why="A map without num_parallel_calls runs one element at a time unless TensorFlow's map_parallelization rewrites "
            "it, which it does only for stateless functions: tf.py_function and random ops stay sequential.",
        fix="Pass `num_parallel_calls=tf.data.AUTOTUNE` to each of these stages; keep `deterministic` as it is unless order "
            "does not matter.",
        example="$example",
        effort=Effort("minutes", 0.25, "One argument on one line."),
        risk=Risk("none", "The same function on the same elements, in the same order (deterministic stays on)."),
        **TIMED_FIX,
    ),
    Rule(
        id="data/prefetch",
        severity="medium",
        title="A final `prefetch(tf.data.AUTOTUNE)` makes the pipeline $speedup× faster",
        summary="`.prefetch(tf.data.AUTOTUNE)` added after the last stage, timed in turn against the pipeline as returned: "
                "$decision.",
        why="Prefetching lets the pipeline prepare the next elements while its consumer works on this one. TensorFlow "
            "injects one by itself unless `inject_prefetch` is off: this was measured with your options as they are.",
        fix="End the pipeline with `.prefetch(tf.data.AUTOTUNE)`.",
        example="dataset = dataset.prefetch(tf.data.AUTOTUNE)",
        effort=Effort("minutes", 0.1, "One line."),
        risk=Risk("none", "The same elements in the same order; buffers take memory (autotuned within the RAM budget)."),
        **TIMED_FIX,
    ),
    Rule(
        id="data/buffer-memory",
        kind="fact",
        severity="info",
        title="The pipeline's buffers hold $total: $largest",
        summary="$buffers. The first pass grew the process's anonymous memory by $growth (from $before to a peak of $peak).",
        why="A shuffle buffer holds buffer_size elements of its input whole, a prefetch buffer as many elements as AUTOTUNE "
            "(or the code) lets it; with large elements (decoded images, long sequences) they are most of the pipeline's "
            "memory, on every worker that runs it.",
        fix="Shuffle before the stage that makes elements large (shuffle file names or encoded records, then decode), or "
            "lower buffer_size: randomness needs a buffer of a few batches' worth, not of the dataset. A prefetch of large "
            "elements needs a buffer of one or two: `prefetch(2)`, or `options.autotune.ram_budget` to bound AUTOTUNE's.",
        example="$example",
        verify="Run `tfaudit data $target` again: the buffer's bytes and the memory growth drop.",
        effort=Effort("hours", 1, "Moving a shuffle or changing its buffer size; check the training curve is unchanged."),
        risk=Risk("low", "A smaller or earlier shuffle mixes differently: check the model trains as well."),
        severity_rule=f"medium when the buffers hold {BUFFER_SHARE_OF_MEMORY:.0%} or more of the host's memory, else info (a "
                      f"prefetch alone is listed from {PREFETCH_LISTED_SHARE:.0%} of it)",
    ),
    Rule(
        id="data/memory-growth",
        kind="fact",
        severity="medium",
        title="The pipeline's memory grows $per_1000 per 1,000 elements",
        summary="Over $scope, the process's anonymous memory grew $kib KiB per element [$low_kib–$high_kib] ($readings readings "
                "between GetNexts, a Theil–Sen slope), $grown in all, and still grew in the pass's second half. $outlook",
        why="Memory that grows with every element ends the run where it meets the host's limit: in the middle of an epoch, "
            "on every worker that runs the pipeline.",
        fix="Growth that stops: keep less of each element — cache where elements are small (before the stage that decodes "
            "or enlarges them), or to a file (`.cache(filename)`) when an epoch does not fit in memory. Growth for ever: find "
            "what keeps each element — a Python list or dict a `tf.py_function` or `from_generator` fills, a lookup table or "
            "a variable that grows, a `.cache()` of a dataset that never ends.",
        example="$example",
        verify="Run `tfaudit data $target` again: no growth (or, for a cache, one that fits).",
        effort=Effort("hours", 2, "Finding what keeps each element, or where to cache."),
        risk=Risk("low", "Removing kept state changes what the pipeline gives only if something reads that state."),
        severity_rule="growth that stops (a cache of known length; a whole dataset that passes 3 to 5 over it grow no "
                      "further): high when what it holds passes the memory available now, medium past "
                      f"{BUFFER_SHARE_OF_MEMORY:.0%} of the host's memory, else info; any other growth: from the hours the memory "
                      "available now lasts at the first pass's elements/s, "
                      + ", ".join(f"< {hours:g} h {level}" for level, hours in HOURS_TO_EXHAUST) + ", else low",
        minimum=f"{MIN_GROWTH_BYTES_PER_ELEMENT // 1024} KiB per element (about 1 GB per million elements), "
                f"{MIN_PASS_GROWTH_BYTES // 2**20} MiB over the pass, still growing in its second half at "
                f"{GROWTH_PERSISTENCE:.0%} of the rate",
    ),
    Rule(
        id="data/input-bound",
        kind="fact",
        severity="medium",
        title="Input-bound ($step_kind): $consumer waits $share of each step",
        summary="Fed by the pipeline, each step of $consumer waited $share [$share_low–$share_high] of its $step_ms ms on "
                "GetNext: the pipeline delivers $pipeline_rate elements/s against the step's $model_rate.$caveat",
        why="While the model waits for its next element, the accelerator or cores it runs on do nothing: the pipeline "
            "sets the speed.",
        fix="Make the pipeline faster where the other findings say (its slow stage, parallel maps, a prefetch), or run it "
            "on more cores (tf.data service) until it keeps ahead of the model.",
        verify="Run the same `tfaudit data $target` again: the wait falls under 5 % of a step.",
        effort=Effort("hours", 2, "The fixes the other findings name, then measuring again."),
        severity_rule=f"high when the wait's interval lies at {HIGHLY_INPUT_BOUND_SHARE:.0%} of a step or more, medium at "
                      f"{INPUT_BOUND_SHARE:.0%} or more (XProf's thresholds); model-bound below",
    ),
    Rule(
        id="data/model-bound",
        kind="fact",
        severity="info",
        title="Model-bound ($step_kind): $consumer waits $share of each step",
        summary="Fed by the pipeline, each step of $consumer waited $share [$share_low–$share_high] of its $step_ms ms on "
                "GetNext, under the $threshold that makes a step input-bound: the pipeline delivers $pipeline_rate "
                "elements/s against the step's $model_rate.$caveat",
        why="A pipeline that keeps ahead of the model costs nothing more to speed up; the model is what to work on.",
        fix="Nothing to change in the pipeline for this step: make the step faster (`tfaudit MODEL` audits a model).",
        effort=Effort("minutes", 0.1, "Reading the numbers."),
        severity_rule=f"info: the wait's interval lies under {INPUT_BOUND_SHARE:.0%} of a step",
    ),
    *(Rule(
        id=f"data/{slug}",
        severity="medium",
        title=f"{name.capitalize()}: the pipeline is $speedup× faster",
        summary="`$setting` set on the returned dataset and timed in turn against it as returned: $decision.",
        why=why,
        fix="Set `$setting` in the options the pipeline ends with.",
        example="options = tf.data.Options()\n$setting\ndataset = dataset.with_options(options)",
        effort=Effort("minutes", 0.25, "Two lines where the pipeline is made."),
        risk=risk,
        **TIMED_FIX,
    ) for slug, name, why, risk in OPTIONS),
    Rule(
        id="data/cache",
        severity="medium",
        title="`.cache()` after `$kind` at $where makes the pipeline $speedup× faster from the second pass on (it holds $memory)",
        summary="A cache after the slowest stage, filled by one pass ($elements elements, $memory in memory), then timed in "
                "turn against the pipeline as returned: $decision.$frozen",
        why="Work that gives the same elements every epoch is done once: from the second pass on, the stages up to the "
            "cache are read from memory.",
        fix="Call `.cache()` right after this stage (`.cache(filename)` when it does not fit in memory), before any "
            "random augmentation and before `shuffle`.",
        example="$example",
        effort=Effort("minutes", 0.25, "One line; check that nothing before it must change from epoch to epoch."),
        risk=Risk("none", "The same elements in the same order; the memory it holds, on every worker."),
        **TIMED_FIX,
    ),
)
