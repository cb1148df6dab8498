"""The interactive front end. Same contract as ``tfaudit.headless.run_headless``."""
from __future__ import annotations

import sys

from tfaudit.tui.source import AuditSource, EventSource, ReplaySource

__all__ = ["run_tui", "run_app", "AuditSource", "ReplaySource"]


def run_tui(specs, job, *, report: str | None = None, json_path: str | None = None, record: str | None = None,
            junit: str | None = None, html: str | None = None, fail_on: str = "never", budgets: dict | None = None,
            baseline: tuple[str, dict] | None = None, fix_dir: str | None = None, profile=None) -> int:
    """Audit in the TUI; write the reports asked for at the end; return headless's exit code."""
    return run_app(AuditSource(specs, job), budget=job.budget, report=report, json_path=json_path, record=record,
                   junit=junit, html=html, fail_on=fail_on, budgets=budgets, baseline=baseline, fix_dir=fix_dir, profile=profile)


def run_app(source: EventSource, *, budget: str = "", report: str | None = None, json_path: str | None = None,
            record: str | None = None, junit: str | None = None, html: str | None = None, fail_on: str = "never",
            budgets: dict | None = None, baseline: tuple[str, dict] | None = None, fix_dir: str | None = None, profile=None) -> int:
    from tfaudit.exit_codes import EXIT_USAGE
    from tfaudit.exit_codes import exit_code
    from tfaudit.report.outputs import finish_audit
    from tfaudit.tui.app import TfauditApp

    app = TfauditApp(source, budget=budget, report=report, json_path=json_path, record=record, fix_dir=fix_dir, profile=profile)
    try:
        app.run()
    except KeyboardInterrupt:  # Ctrl-C outside Textual's own handling: still stop the worker
        app.stop.set()
        app.state.interrupted = True
    state = app.state
    if state.load_error:
        print(f"tfaudit: error: {state.load_error}", file=sys.stderr)
        return EXIT_USAGE
    written = finish_audit(
        state, budgets=budgets, baseline=baseline, report=report, json_path=json_path, junit=junit, html=html, fail_on=fail_on, fix_dir=fix_dir
    )
    for path in written:
        print(f"tfaudit: wrote {path}", file=sys.stderr)
    if state.checks:
        print(f"tfaudit: {state.verdict()}", file=sys.stderr)
    return exit_code(state, fail_on)
