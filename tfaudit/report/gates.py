"""CI gates applied after the audit: metric budgets and the comparison with a baseline report.

Budgets: ``"check.name" = limit`` is the worst acceptable value of that metric (a maximum
for lower-is-better metrics, a minimum for higher-is-better ones). A budget is violated
only when the whole measured interval is past the limit (the point value when the metric
has no interval): noise alone never fails a build. Each violation is a ``budget/<metric>``
finding of severity high, and exits 1.

Baseline (``--baseline OLD.json``, an earlier JSON report). One run's interval sees only the
noise within that run; between runs a shared host drifts by more (the same MLP measured 0.163
[0.161–0.169] ms, then 0.188 [0.176–0.202] ms). So a metric regressed only when

- its subject is the same (a metric whose value is of a choice the check made, the recommended
  quantization variant say, is compared only with the same choice; others are listed as not
  comparable);
- a latency (unit ms) or a throughput (rows/s, inverted) of a check that also timed the host's reference workload alternately with
  it (its ``host_index_ms`` metric, tfaudit.engine.host_index) is first scaled by the ratio of the two
  runs' indexes, so a busier host is not read as a slower model;
- its new interval lies entirely on the worse side of the old interval, and
- a timed metric is also worse by at least its practical minimum (``REGRESSION_MINIMUM``, 10 % of a call;
  ``TAIL_MINIMUM_FACTOR`` for a ``.p99_`` metric), and the whole run shows it: one process's latency ÷ reference now
  and then reads far off the others, so the serving check times the call and the reference in turn in each fresh process
  (``batch_1_per_reference`` for latencies, ``serving_batch_per_reference`` for throughput, with their spreads and
  process counts), and a slower metric counts only when those processes, taken together, ran slower per unit of
  reference by the minimum at least (``host_index.slower_at_least``: Student's t on the two runs' processes, at the run's
  budget confidence shared over the timed metrics compared: Bonferroni). One process reading slow alone is listed as
  unconfirmed, never as a regression; so is a slowdown whose noise was not measured: its check timed no reference in
  one of the runs, or a run lacks the processes' ratios (a baseline from before them, the serving check not run), and
  the row says which;

metrics without intervals (sizes, counts) regress when they worsen by more than
``REL_TOLERANCE``.

Baseline model (``--baseline-model OLD_MODEL``): the retracing check times the old export
against the new one in ABBA rounds in the same process, with the old export loaded a second time
beside them (``tfaudit.engine.sequential``), until the ratio's interval decides;
``retracing.latency_vs_baseline_model`` regresses when that decision is "slower": the interval
lies wholly past the check's practical minimum (10 % of a call), widened to what the two loads of
the old export differ by. "The same" and "undecided" pass. It needs no baseline report, and is
never compared across reports. Regressions exit 1 and are listed first. New and resolved findings are listed;
they gate through ``--fail-on`` as usual. A baseline from another host, TensorFlow version or budget is
compared all the same, with a warning.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from tfaudit.api import (BASELINE_MODEL_METRIC, HOST_INDEX_METRIC as HOST_INDEX, INTERVAL_LEVEL, PER_REFERENCE_METRICS, REGRESSION_MINIMUM,
                         SPREAD_SUFFIX, Effort, Finding, Fix)
from tfaudit.budget import BUDGETS
from tfaudit.config import RENAMED_METRICS
from tfaudit.engine.host_index import slower_at_least

REL_TOLERANCE = 0.02
# A tail (.p99_) needs twice the baseline: a p99 that less than doubles stays inside the headroom a service keeps for its
# tail, and a tail is the host's jitter more than the model (unchanged MLP runs: p99 ×1.59 host-scaled while the p50 fell).
TAIL_MINIMUM_FACTOR = 2.0
# Why a slowdown past its interval and its minimum is listed "not confirmed", not failed:
ONE_PROCESS = "slower in its process; the run's processes together were not"
NO_REFERENCE = "its check timed no reference workload alongside it in both runs: the host's drift is unmeasured"
NO_PROCESSES = "a run lacks the serving check's processes timed against the reference: the noise between processes is unmeasured"
LATENCY_UNIT = "ms"
THROUGHPUT_UNIT = "rows/s"  # judged like a latency (host-scaled, a minimum factor), inverted
TIMED_UNITS = (LATENCY_UNIT, THROUGHPUT_UNIT)
FINGERPRINT_KEYS = ("cpu", "cores_logical", "tensorflow")


class BaselineError(Exception):
    """A --baseline file that cannot be used; the message is one line."""


def load_baseline(path: str) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except FileNotFoundError:
        raise BaselineError(f"--baseline file not found: {path}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BaselineError(f"--baseline {path} is not JSON: {exc}") from None
    if not isinstance(data, dict) or data.get("tool", {}).get("name") != "tfaudit":
        raise BaselineError(f"--baseline {path} is not a tfaudit JSON report")
    if data.get("schema_version") != "1":
        raise BaselineError(f"--baseline {path} has schema_version {data.get('schema_version')!r}; this tfaudit reads '1'")
    if not isinstance(data.get("findings"), list) or not isinstance(data.get("metrics", {}), dict):
        raise BaselineError(f"--baseline {path} lacks findings or metrics")
    return data


def _bounds(metric: dict[str, Any]) -> tuple[float, float]:
    low, high = metric.get("low"), metric.get("high")
    value = metric["value"]
    return (value if low is None else low, value if high is None else high)


def _worse(new: dict[str, Any], old: dict[str, Any], factor: float) -> bool:
    """True when ``new`` is worse than ``old`` beyond the noise both measurements show (and ``factor`` for latencies)."""
    lower_is_better = new.get("better", "lower") == "lower"
    has_intervals = new.get("low") is not None and old.get("low") is not None
    if has_intervals:
        new_low, new_high = _bounds(new)
        old_low, old_high = _bounds(old)
        separated = new_low > old_high if lower_is_better else new_high < old_low
        if not separated or new.get("unit") not in TIMED_UNITS:
            return separated
        ratio = new["value"] / old["value"] if old["value"] > 0 else float("inf")
        return ratio >= factor if lower_is_better else ratio <= 1 / factor
    tolerance = REL_TOLERANCE * abs(old["value"])
    change = new["value"] - old["value"]
    return change > tolerance if lower_is_better else change < -tolerance


def host_scale(name: str, old_metrics: dict[str, Any], new_metrics: dict[str, Any]) -> float | None:
    """How much slower the host was for this metric's check now than in the baseline; None without both indexes."""
    key = f"{name.partition('.')[0]}.{HOST_INDEX}"
    old_ms, new_ms = ((metrics.get(key) or {}).get("value") for metrics in (old_metrics, new_metrics))
    return new_ms / old_ms if old_ms and new_ms else None


def scaled(metric: dict[str, Any], factor: float) -> dict[str, Any]:
    return {**metric, **{k: metric[k] * factor for k in ("value", "low", "high") if metric.get(k) is not None}}


def run_ratios(metrics: dict[str, Any]) -> dict[str, dict[str, float]]:
    """Per kind ("latency", "throughput"), the run's processes' call ÷ reference (``host_index.process_ratios``' fields)."""
    found: dict[str, dict[str, float]] = {}
    for kind, name in PER_REFERENCE_METRICS.items():
        ratio = next((m for key, m in sorted(metrics.items()) if key.endswith("." + name)), None)
        spread = next((m for key, m in sorted(metrics.items()) if key.endswith("." + name + SPREAD_SUFFIX)), None)
        if ratio and spread and (ratio.get("samples") or 0) >= 2:
            found[kind] = {"ratio": ratio["value"], "spread_pct": spread["value"], "processes": ratio["samples"], "subject": ratio.get("subject", "")}
    return found


def whole_runs(old_metrics: dict[str, Any], new_metrics: dict[str, Any], level: float) -> dict[str, Any]:
    """Per kind both runs measured: how many times slower the new run's processes ran per unit of reference, at least, at
    ``level`` (``slower``), with the ratios and spreads behind it."""
    old, new = run_ratios(old_metrics), run_ratios(new_metrics)
    return {kind: {"slower": slower_at_least(old[kind], new[kind], level),
                   "ratios": [old[kind]["ratio"], new[kind]["ratio"]], "spreads_pct": [old[kind]["spread_pct"], new[kind]["spread_pct"]],
                   "processes": [old[kind]["processes"], new[kind]["processes"]]}
            for kind in old.keys() & new.keys() if old[kind]["subject"] == new[kind]["subject"]}  # the same batch: like with like


@dataclass
class BaselineComparison:
    path: str
    warnings: list[str] = field(default_factory=list)
    level: float = INTERVAL_LEVEL  # one-sided, per timed metric: the run's budget confidence shared over them
    whole_runs: dict[str, Any] = field(default_factory=dict)  # per kind: what every process of the two runs shows (whole_runs)
    regressions: list[dict[str, Any]] = field(default_factory=list)
    improvements: list[dict[str, Any]] = field(default_factory=list)
    not_comparable: list[dict[str, Any]] = field(default_factory=list)  # the same metric of different subjects
    unconfirmed: list[dict[str, Any]] = field(default_factory=list)  # slower in its process, not in the run's processes together
    new_findings: list[str] = field(default_factory=list)
    resolved_findings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def minimum_factor(name: str) -> float:
    return TAIL_MINIMUM_FACTOR if ".p99_" in name else 1 + REGRESSION_MINIMUM.relative


def compare_with_baseline(path: str, old: dict[str, Any], metrics: dict, findings: list[Finding], environment: dict,
                          confidence: float = INTERVAL_LEVEL, budget: str | None = None) -> BaselineComparison:
    """``confidence``: the run's budget's; the timed metrics compared share its error rate."""
    result = BaselineComparison(path=path)
    old_env = old.get("environment", {})
    for key in FINGERPRINT_KEYS:
        if old_env.get(key) != environment.get(key):
            result.warnings.append(f"baseline {key} was {old_env.get(key)!r}, this run {environment.get(key)!r}: timings may not compare")
    if budget and old.get("budget") and old["budget"] != budget:
        result.warnings.append(f"baseline was measured at --budget {old['budget']}, this run at {budget}: fidelity is measured on "
                               "another number of samples and timings over other windows; compare runs of one budget")
    old_metrics = old.get("metrics", {})
    for name in sorted(set(old_metrics) & set(RENAMED_METRICS)):
        result.warnings.append(f"baseline metric {name} is now {RENAMED_METRICS[name]}: not compared")
    host_only = ("." + HOST_INDEX, "." + BASELINE_MODEL_METRIC, *(f".{n}{s}" for n in PER_REFERENCE_METRICS.values() for s in ("", SPREAD_SUFFIX)))
    compared = [n for n in sorted(set(metrics) & set(old_metrics)) if not n.endswith(host_only)]  # the host; within each run
    timed = sum(metrics[n].get("unit") in TIMED_UNITS for n in compared)
    result.level = 1 - (1 - confidence) / max(1, timed)
    result.whole_runs = whole_runs(old_metrics, metrics, result.level)
    for name in compared:
        new_metric, old_metric = metrics[name], old_metrics[name]
        row = {"metric": name, "unit": new_metric.get("unit", ""), "old": old_metric, "new": new_metric}
        if new_metric.get("subject", "") != old_metric.get("subject", ""):
            result.not_comparable.append(row)
            continue
        throughput = new_metric.get("unit") == THROUGHPUT_UNIT
        factor, unshown = 1.0, ""
        if new_metric.get("unit") in TIMED_UNITS:
            factor = row["factor"] = minimum_factor(name)
            scale = host_scale(name, old_metrics, metrics)
            whole = result.whole_runs.get("throughput" if throughput else "latency")
            if scale is None:
                unshown = NO_REFERENCE
            elif whole is None:
                unshown = NO_PROCESSES
            elif whole["slower"] < 1 + REGRESSION_MINIMUM.relative:
                unshown = ONE_PROCESS
            if scale is not None:
                row["host_scale"] = scale
                row["old_scaled"] = old_metric = scaled(old_metric, 1 / scale if throughput else scale)  # a slower host serves fewer rows
        if _worse(new_metric, old_metric, factor):  # a regression fails the build: the run's processes must show it too
            if unshown:
                row["why"] = unshown
            (result.unconfirmed if unshown else result.regressions).append(row)
        elif _worse(old_metric, new_metric, factor) and unshown in ("", ONE_PROCESS):  # no claim on noise nobody measured
            result.improvements.append(row)
    actionable = lambda items: {f["id"] for f in items if f.get("severity") != "info"}  # noqa: E731
    now = actionable([f.to_dict() for f in findings])
    before = actionable(old["findings"])
    result.new_findings = sorted(now - before)
    result.resolved_findings = sorted(before - now)
    return result


@dataclass
class BudgetResult:
    metric: str
    limit: float
    status: str  # "ok", "violated" or "not measured"
    value: float | None = None
    low: float | None = None
    high: float | None = None
    unit: str = ""


def check_budgets(budgets: dict[str, float], metrics: dict[str, dict[str, Any]]) -> list[BudgetResult]:
    results = []
    for name, limit in sorted(budgets.items()):
        metric = metrics.get(name)
        if metric is None:
            results.append(BudgetResult(name, limit, "not measured"))
            continue
        low, high = _bounds(metric)
        lower_is_better = metric.get("better", "lower") == "lower"
        violated = low > limit if lower_is_better else high < limit
        results.append(
            BudgetResult(name, limit, "violated" if violated else "ok", metric["value"], metric.get("low"), metric.get("high"), metric.get("unit", ""))
        )
    return results


def budget_finding(result: BudgetResult) -> Finding:
    check = "budget"
    interval = "" if result.low is None else f" (95% interval {result.low:.4g}–{result.high:.4g})"
    return Finding(
        id=f"{check}/{result.metric}",
        check=check,
        severity="high",
        title=f"Budget exceeded: {result.metric} = {result.value:.4g} {result.unit}, limit {result.limit:.4g}",
        summary=f"`{result.metric}` measured {result.value:.4g} {result.unit}{interval}; the configured budget is {result.limit:.4g}. The whole interval is past the limit, so noise does not explain it.",
        evidence={"metric": result.metric, "value": result.value, "low": result.low, "high": result.high, "limit": result.limit, "unit": result.unit},
        effort=Effort("hours", 2, "Depends on the cause; the other findings of this report are the first places to look."),
        fix=Fix("Fix what regressed (see the other findings), or raise the budget in [tool.tfaudit.budgets] if the change is intended."),
        savings={},
        why="A budget is the worst value this project accepts; CI fails until it holds again.",
        verify="Re-run tfaudit with the same --config: the budget row reads ok.",
    )


def apply_gates(state, budgets: dict[str, float], baseline: tuple[str, dict[str, Any]] | None) -> None:
    """Evaluate budgets and the baseline on a finished audit; budget violations become findings."""
    state.budget_results = check_budgets(budgets, state.metrics)
    state.findings.extend(budget_finding(r) for r in state.budget_results if r.status == "violated")
    if baseline is not None:
        path, old = baseline
        confidence = BUDGETS.get(state.budget, BUDGETS["standard"]).confidence
        state.baseline = compare_with_baseline(path, old, state.metrics, state.findings, state.environment or {}, confidence,
                                               state.budget)
    for name, metric in sorted(state.metrics.items()):
        if name.endswith("." + BASELINE_MODEL_METRIC):
            if state.baseline is None:
                state.baseline = BaselineComparison(path=metric.get("subject") or "--baseline-model")
            gate_baseline_model(state.baseline, name, metric)


def gate_baseline_model(comparison: BaselineComparison, name: str, ratio: dict[str, Any]) -> None:
    """A new/old latency ratio decided within this run: a regression when the new export is slower past the band."""
    row = {"metric": name, "unit": ratio["unit"], "old": {"value": 1.0, "unit": ratio["unit"]}, "new": ratio}
    outcome = (ratio.get("decision") or {}).get("outcome")
    if outcome == "slower":
        comparison.regressions.append(row)
    elif outcome == "faster":
        comparison.improvements.append(row)
