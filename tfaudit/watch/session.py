"""A watched run as an audit state: the same reports, gates and exit codes as an audit (no TensorFlow)."""
from __future__ import annotations

import time

from tfaudit.api import Finding
from tfaudit.events import CheckFinished, CheckStarted, FindingEmitted, MetricEmitted
from tfaudit.report.audit import AuditState
from tfaudit.watch import catalogue as text
from tfaudit.watch.analysis import CHECK, Analysis, change_text, fill, site_text
from tfaudit.watch.catalogue import RULES

TITLE = "tf.function traces in the running program"


def trace_log(analysis: Analysis) -> list[dict]:
    return [
        {"seq": t["seq"], "at_s": round(t["t"], 3), "function": t["function"]["qualname"], "object": t["instance"],
         "call_site": site_text(t["call_site"]), "what_changed": "; ".join(change_text(c) for c in t["changes"]) or (text.LOG_NEW_OBJECT if t.get("new_object") else text.LOG_FIRST),
         "trace_ms": t["trace_ms"], "graph_ops": t["ops"], "error": (t["error"] or {}).get("message")}
        for t in analysis.traces
    ]


def summary_finding(analysis: Analysis, command: str, wall_s: float, exit_status: int | None) -> Finding:
    user = [r for r in analysis.functions if not r["library"]]
    return RULES[f"{CHECK}/summary"].finding(
        {"functions": [{k: v for k, v in row.items() if k != "key"} for row in analysis.functions], "traces": trace_log(analysis)},
        traces=len(analysis.traces), functions=len(analysis.functions), yours=len(user), seconds=f"{wall_s:.1f}", command=command,
        exited="" if exit_status is None else fill(text.EXITED, status=exit_status),
    )


def watch_state(analysis: Analysis, command: str, wall_s: float, *, exit_status: int | None = None, hook_error: str = "",
                tensorflow: str = "", interrupted: bool = False) -> AuditState:
    from tfaudit.engine.resources import host_environment

    state = AuditState(model_path=command, budget="watch")
    state.started_at = time.time() - wall_s
    state.environment = {**host_environment(), "tensorflow": tensorflow or None}
    state.apply(CheckStarted(CHECK, TITLE))
    for metric in analysis.metrics:
        state.apply(MetricEmitted(CHECK, metric.name, metric.value, metric.unit, metric.low, metric.high, metric.better, metric.subject))
    for finding in [*analysis.findings, summary_finding(analysis, command, wall_s, exit_status)]:
        state.apply(FindingEmitted(CHECK, finding.to_dict()))
    status = "errored" if hook_error else "findings" if analysis.findings else "passed"
    state.apply(CheckFinished(CHECK, status, round(wall_s, 3), error=hook_error))
    state.interrupted = interrupted
    state.finished_at = time.time()
    return state


def summary_text(analysis: Analysis, findings: bool = True) -> str:
    lines = [f"{len(analysis.traces)} traces of {len(analysis.functions)} functions"]
    for row in analysis.functions:
        if not row["library"]:
            lines.append(f"  {row['function']} ({row['defined_at']}): {row['traces']} traces, {row['calls']} calls, {row['objects']} objects"
                         + (f"; last change {row['last_change']}" if row["last_change"] else ""))
    for finding in analysis.findings if findings else []:
        lines.append(f"[{finding.severity}] {finding.title}")
    return "\n".join(lines)
