"""What the input pipeline check measures, in the worker: the pipeline's first pass (time to the first element, each
GetNext, CPU), each prefix's throughput, and each fix applied to the returned dataset, timed in turn against it."""
from __future__ import annotations

import math
import time
from typing import Any, Callable, Iterator

import numpy as np

from tfaudit.api import Progress, Sample, SkipCheck, compare_in_turn

from .catalogue import PIPELINE_MINIMUM
from .first_pass import (PASSES_AGAIN, SAMPLER_INTERVAL_S, downsample, element_bytes, file_reads, first_pass, passes_again, read_again,
                         reads_since)
from .judge import slow_stage, stage_costs

TAKE = {"quick": 2_000, "standard": 10_000, "thorough": 100_000}  # elements of the first pass, at most (--take)
FIRST_PASS_SECONDS = {"quick": 2.0, "standard": 6.0, "thorough": 30.0}
PREFIX_WINDOW_S = {"quick": 0.1, "standard": 0.3, "thorough": 1.0}
PREFIX_WINDOWS = {"quick": 5, "standard": 7, "thorough": 11}
PREFIX_WARMUP_S = 0.05
PROBE_MS = 2.0  # a prefix's elements are pulled in groups of about this much work (see prefix_rates)
PROBE_PULLS = 5
MAX_GROUP = 256
RATIO_INPUTS = 16  # input elements a stage's output is counted from, where its count per element is not its argument
RATIO_SECONDS = 2.0
CHUNK_MS = 50.0  # the least time one timed chunk of a comparison takes: long against a fresh iterator's start-up noise
MIN_CHUNK = 3
WARM_MS = 50.0  # pulled untimed from each fresh iterator first: its threads started, AUTOTUNE's first choices made
MIN_WARM = 2
GETNEXT_CHART_POINTS = 300
LOOP_SECONDS = {"quick": 1.5, "standard": 4.0, "thorough": 15.0}  # --model: the model alone, then fed by the pipeline
MIN_STEPS = 10
CACHE_FILL_SECONDS = {"quick": 3.0, "standard": 10.0, "thorough": 60.0}  # one pass fills a cache before it is timed
CACHE_MEMORY_SHARE = 0.5  # of the memory available: a cache that would take more is not tried
INFINITE = -1  # tf.data.INFINITE_CARDINALITY
READ_ONCE = ("the stages and the fixes: a second iterator over the dataset gave no element (a stream read once, like a "
             "generator over a queue), so only its first pass was measured")
QUICK_SKIPS_OPTIONS = "tf.data options (deterministic, threading, autotune): timed from --budget standard up, a comparison each"
NOT_TIMED_RAM_BUDGET = "AUTOTUNE's ram_budget: it bounds the buffers' memory, which these timed comparisons do not weigh"
NOT_TIMED_CPU_BUDGET = ("AUTOTUNE's cpu_budget: timed with --model or --step, beside a step that shares the cores (alone, AUTOTUNE "
                        "gives a stage no more parallelism than the cores, whatever the budget)")


def gather(ctx) -> Iterator:
    """Yields progress and the GetNext chart; returns the measurements ``judge`` decides from."""
    import tensorflow as tf

    pipeline = ctx.pipeline
    budget = ctx.budget.name if ctx.budget.name in TAKE else "standard"
    take = int(ctx.options.get("take") or TAKE[budget])
    inventory = pipeline.inventory()
    yield Progress(0.0, "first pass")
    reads = file_reads()
    with ctx.sampler(SAMPLER_INTERVAL_S) as sampler:
        before = sampler.sample_now().memory_bytes
        first = first_pass(pipeline.dataset, take, FIRST_PASS_SECONDS[budget])
        after = sampler.sample_now().memory_bytes
    if first["empty"]:
        raise SkipCheck("the dataset gave no element (an empty dataset, or every element filtered out)")
    first["reads"] = reads_since(reads)
    if first["exhausted"]:
        yield Progress(0.1, "passes again")
        first["pass_end_bytes"] = passes_again(pipeline.dataset, first, take, PASSES_AGAIN * FIRST_PASS_SECONDS[budget])
    first["memory"] = {"before_bytes": before, "peak_bytes": max([p.memory_bytes for p in sampler.points] + [after]),
                       "after_bytes": after}
    reads = file_reads()
    for index, ms in downsample(first.pop("getnext_ms_series"), GETNEXT_CHART_POINTS):
        yield Sample("getnext_ms", index, ms, "GetNext")

    if not read_again(pipeline.dataset):
        yield Progress(1.0, "done: the dataset gives its elements once")
        return {**measured_once(ctx, pipeline, first, inventory, budget, take), "later_reads": reads_since(reads)}
    options = pipeline.dataset.options()
    stages = []
    for stage in pipeline.stages:
        yield Progress(0.2 + 0.4 * stage.index / len(pipeline.stages), f"timing up to {stage.label}")
        rates = prefix_rates(stage.dataset.with_options(options), PREFIX_WINDOW_S[budget], PREFIX_WINDOWS[budget])
        stages.append({**stage.to_dict(), "rates": rates, "inputs_per_output": inputs_per_output(stage), **buffer_of(stage)})
    for cost in stage_costs(stages):  # in elements of the final dataset: a batch of 16 counts once, its 16 rows before it 16 times
        if cost["ms_per_final_element"] is not None:
            yield Sample("stage_rate", cost["stage"]["index"], 1000 / cost["ms_per_final_element"].value, cost["stage"]["kind"])

    loop = None
    if pipeline.consumer is not None:
        yield Progress(0.6, "the model (or your step) fed by the pipeline")
        loop = model_loop(pipeline, LOOP_SECONDS[budget])
    candidates = []
    cache, cache_why = cache_candidate(pipeline, stages, budget)
    prefetched = ends_prefetched(pipeline, first["tensorflow_ran"])
    parallel = runs_in_parallel(pipeline, first["tensorflow_ran"])
    for name, changed, variant in [*fix_candidates(pipeline, tf, budget != "quick", prefetched, parallel), *([cache] if cache else [])]:
        yield Progress(min(0.95, 0.6 + 0.05 * len(candidates)), f"timing {name.split(':')[-1]}")
        candidates.append({"fix": name, "stages": changed, **timed_against(pipeline.dataset, variant, ctx.budget, pipeline.consume)})
        if name == "cache":
            candidates[-1]["cache"] = cache_why
    yield Progress(1.0, "done")
    timed = {c["fix"] for c in candidates}
    return {
        **measured_once(ctx, pipeline, first, inventory, budget, take),
        "not_timed": [*not_timed(timed, prefetched, parallel), *options_not_timed(budget, pipeline.consumer is not None),
                      *([] if cache else [cache_why])],
        "loop": loop,
        "stages": stages,
        "candidates": candidates,
        "later_reads": reads_since(reads),
        "read_once": False,
    }


def measured_once(ctx, pipeline, first: dict[str, Any], inventory: dict[str, Any], budget: str, take: int) -> dict[str, Any]:
    """What the judge needs of a pipeline read once: its first pass, what it is, and the host's memory (the stages
    untimed, no fix tried: a second iterator gave no element)."""
    import psutil

    memory = psutil.virtual_memory()
    return {
        "not_timed": [READ_ONCE], "loop": None, "candidates": [], "read_once": True,
        "stages": [{**stage.to_dict(), "rates": [], "inputs_per_output": {"value": None, "how": READ_ONCE}} for stage in pipeline.stages],
        "target": pipeline.target,
        "budget": budget,
        "confidence": ctx.budget.confidence,
        "take": take,
        "take_given": bool(ctx.options.get("take")),
        "first_pass": first,
        "options": inventory["options"],
        "cardinality": inventory["cardinality"],
        "memory_caches": [{"index": s.index, "elements": int(s.dataset.cardinality())} for s in pipeline.stages
                          if s.kind == "cache" and not str(s.argument("filename", 0, "") or "")],
        "host_memory_bytes": int(memory.total),
        "available_memory_bytes": int(memory.available),
        "model": inventory["feeds_model"],
        "step": pipeline.step or None,
    }


def prefix_rates(dataset, window_s: float, windows: int) -> list[float]:
    """Elements a second of ``dataset`` (repeated: it never runs out), over ``windows`` windows after a warm-up.

    Pulled from Python one at a time, a fast stage would be timed at Python's pace (tens of µs a call), not its own:
    its elements are pulled in groups batched inside TensorFlow, as many as take about PROBE_MS.
    """
    probe, group = grouped(dataset)
    iterator = iter(probe)
    pull_for(iterator, PREFIX_WARMUP_S)
    rates = []
    for _ in range(windows):
        count, seconds = pull_for(iterator, window_s)
        rates.append(count * group / seconds)
    return rates


def grouped(dataset) -> tuple[Any, int]:
    """``dataset`` repeated, its elements batched in groups of about PROBE_MS of work (ragged where their shapes vary);
    ungrouped where they cannot be batched."""
    import tensorflow as tf

    repeated = dataset.repeat()
    iterator = iter(repeated)
    next(iterator)
    start = time.perf_counter()
    for _ in range(PROBE_PULLS):
        next(iterator)
    per_element_ms = (time.perf_counter() - start) * 1000 / PROBE_PULLS
    group = max(1, min(MAX_GROUP, int(PROBE_MS / max(per_element_ms, 1e-4))))
    if group == 1:
        return repeated, 1
    specs = tf.nest.flatten(dataset.element_spec)
    try:
        if all(isinstance(s, tf.TensorSpec) and s.shape.is_fully_defined() for s in specs):
            return repeated.batch(group), group
        return repeated.ragged_batch(group), group
    except Exception:  # noqa: BLE001 - elements nothing batches (sparse, nested datasets): pulled one by one
        return repeated, 1


def pull_for(iterator, seconds: float) -> tuple[int, float]:
    count, start = 0, time.perf_counter()
    while True:
        next(iterator)
        count += 1
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return count, elapsed


def buffer_of(stage) -> dict[str, Any]:
    """What a shuffle holds: its buffer_size elements of its input, each as large as the first one measured."""
    if stage.kind != "shuffle" or stage.call is None or stage.call.input is None:
        return {}
    try:
        size = int(stage.argument("buffer_size", 0))
        element = next(iter(stage.call.input))
    except (TypeError, ValueError, StopIteration):
        return {}
    return {"buffer": {"elements": size, "element_bytes": element_bytes(element), "bytes": size * element_bytes(element)}}


def inputs_per_output(stage) -> dict[str, Any]:
    """How many elements of the stage's input one of its elements stands for: its argument (batch), 1 (map, prefetch …),
    or counted from RATIO_INPUTS input elements run through the same call; None where it cannot be told."""
    if stage.index == 0:
        return {"value": None, "how": "the source"}
    declared = stage.declared_ratio()
    if declared is not None:
        return {"value": declared[0], "how": declared[1]}
    if stage.call is None or stage.call.input is None:
        return {"value": None, "how": "made inside a library call: not counted"}
    call = stage.call
    try:
        inputs = call.input.take(RATIO_INPUTS)
        given = int(inputs.cardinality())
        given = given if given >= 0 else sum(1 for _ in inputs)  # fewer than RATIO_INPUTS where the input is shorter
        rerun = getattr(type(call.input), call.method)(inputs, *call.args, **call.kwargs)
        outputs, start = 0, time.perf_counter()
        for _ in rerun:
            outputs += 1
            if time.perf_counter() - start > RATIO_SECONDS:
                return {"value": None, "how": f"not counted: {outputs} outputs of {given} inputs took over {RATIO_SECONDS:g} s"}
    except Exception as exc:  # noqa: BLE001 - a stage that cannot run on a shortened input is not counted, and says why
        return {"value": None, "how": f"not counted: {type(exc).__name__}"}
    if outputs == 0:
        return {"value": None, "how": f"no output from {given} inputs"}
    return {"value": given / outputs, "how": f"counted: {outputs} outputs from {given} inputs"}


def fix_candidates(pipeline, tf, with_options: bool, prefetched: str, parallel: str) -> Iterator[tuple[str, list[int], Any]]:
    """(fix, the stages it changes, the pipeline with it): every sequential map and interleave made parallel (unless
    ``parallel`` says why not), a final prefetch (unless ``prefetched`` does), and each tf.data option worth timing set
    alone ("option:SLUG:LINE")."""
    sequential = [s.index for s in pipeline.stages if s.sequential]
    variant = pipeline.rebuild({i: {"num_parallel_calls": tf.data.AUTOTUNE} for i in sequential}) if sequential and not parallel else None
    if variant is not None:
        yield "parallel", sequential, variant
    if not prefetched:
        yield "prefetch", [], pipeline.dataset.prefetch(tf.data.AUTOTUNE)
    for slug, setting, change in option_changes(pipeline.dataset.options(), pipeline.stages, pipeline.consumer is not None) if with_options else ():
        options = tf.data.Options()
        change(options)
        yield f"option:{slug}:{setting}", [], pipeline.dataset.with_options(options)


def cache_candidate(pipeline, stages: list[dict[str, Any]], budget: str) -> tuple[tuple[str, list[int], Any] | None, Any]:
    """``.cache()`` after the slow stage, filled by one pass first: (the candidate, what it holds) or (None, why not)."""
    import psutil

    costs = stage_costs(stages)
    index = slow_stage(costs)
    if index is None:
        return None, "a cache: no stage's cost could be told apart"
    stage = pipeline.stages[index]
    named = f"a cache after `{stage.kind}` ({stage.where or 'a library call'})"
    count = int(stage.dataset.cardinality())
    if count == INFINITE:
        return None, f"{named}: the stages up to it never end"
    if count > 0 and count / float(np.median(stages[index]["rates"])) > CACHE_FILL_SECONDS[budget]:
        return None, (f"{named}: one pass to fill it ({count:,} elements) takes ~{count / float(np.median(stages[index]['rates'])):,.0f} s "
                      f"here, more than the {budget} budget's {CACHE_FILL_SECONDS[budget]:g} s")
    cached = stage.dataset.cache()
    variant = pipeline.continued(index, cached)
    if variant is None:
        return None, f"{named}: a later stage was made inside a library call and cannot be made again"
    limit, start = CACHE_MEMORY_SHARE * psutil.virtual_memory().available, time.perf_counter()
    count, size = 0, 0
    for element in cached:  # the first pass fills it; every iterator after reads it
        count, size = count + 1, size + element_bytes(element)
        if time.perf_counter() - start > CACHE_FILL_SECONDS[budget]:
            return None, f"{named}: one pass to fill it takes more than the {budget} budget's {CACHE_FILL_SECONDS[budget]:g} s"
        if size > limit:
            return None, f"{named}: it would hold more than {CACHE_MEMORY_SHARE:.0%} of the memory available"
    changing = [f"`shuffle` at {s.where}" for s in pipeline.stages[:index + 1] if s.kind == "shuffle"]
    changing += [f"`{s.kind}` at {s.where} runs {', '.join(s.random_ops())}" for s in pipeline.stages[:index + 1] if s.random_ops()]
    return ("cache", [index], variant), {"elements": count, "bytes": size, "fill_seconds": round(time.perf_counter() - start, 2),
                                         "frozen": changing}


def option_changes(options, stages, consumed: bool) -> list[tuple[str, str, Callable[[Any], None]]]:
    """(option, the line that sets it, a setter of it on a tf.data.Options) for each option worth timing on this pipeline,
    from what it has now; AUTOTUNE's CPU budget halved only where a model or step (``consumed``) shares the cores."""
    import os

    parallel = any(s.kind in ("map", "interleave") and not s.sequential for s in stages)
    optimization = options.experimental_optimization
    cores = os.cpu_count() or 1
    autotune = options.autotune.enabled is False  # the value to time: the other one
    changes: list[tuple[str, str, Callable[[Any], None]]] = []
    if options.deterministic is not False and (parallel or optimization.map_parallelization is not False):
        changes.append(("deterministic", "options.deterministic = False", lambda o: setattr(o, "deterministic", False)))
    if options.threading.max_intra_op_parallelism != 1:
        changes.append(("intra-op-parallelism", "options.threading.max_intra_op_parallelism = 1",
                        lambda o: setattr(o.threading, "max_intra_op_parallelism", 1)))
    if not options.threading.private_threadpool_size:
        changes.append(("private-threadpool", f"options.threading.private_threadpool_size = {cores}",
                        lambda o: setattr(o.threading, "private_threadpool_size", cores)))
    changes.append(("autotune", f"options.autotune.enabled = {autotune}", lambda o: setattr(o.autotune, "enabled", autotune)))
    if consumed and cores >= 2 and options.autotune.enabled is not False and not options.autotune.cpu_budget:
        changes.append(("autotune-cpu-budget", f"options.autotune.cpu_budget = {cores // 2}",
                        lambda o: setattr(o.autotune, "cpu_budget", cores // 2)))
    if optimization.map_parallelization is False:
        changes.append(("map-parallelization", "options.experimental_optimization.map_parallelization = True",
                        lambda o: setattr(o.experimental_optimization, "map_parallelization", True)))
    return changes


def options_not_timed(budget: str, consumed: bool) -> list[str]:
    if budget == "quick":
        return [QUICK_SKIPS_OPTIONS]
    return [NOT_TIMED_RAM_BUDGET, *([] if consumed else [NOT_TIMED_CPU_BUDGET])]


def not_timed(timed: set[str], prefetched: str, parallel: str) -> list[str]:
    """The fixes not timed, and why: what TensorFlow already does, or what the pipeline already has."""
    reasons = []
    if "prefetch" not in timed:
        reasons.append(f"a final prefetch: {prefetched}")
    if "parallel" not in timed:
        reasons.append(f"parallel maps: {parallel or 'a stage to make parallel was made inside a library call'}")
    return reasons


SEQUENTIAL_NODES = ("Map", "Interleave")  # what TensorFlow runs one element at a time, as a fused MapAndBatch of parallelism 1


def runs_in_parallel(pipeline, ran: dict[str, Any]) -> str:
    """Why making the maps and interleaves parallel is not worth timing ("" when it is): none runs one element at a
    time as written, or TensorFlow already runs each in parallel (map_parallelization, read from what it ran)."""
    if not any(s.sequential for s in pipeline.stages):
        return "no map or interleave of this pipeline runs one element at a time as written"
    if ran.get("nodes") and not any(n["name"] in SEQUENTIAL_NODES or n.get("fixed", {}).get("parallelism") == 1 for n in ran["nodes"]):
        return ("TensorFlow already runs each map and interleave written without num_parallel_calls in parallel "
                "(its map_parallelization rewrite, for stateless functions)")
    return ""


def ends_prefetched(pipeline, ran: dict[str, Any]) -> str:
    """Why a final prefetch is not worth timing ("" when it is): the pipeline ends with one, yours or the one TensorFlow
    injected (read from what it ran; from the options where it did not say)."""
    if next((s.kind for s in reversed(pipeline.stages) if s.kind != "with_options"), "") == "prefetch":
        return "the pipeline ends with one"
    nodes = {n["id"]: n for n in ran.get("nodes", [])}
    root = next((n for n in nodes.values() if n["name"] == "Root"), None)
    if root is not None and root["inputs"]:
        last = nodes.get(root["inputs"][0], {}).get("name", "")
        return "TensorFlow added one (inject_prefetch)" if last == "Prefetch" else ""
    options = pipeline.dataset.options()
    if options.experimental_optimization.inject_prefetch is not False and options.autotune.enabled is not False:
        return "TensorFlow injects one (inject_prefetch is on)"
    return ""


def model_loop(pipeline, seconds: float) -> dict[str, Any]:
    """The model on one element held in memory (its own speed), then fed by the pipeline, each step's wait on GetNext
    timed: the pipeline's threads prepare the next elements while the model computes, as in serving or training."""
    element = next(iter(pipeline.dataset))
    for _ in range(MIN_WARM):
        pipeline.consume(element)
    model_ms: list[float] = []
    end = time.perf_counter() + seconds / 3
    while len(model_ms) < MIN_STEPS or time.perf_counter() < end:
        start = time.perf_counter()
        pipeline.consume(element)
        model_ms.append((time.perf_counter() - start) * 1000)
    iterator = iter(pipeline.dataset.repeat())
    for _ in range(MIN_WARM):
        pipeline.consume(next(iterator))
    wait_ms: list[float] = []
    step_ms: list[float] = []
    end = time.perf_counter() + 2 * seconds / 3
    while len(step_ms) < MIN_STEPS or time.perf_counter() < end:
        start = time.perf_counter()
        element = next(iterator)
        got = time.perf_counter()
        pipeline.consume(element)
        wait_ms.append((got - start) * 1000)
        step_ms.append((time.perf_counter() - start) * 1000)
    return {"model_ms": model_ms, "wait_ms": wait_ms, "step_ms": step_ms}


def timed_against(original, variant, budget, consume: Callable[[Any], None]) -> dict[str, Any]:
    """``variant`` timed against ``original`` in turn (and ``original`` again beside them: what alternating alone moves).

    Each timed call starts a fresh iterator, pulls its warm-up untimed and then times a chunk of elements: an iterator
    left alive between calls would fill its buffers in the background while the other side is timed, and its next
    chunk would cost nothing.
    """
    per_element_ms = max(element_ms(original, consume), element_ms(variant, consume))
    chunk = max(MIN_CHUNK, math.ceil(CHUNK_MS / max(per_element_ms, 1e-4)))
    warm = max(MIN_WARM, math.ceil(WARM_MS / max(per_element_ms, 1e-4)))

    def pull(dataset) -> Callable[[], float]:
        repeated = dataset.repeat()

        def call() -> float:
            iterator = iter(repeated)
            for _ in range(warm):
                consume(next(iterator))
            start = time.perf_counter()
            for _ in range(chunk):
                consume(next(iterator))
            return (time.perf_counter() - start) * 1000

        return call

    decision, rounds = compare_in_turn(pull(original), pull(variant), PIPELINE_MINIMUM, warmup=1, max_seconds=budget.timing_seconds,
                                       confidence=budget.confidence, calibration=pull(original), self_timed=True)
    return {"chunk": chunk, "warm": warm, "rounds": rounds.to_json(), "ms_per_element": per_element_ms, "decided": decision.outcome}


def element_ms(dataset, consume: Callable[[Any], None], pulls: int = 10) -> float:
    """Time per element (and its model step, with --model) of a fresh iterator past its first (a first guess, to size the chunks)."""
    iterator = iter(dataset.repeat())
    consume(next(iterator))
    start = time.perf_counter()
    for _ in range(pulls):
        consume(next(iterator))
    return (time.perf_counter() - start) * 1000 / pulls
