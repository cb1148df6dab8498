"""The input pipeline's verdicts from what gather measured (pure: no TensorFlow)."""
from __future__ import annotations

from typing import Any, Iterator

import numpy as np

from tfaudit.api import Measure, Metric, Risk, Slope, Support, Yielded, bootstrap, decide, theil_sen, undecided

from .catalogue import (BUFFER_SHARE_OF_MEMORY, COLD_READ_SHARE, GETNEXT_READY_MS, GROWTH_PERSISTENCE, HIGHLY_INPUT_BOUND_SHARE,
                        HOURS_TO_EXHAUST, INPUT_BOUND_SHARE, MIN_GROWTH_BYTES_PER_ELEMENT, MIN_PASS_GROWTH_BYTES, PIPELINE_MINIMUM,
                        PREFETCH_LISTED_SHARE, READS_WORTH_SAYING_BYTES, RULES)


BLOCKS = 20  # the loop's steps in blocks, for the wait share's interval
MIN_BLOCK_STEPS = 3


def judge(m: dict[str, Any]) -> Iterator[Yielded]:
    first, stages = m["first_pass"], m["stages"]
    rate = Measure(first["elements"] / first["wall_seconds"]) if m.get("read_once") else bootstrap(stages[-1]["rates"])
    yield Metric("elements_per_second", rate.value, "elements/s", rate.low, rate.high, better="higher")
    yield Metric("time_to_first_ms", first["first_ms"], "ms")
    getnext = first["getnext_ms"]
    if getnext:
        yield Metric("getnext_p50_ms", getnext["p50"], "ms")
        yield Metric("getnext_p99_ms", getnext["p99"], "ms")
    cores = first["cpu_seconds"] / first["wall_seconds"] if first["wall_seconds"] > 0 else 0.0
    yield Metric("cpu_cores_busy", cores, "cores")
    if m.get("read_once"):
        yield read_once_finding(m, rate, cores)
    elif (slow := slow_stage(costs := stage_costs(stages))) is not None and len(stages) > 1:
        yield slow_stage_finding(m, costs, slow, rate, cores)
    if m.get("loop"):
        yield from loop_findings(m, rate)
    buffers = [st for st in stages if st.get("buffer")]
    prefetch = final_prefetch(m)
    if buffers or (prefetch and prefetch["buffer"]["bytes"] >= PREFETCH_LISTED_SHARE * (m.get("host_memory_bytes") or float("inf"))):
        yield buffer_finding(m, buffers + ([prefetch] if prefetch else []))
    yield from memory_growth(m)
    for candidate in m["candidates"]:
        yield from candidate_finding(m, candidate)


def wait_share(wait_ms: list[float], step_ms: list[float]) -> Measure:
    """The share of step time spent waiting, over blocks of consecutive steps (a block keeps the pipeline's bursts
    together), with a bootstrap interval of the blocks' mean."""
    wait, step = np.asarray(wait_ms), np.asarray(step_ms)
    size = max(MIN_BLOCK_STEPS, len(step) // BLOCKS)
    blocks = [wait[i:i + size].sum() / step[i:i + size].sum() for i in range(0, len(step) - size + 1, size)]
    if len(blocks) < 3:
        share = float(wait.sum() / step.sum())
        return Measure(share, 0.0, 1.0)
    return bootstrap(blocks, np.mean)


def loop_findings(m: dict[str, Any], rate: Measure) -> Iterator[Yielded]:
    loop, model = m["loop"], m.get("model") or {}
    share = wait_share(loop["wait_ms"], loop["step_ms"])
    model_ms = float(np.median(loop["model_ms"]))
    yield Metric("input_wait_share_pct", 100 * share.value, "%", 100 * (share.low or 0), 100 * (share.high or 1))
    yield Metric("model_elements_per_second", 1000 / model_ms, "elements/s", better="higher")
    step = m.get("step")
    consumer = f"`{step}`" if step else f"the model `{model.get('path')}`"
    kind = "a step of yours" if step else "an inference step"
    caveat = "" if step else " A training step costs several times an inference step, so a training loop waits less than this (--step times yours)."
    facts = dict(consumer=consumer, step_kind=kind, caveat=caveat, share=f"{share.value:.0%}", share_low=f"{share.low:.0%}", share_high=f"{share.high:.0%}",
                 step_ms=f"{float(np.median(loop['step_ms'])):.2f}", pipeline_rate=f"{rate.value:,.0f}",
                 model_rate=f"{1000 / model_ms:,.0f}", target=m["target"], threshold=f"{INPUT_BOUND_SHARE:.0%}")
    evidence = {"wait_share": [round(share.value, 4), round(share.low or 0, 4), round(share.high or 1, 4)], "steps": len(loop["step_ms"]),
                "model_ms_median": round(model_ms, 4), "step_ms_median": round(float(np.median(loop["step_ms"])), 4),
                "wait_ms": {"p50": round(float(np.median(loop["wait_ms"])), 4), "p99": round(float(np.percentile(loop["wait_ms"], 99)), 4)}}
    if (share.low or 0) >= INPUT_BOUND_SHARE:
        severity = "high" if (share.low or 0) >= HIGHLY_INPUT_BOUND_SHARE else "medium"
        yield RULES["data/input-bound"].finding(evidence, severity=severity, **facts)
    elif (share.high or 1) < INPUT_BOUND_SHARE:
        yield RULES["data/model-bound"].finding(evidence, **facts)
    else:
        text = f"{consumer} waits {share.value:.1%} [{share.low:.1%}–{share.high:.1%}] of each step on GetNext, against the {INPUT_BOUND_SHARE:.0%} line"
        yield undecided(RULES["data/input-bound"], f"whether {consumer} waits for its input", text, evidence)


def size_text(nbytes: float) -> str:
    for unit, size in (("GiB", 2**30), ("MiB", 2**20)):
        if abs(nbytes) >= size:
            return f"{nbytes / size:,.1f} {unit}"
    return f"{nbytes / 2**10:,.1f} KiB"


def final_prefetch(m: dict[str, Any]) -> dict[str, Any] | None:
    """The buffer of the prefetch TensorFlow ran last (yours or the one it injected): its buffer_size after the first
    pass (AUTOTUNE's choice, or the code's) × the bytes of a returned element."""
    nodes = {n["id"]: n for n in (m["first_pass"].get("tensorflow_ran") or {}).get("nodes", [])}
    root = next((n for n in nodes.values() if n["name"] == "Root"), None)
    last = nodes.get(root["inputs"][0]) if root and root["inputs"] else None
    if last is None or last["name"] != "Prefetch":
        return None
    size = last["tuned"].get("buffer_size", last.get("fixed", {}).get("buffer_size"))
    if size is None:
        return None
    mine = next((st for st in reversed(m["stages"]) if st["kind"] != "with_options"), None)
    where, code = ((mine["where"], mine["code"]) if mine and mine["kind"] == "prefetch" else
                   ("the end (injected by TensorFlow)", "dataset = dataset.prefetch(2)  # a buffer of your size, not AUTOTUNE's"))
    element = m["first_pass"]["element_bytes"]
    return {"kind": "prefetch", "where": where, "code": code, "how": " (its buffer_size after the first pass)",
            "buffer": {"elements": int(size), "element_bytes": element, "bytes": int(size) * element}}


def buffer_finding(m: dict[str, Any], buffers: list[dict[str, Any]]):
    total = sum(st["buffer"]["bytes"] for st in buffers)
    largest = max(buffers, key=lambda st: st["buffer"]["bytes"])
    memory = m["first_pass"]["memory"]
    host = m.get("host_memory_bytes") or 0
    severity = "medium" if host and total >= BUFFER_SHARE_OF_MEMORY * host else "info"
    listed = "; ".join(f"`{st['kind']}` at {st['where']} holds {st['buffer']['elements']:,} elements of "
                       f"{st['buffer']['element_bytes']:,} bytes{st.get('how', '')} = {size_text(st['buffer']['bytes'])}" for st in buffers)
    evidence = {"buffers": [{"kind": st["kind"], "where": st["where"], "code": st["code"], **st["buffer"]} for st in buffers],
                "memory": memory, "host_memory_bytes": host}
    return RULES["data/buffer-memory"].finding(
        evidence, severity=severity, total=size_text(total), largest=f"`{largest['kind']}` at {largest['where']} ({size_text(largest['buffer']['bytes'])})",
        buffers=listed, growth=size_text(memory["peak_bytes"] - memory["before_bytes"]), before=size_text(memory["before_bytes"]),
        peak=size_text(memory["peak_bytes"]), example=f"# {largest['where']}\n{largest['code']}", target=m["target"],
    )


def scope_text(m: dict[str, Any]) -> str:
    first = m["first_pass"]
    if first["stopped_at"] == "end of the dataset":
        scope = f"one whole pass of the dataset's {first['elements']:,} elements"
    elif first["stopped_at"] == "take":
        source = "--take" if m.get("take_given") else f"the {m['budget']} budget's --take"
        scope = f"the first {first['elements']:,} elements ({source} {m['take']:,}; the dataset goes on)"
    else:
        scope = f"the first {first['elements']:,} elements, as many as {first['steady_seconds']:.1f} s allowed (the budget's time)"
    return scope


def reads_text(m: dict[str, Any]) -> str:
    """Whether the first pass read its files cold (from storage) or warm (from the OS page cache), and the timings after it."""
    first, later = m["first_pass"].get("reads"), m.get("later_reads")
    if not first or first["bytes"] < READS_WORTH_SAYING_BYTES:
        return ""

    def read(reads: dict[str, int]) -> str:
        storage = max(0, reads["storage_bytes"])
        how = "cold" if storage >= COLD_READ_SHARE * reads["bytes"] else "warm, from the OS page cache"
        return f"{how} ({size_text(storage)} of {size_text(reads['bytes'])} from storage)"

    text = f" The first pass read its files {read(first)}"
    if later and later["bytes"] >= READS_WORTH_SAYING_BYTES:
        text += f"; the timings after it, {read(later)}"
    return text + "."


def memory_growth(m: dict[str, Any]) -> Iterator[Yielded]:
    """Anonymous memory against elements delivered over the first pass: a Theil–Sen slope, growth when its interval lies
    at MIN_GROWTH_BYTES_PER_ELEMENT or more, MIN_PASS_GROWTH_BYTES in all, and the pass's second half still grew. Growth
    that stops (a cache full, or a pass of the whole dataset that did not grow again) is held once; the rest, for ever."""
    first = m["first_pass"]
    slope, late, span = fitted_growth(first.get("memory_trace"), m["confidence"])
    if slope is None:
        return
    yield Metric("memory_growth_bytes_per_1000_elements", 1000 * slope.value, "bytes", 1000 * slope.low, 1000 * slope.high)
    grown = slope.value * span
    if slope.low < MIN_GROWTH_BYTES_PER_ELEMENT or grown < MIN_PASS_GROWTH_BYTES or late < GROWTH_PERSISTENCE * slope.value:
        return
    rate = first["elements"] / first["wall_seconds"] if first["wall_seconds"] > 0 else 0.0
    available = float(m.get("available_memory_bytes") or 0)
    caches = m.get("memory_caches", [])
    named = "; ".join(f"`cache` at {m['stages'][c['index']]['where']}" for c in caches)
    ends = first.get("pass_end_bytes") or []
    again = [(after - before) / first["elements"] for before, after in zip(ends, ends[1:])]  # bytes per element, pass by pass
    # The allocator's arenas still grow over the second pass (half the first pass's growth, measured), and now and then
    # by a few MiB at once after it: the median of the passes after the second.
    settled = again[1:]
    grew_again = len(settled) >= 2 and float(np.median(settled)) >= max(MIN_GROWTH_BYTES_PER_ELEMENT, GROWTH_PERSISTENCE * slope.value)
    stops: tuple[Slope, float, str] | None = None  # (what it holds, after how many elements, how that is known)
    if len(settled) >= 2 and not grew_again:
        total = float(ends[-1] - first["memory_trace"][0][1])
        stops = Slope(total, total, total), float(first["elements"]), f"{len(again)} more passes over the same elements grew it no further"
    elif not grew_again and (filled := cache_fills_at(m, caches)) is not None:
        count, why = filled
        stops = Slope(slope.value * count, slope.low * count, slope.high * count), count, why
    evidence = {"bytes_per_element": round(slope.value, 1), "bytes_per_element_ci95": [round(slope.low, 1), round(slope.high, 1)],
                "second_half_bytes_per_element": round(late, 1), "elements": int(span), "grown_bytes": round(grown),
                "passes_again_bytes_per_element": [round(a, 1) for a in again],
                "readings": len(first["memory_trace"]), "elements_per_second": round(rate, 1), "available_memory_bytes": int(available),
                "memory_caches": [{"where": m["stages"][c["index"]]["where"], "elements": c["elements"]} for c in caches],
                "stops_after_elements": None if stops is None else stops[1]}
    facts = dict(kib=f"{slope.value / 1024:,.1f}", low_kib=f"{slope.low / 1024:,.1f}", high_kib=f"{slope.high / 1024:,.1f}",
                 per_1000=size_text(1000 * slope.value), grown=size_text(grown), readings=f"{len(first['memory_trace']):,}", scope=scope_text(m),
                 target=m["target"])
    if stops is not None:
        severity, outlook, example = held_once(m, *stops, caches, named, available)
    else:
        severity, outlook, example = held_for_ever(m, slope, again, grew_again, caches, named, available, rate)
    yield RULES["data/memory-growth"].finding(evidence, severity=severity, outlook=outlook, example=example, **facts)


def held_once(m: dict[str, Any], held: Slope, count: float, why: str, caches: list[dict[str, Any]], named: str,
              available: float) -> tuple[str, str, str]:
    """(severity, outlook, example) of growth that stops: priced by what it holds against the memory."""
    host = float(m.get("host_memory_bytes") or 0)
    runs_out = bool(available) and held.low >= available
    severity = "high" if runs_out else "medium" if host and held.low >= BUFFER_SHARE_OF_MEMORY * host else "info"
    keeper = (f"{named}, which keeps every element it has seen" if caches else
              "something kept once for each distinct element (a memo, a dict keyed by the element)")
    interval = f" [{size_text(held.low)}–{size_text(held.high)}]" if held.high > held.low else ""
    outlook = (f"It stops: {why}. Held by {keeper}: {size_text(held.value)}{interval} after {count:,.0f} elements"
               + (f", more than the {size_text(available)} available now: the first epoch runs out of memory." if runs_out
                  else f", against the {size_text(available)} available now." if available else "."))
    example = ("\n".join(f"# {m['stages'][c['index']]['where']}\n{m['stages'][c['index']]['code']}" for c in caches) if caches
               else "dataset = dataset.cache(filename)  # on disk: the same elements once, out of the process's memory")
    return severity, outlook, example


def held_for_ever(m: dict[str, Any], slope: Slope, again: list[float], grew_again: bool, caches: list[dict[str, Any]], named: str,
                  available: float, rate: float) -> tuple[str, str, str]:
    """(severity, outlook, example) of growth not known to stop (``again``: each more pass's growth per element,
    where the first pass read the whole dataset): priced by the hours the memory available now lasts."""
    hours = available / (slope.low * rate) / 3600 if available and rate > 0 else float("inf")
    severity = next((level for level, limit in HOURS_TO_EXHAUST if hours < limit), "low")
    if grew_again:
        held_by = (f"It grew again by {float(np.median(again[1:])) / 1024:,.1f} KiB an element a pass over the same elements "
                   f"(passes 3 to {len(again) + 1}; the second lets the allocator settle): something is kept for every element read.")
    else:
        held_by = (f"{named.capitalize()} keeps every element it has seen, and how many it will hold is not known." if caches
                   else "No stage of the pipeline keeps elements by design.")
        held_by += (" Whether it stops after one pass of the dataset was not measured: " +
                    (f"{len(again)} more passes fit the budget's time, not the 3 it takes." if m["first_pass"]["exhausted"]
                     else "the first pass did not reach its end."))
    outlook = held_by + (f" At the first pass's {rate:,.0f} elements/s, the {size_text(available)} available now lasts "
                         f"{hours_text(hours)}." if available and rate > 0 else "")
    example = "_seen = {}\n\ndef decode(path):\n    _seen[path] = load(path)  # kept for ever: grows with every element\n    return _seen[path]"
    return severity, outlook, example


def fitted_growth(trace: list | None, confidence: float) -> tuple[Slope | None, float, float]:
    """(bytes per element, the second half's slope, the elements spanned) of (elements, bytes) readings; None under 6."""
    points = np.asarray(trace or [], dtype=float)
    if len(points) < 6:
        return None, 0.0, 0.0
    elements, memory = points[:, 0], points[:, 1]
    half = len(points) // 2
    return theil_sen(elements, memory, confidence), theil_sen(elements[half:], memory[half:], confidence).value, float(elements[-1] - elements[0])


def cache_fills_at(m: dict[str, Any], caches: list[dict[str, Any]]) -> tuple[float, str] | None:
    """(elements of the final dataset after which the in-memory caches are full, how that is known); None where a
    cache's length is not known, or there is none."""
    if not caches:
        return None
    if isinstance(m.get("cardinality"), int) and m["cardinality"] > 0:
        return float(m["cardinality"]), f"the dataset has {m['cardinality']:,} elements"
    costs = stage_costs(m["stages"])
    lengths = [c["elements"] / costs[c["index"]]["elements_per_final"] for c in caches
               if c["elements"] > 0 and costs[c["index"]]["elements_per_final"]]
    return (max(lengths), "the caches' inputs end") if len(lengths) == len(caches) else None


def hours_text(hours: float) -> str:
    return f"{hours * 60:,.0f} minutes" if hours < 1 else f"{hours:,.1f} h" if hours < 48 else f"{hours / 24:,.0f} days"


def stage_costs(stages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each prefix's time per element of the final dataset (ms, with its interval), where the counts between allow it."""
    per_final: list[float | None] = [None] * len(stages)
    per_final[-1] = 1.0
    for index in range(len(stages) - 1, 0, -1):
        ratio, after = stages[index]["inputs_per_output"]["value"], per_final[index]
        per_final[index - 1] = None if ratio is None or after is None else after * ratio
    costs = []
    for stage, count in zip(stages, per_final):
        rate = bootstrap(stage["rates"])
        ms = None if count is None else Measure(1000 * count / rate.value, 1000 * count / (rate.high or rate.value),
                                                1000 * count / (rate.low or rate.value))
        costs.append({"stage": stage, "elements_per_final": count, "ms_per_final_element": ms, "rate": rate})
    return costs


def slow_stage(costs: list[dict[str, Any]]) -> int | None:
    """The stage past which the time per final element grows most (the source's own time counts as its growth)."""
    best, best_growth = None, 0.0
    for index, cost in enumerate(costs):
        ms = cost["ms_per_final_element"]
        before = costs[index - 1]["ms_per_final_element"] if index else Measure(0.0, 0.0, 0.0)
        if ms is None or before is None:
            continue
        growth = ms.value - before.value
        if growth > best_growth:
            best, best_growth = index, growth
    return best


def slow_stage_finding(m: dict[str, Any], costs: list[dict[str, Any]], index: int, rate: Measure, cores: float):
    cost, stage = costs[index], costs[index]["stage"]
    before = costs[index - 1] if index else None
    ms, before_ms = cost["ms_per_final_element"], before["ms_per_final_element"] if before else Measure(0.0, 0.0, 0.0)
    stage_ms = ms.value - before_ms.value
    total = max(c["ms_per_final_element"].value for c in costs if c["ms_per_final_element"] is not None)
    share = stage_ms / total if total > 0 else 0.0
    evidence = {
        "stages": [{"index": c["stage"]["index"], "kind": c["stage"]["kind"], "where": c["stage"]["where"],
                    "elements_per_second": round(c["rate"].value, 1),
                    "elements_per_second_ci95": [round(c["rate"].low, 1), round(c["rate"].high, 1)],
                    "inputs_per_output": c["stage"]["inputs_per_output"],
                    "ms_per_final_element": None if c["ms_per_final_element"] is None else round(c["ms_per_final_element"].value, 4)}
                   for c in costs],
        "share_of_time_per_element": round(share, 3),
        "first_pass": {k: v for k, v in m["first_pass"].items()},
        "scope": scope_text(m),
        "options": m["options"],
        "not_timed": m.get("not_timed", []),
    }
    getnext = m["first_pass"]["getnext_ms"]
    return RULES["data/slow-stage"].finding(
        evidence, kind=stage["kind"], where=stage["where"] or "a library call", code=stage["code"] or "",
        stage_ms=f"{stage_ms:.3f}", total_ms=f"{total:.3f}", share=f"{share:.0%}",
        before_rate=f"{1000 / before_ms.value:,.0f}" if before_ms.value > 0 else "the source's",
        after_rate=f"{1000 / ms.value:,.0f}", rate=f"{rate.value:,.0f}", rate_low=f"{rate.low:,.0f}", rate_high=f"{rate.high:,.0f}",
        first_ms=f"{m['first_pass']['first_ms']:,.1f}", scope=scope_text(m), p50_ms=f"{getnext.get('p50', 0):.3f}",
        p99_ms=f"{getnext.get('p99', 0):.3f}", ready_share=f"{getnext.get('within_50us', 0):.0%}", ready_ms=f"{GETNEXT_READY_MS:g}",
        cores=f"{cores:.2f}", reads=reads_text(m), not_timed="".join(f" Not timed: {why}." for why in m.get("not_timed", [])),
        ran=ran_text(m["first_pass"].get("tensorflow_ran") or {}),
        example=parallel_example(stage) if stage["kind"] in ("map", "interleave") else f"# {stage['where']}\n{stage['code']}",
        target=m["target"],
    )


def read_once_finding(m: dict[str, Any], rate: Measure, cores: float):
    first, getnext = m["first_pass"], m["first_pass"]["getnext_ms"]
    return RULES["data/read-once"].finding(
        {"first_pass": dict(first), "scope": scope_text(m)}, target=m["target"], scope=scope_text(m), rate=f"{rate.value:,.0f}",
        first_ms=f"{first['first_ms']:,.1f}", p50_ms=f"{getnext.get('p50', 0):.3f}", p99_ms=f"{getnext.get('p99', 0):.3f}",
        ready_share=f"{getnext.get('within_50us', 0):.0%}", ready_ms=f"{GETNEXT_READY_MS:g}", cores=f"{cores:.2f}",
        reads=reads_text(m), ran=ran_text(first.get("tensorflow_ran") or {}))


def ran_text(ran: dict[str, Any]) -> str:
    """The chain TensorFlow ran after its rewrites, from the source, with what AUTOTUNE chose: "Range → MapAndBatch
    (parallelism 2) → Prefetch (buffer_size 4)"."""
    nodes = {n["id"]: n for n in ran.get("nodes", [])}
    chain, node = [], next((n for n in nodes.values() if n["name"] == "Root"), None)
    while node is not None:
        if node["name"] != "Root":
            tuned = ", ".join([*(f"{k} {v:g}" for k, v in node["tuned"].items()),
                               *(f"{k} {v:g} as written" for k, v in node.get("fixed", {}).items() if k == "parallelism")])
            chain.append(f"{node['name']} ({tuned})" if tuned else node["name"])
        node = nodes.get(node["inputs"][0]) if node["inputs"] else None
    if not chain:
        return f" What TensorFlow ran is not known: {ran.get('why_not') or 'no performance model'}."
    return f" TensorFlow ran, after its rewrites, with AUTOTUNE's choices: {' → '.join(reversed(chain))}."


def parallel_example(stage: dict[str, Any]) -> str:
    code = stage["code"]
    if code.endswith(")") and "num_parallel_calls" not in code:
        return f"# {stage['where']}\n{code[:-1]}, num_parallel_calls=tf.data.AUTOTUNE)"
    return f"# {stage['where']}: pass num_parallel_calls=tf.data.AUTOTUNE\n{code}"


def candidate_finding(m: dict[str, Any], candidate: dict[str, Any]) -> Iterator[Yielded]:
    rounds, chunk = candidate["rounds"], candidate["chunk"]
    decision = decide(rounds, PIPELINE_MINIMUM, m["confidence"])
    stages = [m["stages"][i] for i in candidate["stages"]]
    named = " and ".join(f"`{s['kind']}` at {s['where']}" for s in stages)
    fix, _, setting = candidate["fix"].partition(":")
    slug, _, setting = setting.partition(":")
    rule = RULES[f"data/{slug}" if fix == "option" else {"parallel": "data/parallel-map", "cache": "data/cache"}.get(fix, "data/prefetch")]
    what = {"cache": f"`.cache()` after {named}", "parallel": f"{named} in parallel", "option": f"`{setting}`"}.get(fix, "a final prefetch")
    text = decision.describe(what, "the pipeline as returned")
    evidence = {"decision": text, "chunk_elements": chunk, "rounds": len(rounds["a_ms"]), "decision_json": decision.to_json(),
                "stages": [{"index": s["index"], "kind": s["kind"], "where": s["where"], "code": s["code"]} for s in stages]}
    if decision.outcome == "undecided":
        yield undecided(rule, what, text, evidence)
        return
    if decision.outcome != "faster":
        return
    ratio = decision.ratio
    per_element = float(np.median(rounds["a_ms"])) / chunk
    savings = {
        "latency_ms": Measure(per_element * (1 - ratio.value), per_element * (1 - (ratio.high or ratio.value)),
                              per_element * (1 - (ratio.low or ratio.value))),
        "latency_pct": Measure(100 * (1 - ratio.value), 100 * (1 - (ratio.high or ratio.value)), 100 * (1 - (ratio.low or ratio.value))),
    }
    speedup = 1 / ratio.value
    facts = {"decision": text, "speedup": f"{speedup:.2f}", "target": m["target"], "stages": named, "setting": setting,
             "example": "\n".join(parallel_example(s) for s in stages)}
    risk = None
    if fix == "cache":
        cache, stage = candidate["cache"], stages[0]
        frozen = cache["frozen"]
        facts.update(kind=stage["kind"], where=stage["where"], elements=f"{cache['elements']:,}", memory=size_text(cache["bytes"]),
                     example=f"# {stage['where']}\n{stage['code']}\ndataset = dataset.cache()",
                     frozen=f" Before it, {'; '.join(frozen)}: cached, they stop changing from epoch to epoch." if frozen else "")
        if frozen:
            risk = Risk("medium", f"Cached after {'; '.join(frozen)}: every epoch then sees the same elements; cache before them.")
    surely = 1 / (ratio.high or ratio.value)  # the speed-up the interval's slow end still gives: a severity that holds on a rerun
    yield rule.finding(evidence, severity="high" if surely >= 2 else "medium", savings=savings, support=Support.decided(decision), risk=risk,
                       **facts)
