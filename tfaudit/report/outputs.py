"""Concludes a finished (or interrupted) audit: gates, then every requested report; shared by all front ends."""
from __future__ import annotations

import os

from tfaudit.report.audit import AuditState
from tfaudit.report.fixes import write_fix_readme
from tfaudit.report.gates import apply_gates
from tfaudit.report.html import write_html
from tfaudit.report.json import write_json
from tfaudit.report.junit import write_junit
from tfaudit.report.markdown import render_markdown, write_markdown

STEP_SUMMARY_VARIABLE = "GITHUB_STEP_SUMMARY"
DEFAULT_JUNIT_GATE = "high"


def finish_audit(
    state: AuditState,
    *,
    budgets: dict[str, float] | None = None,
    baseline: tuple[str, dict] | None = None,
    report: str | None = None,
    json_path: str | None = None,
    junit: str | None = None,
    html: str | None = None,
    fail_on: str = "never",
    fix_dir: str | None = None,
) -> list[str]:
    """Apply the budgets and the baseline, then write the reports (and --fix-dir's README); returns the paths written."""
    apply_gates(state, budgets or {}, baseline)
    written = write_outputs(state, report=report, json_path=json_path, junit=junit, html=html, fail_on=fail_on)
    readme = write_fix_readme(state.findings, fix_dir, state.model_path) if fix_dir else None
    return written + ([readme] if readme else [])


def write_outputs(
    state: AuditState,
    *,
    report: str | None = None,
    json_path: str | None = None,
    junit: str | None = None,
    html: str | None = None,
    fail_on: str = "never",
) -> list[str]:
    """Write the reports asked for; returns the paths written."""
    written = []
    if report:
        images = write_markdown(state, report)
        written += [report, *images]
    if html:
        write_html(state, html)
        written.append(html)
    if json_path:
        write_json(state, json_path)
        written.append(json_path)
    if junit:
        write_junit(state, junit, fail_on if fail_on != "never" else DEFAULT_JUNIT_GATE)
        written.append(junit)
    summary = os.environ.get(STEP_SUMMARY_VARIABLE)
    if summary:
        with open(summary, "a", encoding="utf-8") as out:
            out.write(render_markdown(state) + "\n")
    return written
