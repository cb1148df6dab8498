"""Headless front end: progress on stderr, the ranked table on stdout, reports, exit code."""
from __future__ import annotations

import os
import sys
import time
from typing import IO

from rich.console import Console, Group
from rich.live import Live
from rich.markup import escape
from rich.table import Table

from tfaudit.report.audit import AuditState
from tfaudit.exit_codes import EXIT_USAGE, exit_code
from tfaudit.events import CheckFinished, CheckProgress, CheckStarted, Event, ModelLoaded, to_json
from tfaudit.engine.registry import CheckSpec
from tfaudit.report.format import (NARROW_COLUMNS, NARROW_RANKED_COLUMNS, audited_text, pipeline_text, confidence_cell, effort_text, human_bytes, plural,
                                   risk_text, saving_text, worth_cell)
from tfaudit.report.profiles import Profile, assumptions
from tfaudit.report.outputs import finish_audit
from tfaudit.engine.runner import AuditJob, run_audit

PLAIN_PROGRESS_INTERVAL_S = 2.0
WIDEST_CELL = 24  # a ranked table's cell (but the finding's) wraps past this
DROP_ORDER = ("risk", "confidence", "saving", "effort", "severity", "worth")  # what a narrow table gives up first
STATUS_STYLE = {"passed": "green", "findings": "yellow", "skipped": "dim", "errored": "red", "running": "cyan", "pending": "dim"}


def model_line(inv: dict) -> str:
    if inv.get("kind") == "pipeline":
        return f"pipeline: {pipeline_text(inv)}"
    return f"model: {inv['format']}, {audited_text(inv)}, {inv['variables']['parameters']:,} parameters, {human_bytes(inv['size_bytes'])} on disk"


class PlainProgress:
    """One line per event worth a line: for CI logs and pipes."""

    def __init__(self, out: IO[str]) -> None:
        self.out = out
        self.last_progress: dict[str, float] = {}

    def handle(self, event: Event, state: AuditState) -> None:
        line = ""
        if isinstance(event, ModelLoaded):
            line = model_line(event.inventory)
        elif isinstance(event, CheckStarted):
            line = f"[{event.check}] started"
        elif isinstance(event, CheckProgress) and event.message:
            now = time.monotonic()
            if now - self.last_progress.get(event.check, 0.0) >= PLAIN_PROGRESS_INTERVAL_S:
                self.last_progress[event.check] = now
                line = f"[{event.check}] {event.fraction:4.0%} {event.message}"
        elif isinstance(event, CheckFinished):
            found = sum(1 for f in state.recommendations() if f.check == event.check)
            detail = f" ({plural(found, 'finding')})" if found else ""
            line = f"[{event.check}] {event.status}{detail} in {event.duration_s:.1f} s" + (f": {event.error}" if event.error else "")
        if line:
            print(line, file=self.out, flush=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        pass


class LiveProgress:
    """A live table of checks on an interactive stderr."""

    def __init__(self, console: Console, state: AuditState) -> None:
        self.state = state
        self.started = {}
        self.live = Live(get_renderable=self.render, console=console, refresh_per_second=8, transient=False)

    def render(self) -> Group:
        if self.state.inventory is not None:
            header = model_line(self.state.inventory)
        else:
            header = "[cyan]loading model…[/]" if not self.state.load_error else ""
        table = Table.grid(padding=(0, 2))
        for check in self.state.checks.values():
            elapsed = check.duration_s if check.duration_s is not None else time.monotonic() - self.started.get(check.id, time.monotonic())
            note = check.error if check.status in ("errored", "skipped") else check.message
            style = STATUS_STYLE.get(check.status, "")
            table.add_row(f"[{style}]{check.status:>8}[/]", check.id, f"{check.fraction:4.0%}", f"{elapsed:6.1f} s", note)
        return Group(header, table)

    def handle(self, event: Event, state: AuditState) -> None:
        if isinstance(event, CheckStarted):
            self.started[event.check] = time.monotonic()

    def __enter__(self):
        self.live.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self.live.__exit__(*exc)


def ranked_table(state: AuditState, width: int | None = None, findings: list | None = None, title: str = "") -> Table:
    """The opportunities (or ``findings``, the diagnostics) in a table. Below NARROW_COLUMNS only the narrow columns; then
    columns are dropped (DROP_ORDER) until the others fit at their width beside the finding column's longest id."""
    opportunities = findings is None
    findings = state.opportunities() if findings is None else findings
    profile = state.profile
    title = title or f"Opportunities: {profile.unit} saved at {profile.label}, ranked by what each buys for the effort"
    table = Table(title=title, title_justify="left")
    longest_id = max((len(f.id) for f in findings), default=10)
    rows = [{"#": str(i), "severity": f.severity, "saving": saving_text(f), "worth": worth_cell(f), "effort": effort_text(f),
             "confidence": confidence_cell(f), "risk": risk_text(f),
             "finding": f"{escape(f.title)}\n[dim]{f.id}{'; applies if ' + escape(f.applies_if) if f.applies_if else ''}[/]"}
            for i, f in enumerate(findings, 1)]
    wide = ("#", "severity", "finding", "worth", "saving", "effort", "confidence", "risk") if opportunities else ("#", "severity", "finding", "saving", "effort")
    columns = [c for c in wide if c in NARROW_RANKED_COLUMNS] if width is not None and width < NARROW_COLUMNS else list(wide)
    headers = {"worth": profile.unit, "saving": "measured saving" if opportunities else "measured"}

    def cell_width(column: str) -> int:  # a cell's widest line: WIDEST_CELL, wrapping longer ones; the finding column its longest id
        if column == "finding":
            return longest_id
        texts = [headers.get(column, column)] + [r[column] for r in rows]
        return max([min(len(text), WIDEST_CELL) for text in texts] + [len(word) for text in texts for word in text.split()])

    def needed() -> int:  # so that only the finding column wraps to fit, and never below its longest id
        return 1 + sum(3 + cell_width(c) for c in columns)

    for column in DROP_ORDER:
        if width is None or needed() <= width:
            break
        if column in columns:
            columns.remove(column)
    for column in columns:
        table.add_column(headers.get(column, column), overflow="fold", min_width=longest_id if column == "finding" else None,
                         max_width=None if column == "finding" else WIDEST_CELL)
    for row in rows:
        table.add_row(*(row[c] for c in columns))
    return table


def github_annotations(state: AuditState, fail_on: str, out: IO[str]) -> None:
    """With GITHUB_ACTIONS set, each finding at or above --fail-on as an ::error annotation (high and critical ones as
    ::warning when nothing fails the job), so the pull request shows them."""
    from tfaudit.api import severity_rank

    threshold = "high" if fail_on == "never" else fail_on
    for f in state.recommendations():
        if severity_rank(f.severity) <= severity_rank(threshold):
            level = "warning" if fail_on == "never" else "error"
            message = f"{f.title} ({f.severity}; saving {saving_text(f)}). tfaudit explain {f.id}"
            print(f"::{level} title=tfaudit {annotation_escape(f.id)}::{annotation_escape(message)}", file=out)


def annotation_escape(text: str) -> str:
    """GitHub's workflow-command escaping: %, CR and LF."""
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def print_gates(state: AuditState, out: Console) -> None:
    comparison = state.baseline
    if comparison is not None:
        for warning in comparison.warnings:
            out.print(f"[yellow]baseline warning:[/] {warning}")
        for row in comparison.regressions:
            out.print(f"[red]regressed:[/] {row['metric']} {row['old']['value']:.4g} → {row['new']['value']:.4g} {row['unit']}")
        for row in comparison.unconfirmed:
            out.print(f"[yellow]not confirmed:[/] {row['metric']} {row['old']['value']:.4g} → {row['new']['value']:.4g} {row['unit']} "
                      f"({row['why']})")
        for row in comparison.not_comparable:
            out.print(f"not comparable: {row['metric']} of {row['old'].get('subject') or '?'} then {row['new'].get('subject') or '?'}")
        for row in comparison.improvements:
            out.print(f"[green]improved:[/] {row['metric']} {row['old']['value']:.4g} → {row['new']['value']:.4g} {row['unit']}")
        out.print(f"new findings: {', '.join(comparison.new_findings) or 'none'}; resolved: {', '.join(comparison.resolved_findings) or 'none'}")
    for result in state.budget_results:
        if result.status != "ok":
            out.print(f"[red]budget {result.status}:[/] {result.metric} (limit {result.limit:.4g})")


def print_summary(state: AuditState, out: Console) -> None:
    print_gates(state, out)  # regressions first
    if state.opportunities():
        out.print(ranked_table(state, out.width))
        for line in assumptions(state.profile, state.basis()):
            out.print(f"[dim]  assuming {escape(line)}[/]")
    if state.diagnostics():
        out.print(ranked_table(state, out.width, state.diagnostics(), "Diagnostics: to act on, without a saving priced here"))
    for f in state.undecided():
        out.print(f"[yellow]undecided:[/] {f.id}: {escape(f.title.removeprefix('Undecided: '))} (a larger --budget may decide it)")
    passed = state.passed()
    if passed and state.checks:
        out.print("Passed: " + ", ".join(c.id for c in passed) + " (nothing to fix; what each measured is in the reports)")
    notes = f" {plural(len(state.notes()), 'measurement note')} in the reports." if state.notes() and not state.recommendations() else ""
    out.print(escape(state.verdict()) + notes, style="red" if state.errored() else None)
    for check in state.errored():
        out.print(f"[red]check {check.id} errored:[/] {escape(check.error)}")
    if state.interrupted:
        out.print("[yellow]interrupted: results above are what finished[/]")


def run_headless(
    specs: list[CheckSpec],
    job: AuditJob,
    *,
    report: str | None = None,
    json_path: str | None = None,
    record: str | None = None,
    junit: str | None = None,
    html: str | None = None,
    fail_on: str = "never",
    budgets: dict[str, float] | None = None,
    baseline: tuple[str, dict] | None = None,
    fix_dir: str | None = None,
    profile: Profile | None = None,
) -> int:
    state = AuditState(model_path=job.model, budget=job.budget, profile=profile or Profile())
    err = Console(stderr=True)
    progress = LiveProgress(err, state) if err.is_terminal else PlainProgress(sys.stderr)
    recording = open(record, "w", encoding="utf-8") if record else None

    def on_event(event: Event) -> None:
        state.apply(event)
        progress.handle(event, state)
        if recording:
            recording.write(to_json(event) + "\n")

    try:
        with progress:
            run_audit(specs, job, on_event)
    except KeyboardInterrupt:
        state.interrupted = True
    finally:
        state.finished_at = time.time()
        if recording:
            recording.close()
    if state.load_error:
        print(f"tfaudit: error: {state.load_error}", file=sys.stderr)
        return EXIT_USAGE
    written = finish_audit(
        state, budgets=budgets, baseline=baseline, report=report, json_path=json_path, junit=junit, html=html, fail_on=fail_on, fix_dir=fix_dir
    )
    out = Console(width=None if sys.stdout.isatty() else 120, highlight=False)
    print_summary(state, out)
    if os.environ.get("GITHUB_ACTIONS") == "true":
        github_annotations(state, fail_on, sys.stdout)
    for path in written:
        print(f"tfaudit: wrote {path}", file=sys.stderr)
    return exit_code(state, fail_on)
