"""Serving's verdicts on the knobs each timed against its default in turns: the process settings (threads, precision,
oneDNN) and LiteRT's threads (pure: no TensorFlow)."""
from __future__ import annotations

from string import Template
from typing import Any

import numpy as np

from tfaudit.api import Finding, Risk, Support, compare, decide, record_confidence, undecided

from .._compression import within_bound
from . import catalogue as text
from .findings import ends, found, measure_of, rounded_ci
from .settings import Setting
from .stats import timing_of, timing_stats


def settings_rows(processes: dict[str, Any], confidence: float) -> list[dict[str, Any]]:
    """Per setting: its rounds against the defaults (``rounds``), both sides' calls and the batch. A record from before the
    turns (``rounds_ms``: per setting and batch, per round, the calls) gives its per-round medians as the rounds, decided
    at ``confidence``, its budget's (it stored none of its own)."""
    rows = processes["settings"]
    if not rows or "rounds" in rows[0]:
        return rows
    by_key = {(Setting(**row["setting"]), row["batch"]): row["rounds_ms"] for row in rows}
    return [{"setting": setting.measured(), "batch": b, "confidence": confidence,
             "rounds": {"a_ms": medians(by_key[(Setting(), b)]), "b_ms": medians(one), "quads": 0},
             "default_ms": sum(by_key[(Setting(), b)], []), "ms": sum(one, [])}
            for (setting, b), one in by_key.items() if not setting.default and (Setting(), b) in by_key]


def setting_candidates(processes: dict[str, Any], batch: int, bound: float, confidence: float) -> list[tuple[Any, Setting, dict | None, dict]]:
    """Each setting decided faster than the defaults at ``batch`` past SETTING_MINIMUM (and kept fidelity), fastest first:
    (decision, setting, fidelity, its row)."""
    candidates = []
    for row in settings_rows(processes, confidence):
        setting = Setting(**row["setting"])
        if row["batch"] != batch:
            continue
        fid = None
        if setting.precision != "float32":
            fid = (processes.get("precision_fidelity") or {}).get(setting.precision)
            if fid is None:  # its outputs could not be compared: no fidelity, no claim
                continue
        decision = decide(row["rounds"], text.SETTING_MINIMUM, row["confidence"])
        if decision.outcome == "faster" and (fid is None or within_bound(fid, bound)):
            candidates.append((decision, setting, fid, row))
    candidates.sort(key=lambda c: c[0].ratio.value)
    return candidates


def medians(rounds: list[list[float]]) -> list[float]:
    return [float(np.median(one)) if one else float("inf") for one in rounds]


def best_setting(processes: dict[str, Any], batch: int, bound: float, confidence: float) -> Setting | None:
    """The setting the combined run times: the candidate decided fastest."""
    candidates = setting_candidates(processes, batch, bound, confidence)
    return candidates[0][1] if candidates else None


def setting_findings(candidates: list, batch: int, bound: float) -> list[Finding]:
    """The best candidate of each kind; a thread count only when decided to halve a call (SETTING_HALVES)."""
    best_of_kind: dict[str, tuple] = {}
    for candidate in candidates:
        best_of_kind.setdefault(candidate[1].kind, candidate)
    findings = []
    for decision, setting, fid, row in best_of_kind.values():
        halves = decide(row["rounds"], text.SETTING_HALVES, row["confidence"]).outcome == "faster"
        if setting.kind != "threads" or halves:
            findings.append(setting_finding(setting, decision, halves, row, fid, batch, bound))
    return findings


def setting_finding(setting: Setting, decision, halves: bool, row: dict, fid: dict | None, batch: int, bound: float) -> Finding:
    comparison = compare(timing_of(row["default_ms"]), timing_of(row["ms"]))
    saved = comparison.saved_pct
    low, high = ends(saved)
    risk = None
    if fid is not None:
        risk = Risk("medium" if fid["relative_l2"] > bound / 10 else "low",
                    Template(text.PRECISION_RISK).substitute(relative_l2=f"{fid['relative_l2']:.2g}"), fidelity_loss=fid["relative_l2"])
    return found(
        f"serving/{setting.kind}",
        {"setting": setting.label(), "batch": batch, "speedup": round(comparison.speedup.value, 3), "speedup_ci": rounded_ci(comparison.speedup, 3),
         "decision": decision.describe(setting.label(), "the defaults"), "decided_by": decision.method, **({"fidelity": fid} if fid else {})},
        severity="medium" if halves else "low", savings={"latency_pct": measure_of(saved)}, risk=risk, support=Support.decided(decision),
        setting=setting.label(), speedup=f"{comparison.speedup.value:.2f}", batch=batch, saved=f"{saved.value:.0f}", low=f"{low:.0f}",
        high=f"{high:.0f}", intra=setting.intra or 0, inter=setting.inter or 0, onednn=setting.onednn,
        intra_line=Template(text.INTRA_LINE).substitute(intra=setting.intra) if setting.intra else "",
        inter_line=Template(text.INTER_LINE).substitute(inter=setting.inter) if setting.inter else "",
        option=text.PRECISION_OPTION.get(setting.precision, ""),
    )


def litert_findings(litert: dict[str, Any], budget: str, evidence: dict[str, Any]) -> list[Finding]:
    """LiteRT num_threads for the float32 flatbuffer: the fastest count decided past LITERT_MINIMUM and to halve a call
    (LITERT_HALVES) against the default; every count's outcome is in the evidence."""
    if "error" in litert:
        evidence["litert_threads"] = litert["error"]
        return []
    counts, compared = litert["threads"], litert_comparisons(litert)
    default = timing_of(ms for one in compared for ms in one["default_ms"])
    rows = [{"num_threads": "default", **{k: v for k, v in timing_stats(default, 1).items() if k != "batch"}}]
    decided, undecided_counts = [], []
    confidence = record_confidence(litert, budget)
    for count, one in zip(counts[1:], compared):
        timing = timing_of(one["ms"])
        decision = decide(one["rounds"], text.LITERT_MINIMUM, confidence)
        rows.append({"num_threads": count, **{k: v for k, v in timing_stats(timing, 1).items() if k != "batch"},
                     "against_default": decision.outcome})
        halves = decide(one["rounds"], text.LITERT_HALVES, confidence).outcome == "faster"
        if decision.outcome == "faster" and halves:
            decided.append((decision, count, timing, one))
        elif not decision.decided:
            undecided_counts.append((decision, count))
    evidence["litert_threads"] = rows
    if not decided:
        return undecided_litert(undecided_counts, rows)
    decision, count, timing, one = min(decided, key=lambda d: d[0].ratio.value)
    comparison = compare(timing_of(one["default_ms"]), timing)
    return [found(
        "serving/litert-threads", {"litert_threads": rows, "decision": decision.describe(f"{count} threads", "the default"),
                                   "decided_by": decision.method},
        severity="medium", savings={"latency_pct": measure_of(comparison.saved_pct)}, support=Support.decided(decision),
        threads=count, speedup=f"{comparison.speedup.value:.2f}", ms=f"{timing.median_ms:.3f}", default_ms=f"{default.median_ms:.3f}",
    )]


def undecided_litert(undecided_counts: list[tuple[Any, Any]], rows: list[dict[str, Any]]) -> list[Finding]:
    """Of the (decision, count) the budget left undecided, the count its rounds read fastest (none when there are none)."""
    if not undecided_counts:
        return []
    decision, count = min(undecided_counts, key=lambda d: d[0].ratio.value)
    return [undecided(text.RULES["serving/litert-threads"], f"LiteRT with num_threads={count} against its default",
                      decision.describe(f"{count} threads", "the default"), {"litert_threads": rows})]


def litert_comparisons(litert: dict[str, Any]) -> list[dict[str, Any]]:
    """Per count past the default: its rounds against the default and both sides' calls. A record from before the rounds
    (``rounds_ms``: per count, per round, the calls, the counts in turn) gives its per-round medians as the rounds."""
    if "compared" in litert:
        return litert["compared"]
    default_rounds = litert["rounds_ms"][0]
    return [{"rounds": {"a_ms": medians(default_rounds), "b_ms": medians(rounds), "quads": 0},
             "default_ms": sum(default_rounds, []), "ms": sum(rounds, [])} for rounds in litert["rounds_ms"][1:]]
