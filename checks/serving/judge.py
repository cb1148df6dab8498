"""Serving's verdicts from what gather measured: which knob paid, by how much, and the headline (pure: no TensorFlow).

Gather asks three of these verdicts while it measures, since what it measures next depends on them: whether XLA
pays (the combined run uses it), the best process setting (the combined run times it), and whether a cold start is
slow (only then is the warm-up file written and replayed). Judged again here from the same data, they agree.
"""
from __future__ import annotations

from string import Template
from typing import Any, Iterator

import numpy as np

from tfaudit.api import undecided, CPU_PER_CALL_METRIC, CPU_PER_ROW_METRIC, HOST_INDEX_METRIC, budget_confidence, record_confidence, PER_REFERENCE_METRICS, SPREAD_SUFFIX, Finding, Measure, Metric, Risk, Support, Yielded, bootstrap, compare, decide, process_ratios, rounds_of_calls

from . import catalogue as text
from .batching import Sweep, fits_bound
from .findings import configuration_finding, ends, found, low_end, measure_of, rounded_ci
from .knobs import litert_findings, setting_candidates, setting_findings, settings_rows
from .settings import Setting
from .stats import p99, per_row, timing_of, timing_stats

COMBINED_FINDINGS = ("serving/threads", "serving/precision", "serving/onednn", "serving/xla")  # settings the combined run re-times
MIN_GAIN_PCT = 100 * text.BATCH_MINIMUM.relative  # a saving's interval low end, for records from before the rounds


def judge(m: dict[str, Any]) -> Iterator[Yielded]:
    """Metrics, then the findings of every knob that paid, then ``serving/configuration`` (the headline)."""
    sweeps = {name: Sweep.from_measured(name, m["sweeps"][name], m["latency_budget_ms"]) for name in m["devices"]}
    evidence: dict[str, Any] = {"devices": m["devices"], "cores": m["cores"], "phase_seconds": m["phase_seconds"]}
    if m["devices_note"]:
        evidence["devices_note"] = m["devices_note"]
    findings: list[Finding] = []
    for name, sweep in sweeps.items():
        if sweep.points:
            findings += device_findings(m, sweep, evidence)
        else:
            evidence[f"{name}_error"] = sweep.stop
    primary = sweeps[m["devices"][0]]
    yield from batch_1_metrics(primary)
    processes = m["processes"]
    yield from per_reference_metrics(processes.get("cold_start"), evidence)
    findings += process_findings(m, processes, primary.serving_batch, evidence)
    findings += litert_findings(m["litert"], m["budget"], evidence)
    in_combined = [f for f in findings if f.id.startswith(COMBINED_FINDINGS)]
    combined = combined_table(processes["combined"])
    headline = headline_of(primary, combined, processes["combined_error"], m["devices"][0], [f.id for f in in_combined])
    if combined and in_combined and not combined["confirmed"]:
        # Won alone, not together with the defaults timed in turn: two measurements disagree, so neither is claimed.
        findings = [f for f in findings if f not in in_combined]
        evidence["not_confirmed_together"] = [{"finding": f.id, "measured_alone": f.title} for f in in_combined]
    best = combined if combined else primary.point(primary.serving_batch)  # within the latency bound
    configuration = configuration_label(combined) if combined else f"batch {primary.serving_batch}"
    low, high = best["rows_per_s_ci"]
    yield Metric("throughput_rows_per_s_best", best["rows_per_s"], "rows/s", low, high, better="higher", subject=configuration)
    yield Metric("best_batch", primary.serving_batch, "rows", better="higher", subject=f"batch {primary.serving_batch}")
    evidence.update(headline=headline, combined=combined, check_seconds=m["check_seconds"])
    yield from findings
    verdict = text.CONFIGURATION_GAINS if findings else text.CONFIGURATION_NO_GAINS
    yield configuration_finding(evidence, headline=headline, verdict=verdict, code="\n\n".join(f.fix.code for f in findings if f.fix.code))


def batch_1_metrics(primary: Sweep) -> Iterator[Metric]:
    if primary.host_index_ms is not None:
        index = timing_of(primary.host_index_ms).median_interval()
        low, high = rounded_ci(index, 4)
        yield Metric(HOST_INDEX_METRIC, round(index.value, 4), "ms", low, high)
    first = primary.points[0]
    yield Metric("p50_ms_batch_1", first["p50_ms"], "ms", *first["p50_ci_ms"])
    yield Metric("p99_ms_batch_1", first["p99_ms"], "ms", *first["p99_ci_ms"])
    yield from cpu_metrics(primary)


def cpu_metrics(primary: Sweep) -> Iterator[Metric]:
    """CPU time of a call at the first batch and per row at the serving batch (every thread's, with its 95 % interval): what
    a deployment profile turns saved latency into cores with."""
    for name, timed in ((CPU_PER_CALL_METRIC, primary.cpu[:1]), (CPU_PER_ROW_METRIC, [c for c in primary.cpu if c["batch"] == primary.serving_batch])):
        if not timed:
            continue
        rows = timed[0]["batch"] if name == CPU_PER_ROW_METRIC else 1
        cpu = timing_of(ms / rows for ms in timed[0]["cpu_ms"]).median_interval()
        low, high = rounded_ci(cpu, 5)
        yield Metric(name, round(cpu.value, 5), "ms", low, high, subject=f"batch {timed[0]['batch']}")


def fresh_processes(cold: dict[str, Any] | None) -> list[dict[str, Any]]:
    """What each fresh process the cold start opened (with and without the warm-up file) timed in turn with the host reference."""
    replies = (cold or {}).get("first_requests", []) + (cold or {}).get("after_warmup", [])
    return [r["in_turn_ms"] for r in replies if "in_turn_ms" in r]


def per_reference_metrics(cold: dict[str, Any] | None, evidence: dict[str, Any]) -> Iterator[Metric]:
    """A call ÷ the host reference over the fresh processes (batch 1, then the serving batch): what a ``--baseline``
    comparison asks of every process of a run before it believes one process's slower latency."""
    in_turn = fresh_processes(cold)
    ratios = process_ratios(in_turn)
    if ratios is None:
        return
    evidence["between_processes"] = {"processes": len(in_turn), "calls_ms": [[round(c, 4) for c in one["calls"]] for one in in_turn],
                                     "reference_ms": [round(one["reference"], 4) for one in in_turn]}
    batches = (cold or {}).get("noise_batches") or [None, None]  # its subject: a baseline compares a ratio only at the same batch
    for name, one, batch in zip(PER_REFERENCE_METRICS.values(), (ratios[0], ratios[-1]), (batches[0], batches[-1])):
        subject = f"batch {batch}" if batch is not None else ""
        yield Metric(name, round(one["ratio"], 4), "×", samples=int(one["processes"]), subject=subject)
        yield Metric(name + SPREAD_SUFFIX, round(one["spread_pct"], 3), "%", samples=int(one["processes"]), subject=subject)


def gain_severity(pct: float) -> str:
    return "medium" if pct >= text.MEDIUM_GAIN_PCT else "low"


# --- one device: batch size, concurrency, XLA ------------------------------------------------------


def device_findings(m: dict[str, Any], sweep: Sweep, evidence: dict[str, Any]) -> list[Finding]:
    measured = m["sweeps"][sweep.device]
    concurrency = concurrency_table(measured["concurrency"], m["budget"])
    xla, xla_comparison, xla_decision = xla_table(measured["xla"], m["budget"])
    evidence[sweep.device] = {
        "batch_sweep": sweep.points,
        "sweep_stop": sweep.stop,
        "latency_bound_ms": round(sweep.bound_ms or 0.0, 4),
        "latency_bound": sweep.bound_source,
        "latency_bound_stat": sweep.bound_stat,
        "knee_batch": sweep.knee,
        "serving_batch": sweep.serving_batch,
        "concurrency": concurrency,
        "xla": xla,
    }
    on = "" if sweep.device == "CPU" else f" on {sweep.device}"
    suffix = "" if sweep.device == "CPU" else f"-{sweep.device.lower().replace(':', '')}"
    findings = [batch_size_finding(sweep, m["cores"], on, suffix), concurrency_finding(sweep, concurrency, measured["concurrency"], m["budget"], on, suffix)]
    if xla_faster(xla, m["max_fidelity_loss"]):
        findings.append(xla_finding(sweep, xla, xla_comparison, xla_decision, m["signature"], on, suffix))
    elif xla_decision is not None and not xla_decision.decided:
        findings.append(undecided(text.RULES["serving/xla"], f"XLA (jit_compile=True){on} against the plain call", xla["decision"], xla, suffix))
    return [f for f in findings if f is not None]


def batching_parameters(sweep: Sweep, cores: int) -> str:
    """TF Serving's batching_parameters from the measured curve: wait at most what the bound leaves after the batch's call."""
    point, stat = sweep.point(sweep.serving_batch), sweep.bound_stat
    timeout_us = max(0, int(round((sweep.bound_ms - point[f"{stat}_ms"]) * 1000))) if sweep.bound_ms else 0
    allowed = [p["batch"] for p in sweep.points if p["batch"] <= sweep.serving_batch]
    return Template(text.BATCHING_PARAMETERS).substitute(
        batch=sweep.serving_batch, timeout_us=timeout_us, bound=f"{sweep.bound_ms:.2f}", stat=stat, stat_ms=f"{point[f'{stat}_ms']:.2f}",
        cores=cores, allowed="".join(Template(text.ALLOWED_BATCH_SIZE).substitute(batch=b) for b in allowed),
    )


def batch_size_finding(sweep: Sweep, cores: int, on: str, suffix: str) -> Finding | None:
    first = sweep.points[0]
    if len(sweep.points) < 2 or sweep.serving_batch == first["batch"]:
        return None
    chosen = sweep.point(sweep.serving_batch)
    comparison = compare(per_row(sweep.timing(first["batch"]), first["batch"]), per_row(sweep.timing(sweep.serving_batch), sweep.serving_batch))
    batched = sweep.batched if sweep.batched and sweep.batched.get("batch") == sweep.serving_batch else None
    decided: dict[str, Any] = {}
    if batched:  # the serving batch in one call against the first batch's calls, in ABBA rounds
        decision = decide(batched["rounds"], text.BATCH_MINIMUM, batched["confidence"])
        if decision.outcome != "faster":
            return None
        support = Support.decided(decision)
        decided = {"decision": decision.describe(f"batch {sweep.serving_batch} in one call", f"{batched['calls_of_first']} calls of batch {first['batch']}")}
    elif low_end(comparison.saved_pct) >= MIN_GAIN_PCT:
        support = Support.interval(comparison.saved_pct, MIN_GAIN_PCT, "bootstrap")
    else:
        return None
    p99_text = f"{chosen['p99_ms']:.2f}"
    return found(
        "serving/batch-size",
        {"batch_sweep": sweep.points, "serving_batch": sweep.serving_batch, "knee_batch": sweep.knee,
         "latency_bound_ms": round(sweep.bound_ms or 0.0, 4), "latency_bound": sweep.bound_source, "latency_bound_stat": sweep.bound_stat,
         "sweep_stop": sweep.stop, **decided},
        suffix=suffix, severity=gain_severity(low_end(comparison.saved_pct)), savings={"latency_pct": measure_of(comparison.saved_pct)},
        risk=Risk("low", Template(text.BATCH_RISK).substitute(batch=sweep.serving_batch, p99=p99_text)),
        support=support,
        on=on, batch=sweep.serving_batch, factor=f"{chosen['rows_per_s'] / first['rows_per_s']:.1f}", p99=p99_text,
        rows=f"{chosen['rows_per_s']:.0f}", first_rows=f"{first['rows_per_s']:.0f}", first_p99=f"{first['p99_ms']:.2f}", knee=sweep.knee,
        stat=sweep.bound_stat, bound=f"{sweep.bound_ms:.2f}", bound_source=sweep.bound_source, parameters=batching_parameters(sweep, cores),
    )


def concurrency_table(levels: list[dict[str, Any]], budget: str) -> list[dict[str, Any]]:
    """Per number of callers: throughput (the mean over its turns, with its interval), p50 and p99 per call."""
    results = []
    for level in levels:
        callers, windows, took = level["callers"], level["rows_per_s_windows"], level["latencies_ms"]
        interval = bootstrap(windows, np.mean)  # the mean: a pause (a collection, another process) costs a server its share
        tail = bootstrap(took, p99) if took else None
        median = bootstrap(took, np.median) if took else None
        results.append({
            "callers": callers,
            "rows_per_s": round(interval.value, 1),
            "rows_per_s_ci": rounded_ci(interval, 1),
            "p50_ms": round(median.value, 4) if median else None,
            "p50_ci_ms": rounded_ci(median, 4) if median else None,
            "p99_ms": round(tail.value, 4) if tail else None,
            "p99_ci_ms": rounded_ci(tail, 4) if tail else None,
            "calls": len(took),
        })
        if callers > 1:
            rounds, confidence = concurrency_rounds(levels[0], level, budget)
            results[-1]["against_one_caller"] = decide(rounds, text.CONCURRENCY_MINIMUM, confidence).outcome
    return results


def concurrency_finding(sweep: Sweep, concurrency: list[dict], levels: list[dict], budget: str, on: str, suffix: str) -> Finding | None:
    """The most rows/s among the caller counts that fit the bound, when its turns against one caller decided it faster."""
    if len(concurrency) < 2:
        return None
    base = concurrency[0]
    within = [r for r in concurrency[1:] if fits_bound(sweep, r)]
    if not within:
        return None
    best = max(within, key=lambda r: r["rows_per_s"])
    level = next(one for one in levels if one["callers"] == best["callers"])
    rounds, confidence = concurrency_rounds(levels[0], level, budget)
    decision = decide(rounds, text.CONCURRENCY_MINIMUM, confidence)
    if decision.outcome != "faster":
        return None
    saved = compare(per_row_windows(levels[0]), per_row_windows(level)).saved_pct
    p99_text, base_p99 = f"{best['p99_ms']:.2f}", f"{base['p99_ms']:.2f}"
    return found(
        "serving/concurrency",
        {"concurrency": concurrency, "batch": sweep.serving_batch, "decision": decision.describe(f"{best['callers']} callers", "one caller"),
         "decided_by": decision.method},
        suffix=suffix, severity="medium", savings={"latency_pct": measure_of(saved)},
        risk=Risk("low", Template(text.CONCURRENCY_RISK).substitute(base_p99=base_p99, p99=p99_text)), support=Support.decided(decision),
        callers=best["callers"], on=on, factor=f"{best['rows_per_s'] / max(base['rows_per_s'], 1e-9):.1f}", batch=sweep.serving_batch,
        rows=f"{best['rows_per_s']:.0f}", p99=p99_text, base_rows=f"{base['rows_per_s']:.0f}", base_p99=base_p99,
        stat=sweep.bound_stat, bound=f"{sweep.bound_ms:.2f}",
    )


def per_row_windows(level: dict[str, Any]):
    return timing_of(1000.0 / max(r, 1e-9) for r in level["rows_per_s_windows"])


def concurrency_rounds(one: dict[str, Any], level: dict[str, Any], budget: str) -> tuple[dict[str, Any], float]:
    """The turns that decided ``level`` against one caller, and the level they decide at; a record from before the turns,
    rounds of its windows' per-row times."""
    if "rounds" in level:
        return level["rounds"], record_confidence(level, budget)
    a, b = (list(per_row_windows(x).samples_ms) for x in (one, level))
    return rounds_of_calls(a, b, per_round=2), record_confidence(level, budget)


def xla_table(measured: dict[str, Any], budget: str) -> tuple[dict[str, Any], Any, Any]:
    """(evidence, the plain-vs-XLA Comparison, the Decision; both None when it did not compile): compile time, fidelity, the speed-up of jit_compile=True and what its rounds
    decided (``faster`` past XLA_MINIMUM, ``halves`` past XLA_MEDIUM); a record from before the rounds is judged on rounds of its calls."""
    if not measured["compiles"]:
        return {"compiles": False, "why": measured["why"]}, None, None
    plain_timing, xla_timing = timing_of(measured["plain_ms"], measured["warmup"]), timing_of(measured["xla_ms"], measured["warmup"])
    comparison = compare(plain_timing, xla_timing)
    rounds = measured.get("rounds") or rounds_of_calls(measured["plain_ms"], measured["xla_ms"])
    confidence = record_confidence(measured, budget)
    decision = decide(rounds, text.XLA_MINIMUM, confidence)
    return {
        "compiles": True,
        "compile_ms": round(max(0.0, measured["first_ms"] - xla_timing.median_ms), 2),
        "plain_ms": plain_timing.summary(),
        "xla_ms": xla_timing.summary(),
        "speedup": round(comparison.speedup.value, 3),
        "speedup_ci": rounded_ci(comparison.speedup, 3),
        "relative_l2": measured["relative_l2"],
        "decision": decision.describe("jit_compile=True", "the plain call"),
        "decided_by": decision.method,
        "faster": decision.outcome == "faster",
        "halves": decide(rounds, text.XLA_MEDIUM, confidence).outcome == "faster",
        "support": round(decision.support, 4),
    }, comparison, decision


def xla_pays(measured: dict[str, Any], max_fidelity_loss: float, budget: str) -> bool:
    """XLA decided faster past XLA_MINIMUM, with outputs within the fidelity bound."""
    xla, _, _ = xla_table(measured, budget)
    return xla_faster(xla, max_fidelity_loss)


def xla_faster(xla: dict[str, Any], max_fidelity_loss: float) -> bool:
    return xla["compiles"] and xla["faster"] and xla["relative_l2"] is not None and xla["relative_l2"] <= max_fidelity_loss


def xla_finding(sweep: Sweep, xla: dict[str, Any], comparison, decision, signature: str, on: str, suffix: str) -> Finding:
    return found(
        "serving/xla", xla,
        suffix=suffix, severity="medium" if xla["halves"] else "low", savings={"latency_pct": measure_of(comparison.saved_pct)},
        risk=Risk("low", text.XLA_RISK, fidelity_loss=xla["relative_l2"]), support=Support.decided(decision),
        on=on, speedup=f"{xla['speedup']:.2f}", batch=sweep.serving_batch, xla_ms=f"{xla['xla_ms']['median_ms']:.3f}",
        plain_ms=f"{xla['plain_ms']['median_ms']:.3f}", low=f"{xla['speedup_ci'][0]:.2f}", high=f"{xla['speedup_ci'][1]:.2f}",
        compile_ms=f"{xla['compile_ms']:.0f}", relative_l2=f"{xla['relative_l2']:.2g}", signature=signature,
    )


# --- the processes: threads, precision, oneDNN, cold start, combined ------------------------------------


def against_defaults(decision) -> str:
    """A settings table's cell: the outcome, the ratio with its interval, and the spread between processes it allowed for."""
    ratio = decision.ratio
    said = f"{decision.outcome}: {ratio.value:.2f}× [{ratio.low:.2f}–{ratio.high:.2f}]"
    if decision.between_sd:
        said += f", processes ±{100 * decision.between_sd:.0f} %"
    return said + ("; no look could decide" if decision.futile else "")


def process_findings(m: dict[str, Any], processes: dict[str, Any], batch: int, evidence: dict[str, Any]) -> list[Finding]:
    for key in ("precision_support", "onednn"):
        if key in processes:
            evidence[key] = processes[key]
    rows = [row for row in settings_rows(processes, budget_confidence(m["budget"])) if row["batch"] == batch]
    decisions = [decide(row["rounds"], text.SETTING_MINIMUM, row["confidence"]) for row in rows]
    if rows:
        defaults = timing_of(ms for row in rows for ms in row["default_ms"])
        evidence["settings"] = [{"setting": "defaults", **timing_stats(defaults, batch)}] + [
            {"setting": Setting(**row["setting"]).label(), **timing_stats(timing_of(row["ms"]), batch),
             "against_defaults": against_defaults(decision)} for row, decision in zip(rows, decisions) if row["ms"]]
    for key in ("settings_failed", "precision_fidelity"):
        if processes.get(key):
            evidence[key] = processes[key]
    candidates = setting_candidates(processes, batch, m["max_fidelity_loss"], budget_confidence(m["budget"]))
    findings = setting_findings(candidates, batch, m["max_fidelity_loss"]) + undecided_settings(rows, decisions, candidates)
    if processes.get("cold_start"):
        finding = cold_start_finding(processes["cold_start"], m, evidence)
        if finding is not None:
            findings.append(finding)
    return findings


def undecided_settings(rows: list[dict[str, Any]], decisions: list, candidates: list) -> list[Finding]:
    """Per kind of setting none of which was decided faster: the one its rounds read fastest, when the cap left it undecided
    (``decisions``: each row's against the defaults)."""
    decided_kinds = {setting.kind for _, setting, _, _ in candidates}
    open_rows: dict[str, tuple] = {}
    for row, decision in zip(rows, decisions):
        setting = Setting(**row["setting"])
        if setting.kind in decided_kinds or decision.decided:
            continue
        if setting.kind not in open_rows or decision.ratio.value < open_rows[setting.kind][0].ratio.value:
            open_rows[setting.kind] = (decision, setting, row)
    return [undecided(text.RULES[f"serving/{kind}"], f"{setting.label()} against TensorFlow's defaults at batch {row['batch']}",
                      decision.describe(setting.label(), "the defaults"), {"setting": setting.label(), "batch": row["batch"]})
            for kind, (decision, setting, row) in open_rows.items()]


def cold_start_is_slow(first_ms: list[float], warm_ms: float) -> bool:
    """Every new process's first request at least COLD_FACTOR × the warm median and COLD_MIN_MS slower."""
    return min(first_ms) >= max(text.COLD_FACTOR * warm_ms, warm_ms + text.COLD_MIN_MS)


def cold_start_finding(cold: dict[str, Any], m: dict[str, Any], evidence: dict[str, Any]) -> Finding | None:
    """What a new replica pays before its first answer, and what TF Serving's warm-up file saves of it."""
    warm, before = cold["warm_p50_ms"], cold["first_requests"]
    first, loads = [r["first_ms"] for r in before], [r["load_ms"] for r in before]
    result: dict[str, Any] = {
        "processes": len(before), "load_ms": [round(v, 1) for v in loads], "first_request_ms": [round(v, 2) for v in first],
        "second_request_ms": [round(r["second_ms"], 3) for r in before], "warm_p50_ms": warm,
    }
    evidence["cold_start"] = result
    slow = cold_start_is_slow(first, warm)
    if not slow or not cold["saved_model"]:
        if slow:
            result["warmup"] = text.WARMUP_NOT_WRITTEN
        return None
    replayed = cold.get("after_warmup") or []
    if not replayed:
        return None
    after, batches = [r["first_ms"] for r in replayed], cold["warmup_batches"]
    result.update({"warmup_batches": batches, "with_warmup_first_request_ms": [round(v, 2) for v in after],
                   "with_warmup_load_ms": [round(r["load_ms"] + r.get("warmup_ms", 0.0), 1) for r in replayed]})
    low = min(first) - max(after)
    if low <= 0:
        return None
    return found(
        "serving/cold-start", result,
        severity="medium" if np.median(first) >= text.COLD_MEDIUM_MS else "low",
        support=Support.ordered(first, after, text.COLD_ORDERED),
        savings={"latency_ms": Measure(round(float(np.median(first) - np.median(after)), 2), round(low, 2), round(max(first) - min(after), 2))},
        first_ms=f"{np.median(first):.0f}", warm_ms=f"{warm:.2f}", after_ms=f"{np.median(after):.1f}", processes=len(before),
        first_low=f"{min(first):.0f}", first_high=f"{max(first):.0f}", load_ms=f"{np.median(loads):.0f}", after_low=f"{min(after):.1f}",
        after_high=f"{max(after):.1f}", batches=", ".join(map(str, batches)), batch_list=f"{batches}",
        inputs=", ".join(f"\"{name}\": ..." for name in m["input_names"]), signature=m["signature"],
    )


def combined_table(combined: dict[str, Any]) -> dict[str, Any]:
    """The best of each knob together against the defaults at the first batch, in turns ({} when not measured): the throughput
    factor and whether it is ``confirmed`` (decided faster past SETTING_MINIMUM)."""
    if not combined:
        return {}
    first_batch, batch = combined["first_batch"], combined["batch"]
    base_timing, best_timing = timing_of(combined["default_ms"]), timing_of(combined["best_ms"])
    comparison = compare(per_row(base_timing, first_batch), per_row(best_timing, batch))
    stats = timing_stats(best_timing, batch)
    if "rounds" in combined:  # times for the same rows on both sides: the inverse ratio of rows/s
        decision = decide(combined["rounds"], text.SETTING_MINIMUM, combined["confidence"])
        low, high = ends(decision.ratio)
        factor, factor_ci, confirmed = 1 / decision.ratio.value, [1 / high, 1 / low], decision.outcome == "faster"
    else:
        factor, factor_ci = comparison.speedup.value, list(ends(comparison.speedup))
        confirmed = factor_ci[0] >= 1 + MIN_GAIN_PCT / 100
    return {
        "batch": batch, "setting": Setting(**combined["setting"]).label(), "xla": combined["xla"],
        "rows_per_s": stats["rows_per_s"], "rows_per_s_ci": stats["rows_per_s_ci"], "p99_ms": stats["p99_ms"],
        "default": timing_stats(base_timing, first_batch),
        "throughput_factor": round(factor, 2),
        "throughput_factor_ci": [round(end, 2) for end in factor_ci],
        "confirmed": confirmed,
    }


def configuration_label(combined: dict) -> str:
    parts = [f"batch {combined['batch']}"]
    if combined["setting"] != "defaults":
        parts.append(combined["setting"])
    if combined["xla"]:
        parts.append("XLA on")
    return ", ".join(parts)


def headline_of(primary: Sweep, combined: dict, combined_error: str, device: str, gains: list[str]) -> str:
    if combined_error:
        return Template(text.HEADLINE_NOT_MEASURED).substitute(error=combined_error)
    confirmed = combined and combined["confirmed"]
    if combined and gains and not confirmed:
        low, high = combined["throughput_factor_ci"]
        return Template(text.HEADLINE_NOT_CONFIRMED).substitute(
            device=device, gains=", ".join(gains), configuration=configuration_label(combined), factor=f"{combined['throughput_factor']:.2f}",
            low=f"{low:.2f}", high=f"{high:.2f}",
        )
    if not confirmed:
        return Template(text.HEADLINE_DEFAULTS).substitute(device=device, batch=primary.points[0]["batch"])
    return Template(text.HEADLINE_BEST).substitute(
        configuration=configuration_label(combined), factor=f"{combined['throughput_factor']:.1f}", p99=f"{combined['p99_ms']:.2f}",
    )


