"""The verdict counts what failed: the same sentence in the headless summary, the TUI, every report, and the exit code (no TensorFlow)."""
import json
import xml.etree.ElementTree as ET

import pytest
from rich.console import Console

from tfaudit.events import CheckFinished, CheckStarted, FindingEmitted, ModelLoaded
from tfaudit.exit_codes import EXIT_CHECK_ERRORED, EXIT_FINDINGS, EXIT_OK, exit_code
from tfaudit.headless import print_summary
from tfaudit.report.audit import AuditState
from tfaudit.report.json import render_json
from tfaudit.report.junit import render_junit
from tfaudit.report.markdown import render_markdown

from tfaudit.api import Measure

from test_reports import ENVIRONMENT, INVENTORY, finding

IMPORT_ERROR = "ModuleNotFoundError: No module named 'tfaudit.checks'"
CHECKS = ("safety", "retracing", "memory", "quantization", "pruning", "serving")


def audited(statuses: dict[str, str], findings=()) -> AuditState:
    state = AuditState(model_path="/m", budget="quick")
    state.apply(ModelLoaded(INVENTORY, ENVIRONMENT))
    for check, status in statuses.items():
        state.apply(CheckStarted(check, check.title()))
        for f in findings:
            if f.check == check:
                state.apply(FindingEmitted(check, f.to_dict()))
        state.apply(CheckFinished(check, status, 0.0, IMPORT_ERROR if status == "errored" else ""))
    return state


def every_text(state: AuditState) -> dict[str, str]:
    """What a user reads: the headless summary, the Markdown (and so HTML) report, the JSON verdict, the JUnit property."""
    console = Console(record=True, width=200)
    print_summary(state, console)
    junit = ET.fromstring(render_junit(state, gate="never"))
    return {
        "headless": console.export_text(),
        "markdown": render_markdown(state),
        "json": json.loads(render_json(state))["verdict"],
        "junit": junit.find("properties/property[@name='verdict']").get("value"),
    }


@pytest.mark.parametrize("statuses, expected", [
    (dict.fromkeys(CHECKS, "errored"), f"All 6 checks errored; nothing was measured (first: safety: {IMPORT_ERROR})."),
    ({"safety": "errored", "retracing": "errored", "memory": "passed"},
     f"No findings from the 1 check that finished, but 2 of 3 checks errored: the audit is incomplete (first: safety: {IMPORT_ERROR})."),
])
def test_errored_checks_are_counted_never_nothing_needs_fixing_and_exit_3(statuses, expected):
    state = audited(statuses)
    assert state.verdict() == expected
    for where, text in every_text(state).items():
        assert expected in text, where
        assert "needs fixing" not in text, where
    assert exit_code(state, "never") == EXIT_CHECK_ERRORED
    assert exit_code(state, "low") == EXIT_CHECK_ERRORED  # no finding to gate on: the audit is what failed


def test_findings_with_an_errored_check_still_say_the_audit_is_incomplete():
    wrapper = finding("retracing", "wrapper")
    state = audited({"retracing": "findings", "memory": "errored"}, [wrapper])
    assert state.verdict().startswith("1 finding from the 1 check that finished, but 1 of 2 checks errored")
    texts = every_text(state)
    assert "> **Incomplete:** 1 finding from the 1 check" in texts["markdown"]
    assert "wrapper title" in texts["headless"]  # the ranked table is still shown
    assert exit_code(state, "medium") == EXIT_FINDINGS  # a certain gate failure outranks an incomplete run
    assert exit_code(state, "never") == EXIT_CHECK_ERRORED


def test_a_clean_audit_and_one_with_findings():
    clean = audited({"safety": "passed", "memory": "skipped"})
    assert clean.verdict() == "No findings: nothing measured needs fixing (1 of 2 checks passed, 1 skipped)."
    assert exit_code(clean, "never") == EXIT_OK
    found = audited({"retracing": "findings"}, [finding("retracing", "a", severity="high"), finding("retracing", "b", severity="low")])
    assert found.verdict() == "2 findings to fix (1 high, 1 low): none with a saving priced (server at 100 req/s), 2 diagnostics."
    priced = audited({"retracing": "findings"}, [finding("retracing", "a", severity="high", savings={"size_bytes": Measure(1e6)})])
    assert priced.verdict() == "1 finding to fix (1 high): 1 opportunity ranked by $/month saved (server at 100 req/s) for the effort."


def test_no_check_ran():
    state = AuditState(model_path="/m", budget="quick")
    assert state.verdict() == "No check ran; nothing was measured."


def test_the_tui_shows_the_verdict_when_the_audit_ends():
    import asyncio

    from tfaudit.tui.app import TfauditApp
    from tfaudit.tui.source import ReplaySource

    events = [ModelLoaded(INVENTORY, ENVIRONMENT)]
    for check in ("safety", "memory"):
        events += [CheckStarted(check, check), CheckFinished(check, "errored", 0.0, IMPORT_ERROR)]

    async def run() -> str:
        app = TfauditApp(ReplaySource(events, "/m"))
        async with app.run_test() as pilot:
            for _ in range(50):
                await pilot.pause(0.05)
                if app.running is None and len(app.state.checks) == 2:
                    break
            app.refresh_views()
            return str(app.main.query_one("#checks").border_title)

    title = asyncio.run(run())
    assert "All 2 checks errored; nothing was measured" in title


def test_the_headless_table_never_breaks_an_id_and_drops_columns_when_narrow():
    long_id = finding("retracing", "retraced-before-export-of-every-function", "medium", savings={"size_bytes": Measure(1e6)})
    state = audited({"retracing": "findings"}, [long_id])
    for width, shown, dropped in ((80, ("severity", "$/month"), ("measured", "effort")), (120, ("$/month", "effort"), ("risk",)),
                                  (160, ("$/month", "measured", "effort", "confidence", "risk"), ())):
        console = Console(record=True, width=width)
        print_summary(state, console)
        text = console.export_text()
        assert "retracing/retraced-before-export-of-every-function" in text, text
        header = next(line for line in text.splitlines() if "┃ #" in line)
        assert all(column in header for column in shown) and not any(column in header for column in dropped), header


def test_github_annotations_name_each_finding_at_or_above_fail_on():
    import io

    from tfaudit.headless import github_annotations

    state = audited({"retracing": "findings"}, [finding("retracing", "fixed-batch-dim", "high"),
                                                 finding("retracing", "python-argument", "low")])
    out = io.StringIO()
    github_annotations(state, "medium", out)
    lines = out.getvalue().splitlines()
    assert len(lines) == 1 and lines[0].startswith("::error title=tfaudit retracing/fixed-batch-dim::")
    assert "tfaudit explain retracing/fixed-batch-dim" in lines[0]
    out = io.StringIO()
    github_annotations(state, "never", out)
    assert out.getvalue().startswith("::warning ")


@pytest.mark.parametrize("width", [80, 100, 120, 160])
def test_the_headless_tables_of_the_demo_report_fit_the_width_and_keep_every_id(width):
    import os

    from tfaudit.rejudge import stored_state

    with open(os.path.join(os.path.dirname(__file__), "..", "reports", "demo.json"), encoding="utf-8") as f:
        state = stored_state(json.load(f))
    console = Console(record=True, width=width, file=open(os.devnull, "w"))
    print_summary(state, console)
    text = console.export_text()
    borders = [line.rstrip() for line in text.splitlines() if line.startswith(("┏", "└"))]
    assert len(borders) == 4 and all(line.endswith(("┓", "┘")) and len(line) <= width for line in borders), borders
    assert all(f.id in text for f in state.recommendations())
