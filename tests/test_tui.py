"""The TUI, driven by a recorded event stream: no TensorFlow, no worker processes."""
import asyncio
import functools
import os
import subprocess
import sys
import threading
import time

import pytest
from textual.widgets import Markdown

from tfaudit.events import LoadFailed
from tfaudit.tui.app import DetailScreen, HelpScreen, TfauditApp, terminal_theme
from tfaudit.tui.source import ReplaySource
from tfaudit.report.variants import pareto_frontier
from tfaudit.tui.widgets import ChartPlot, ChecksTable, FindingsTable

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")
REPLAY = os.path.join(DATA, "audit_replay.jsonl")


def sync(test):
    """Runs an async test without a pytest asyncio plugin."""

    @functools.wraps(test)
    def run(*args, **kwargs):
        asyncio.run(test(*args, **kwargs))

    return run


def replay_app(tmp_path=None, **source_options) -> TfauditApp:
    source = ReplaySource.from_file(REPLAY, **source_options)
    return TfauditApp(source, budget="quick", clock=lambda: 0.0, reports_dir=str(tmp_path or "reports"))


async def until(pilot, condition, timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting for the app"
        await pilot.pause(0.02)


def finished(app: TfauditApp):
    return lambda: app.running is None and not app.inbox and app.state.checks


def ranked_ids(app: TfauditApp) -> list[str]:
    return [f.id for f in app.query_one(FindingsTable).findings]


def select(app, finding_id: str) -> None:
    """Move the ranked table's cursor to ``finding_id`` (the recording's float16 finding is a diagnostic under the server
    profile: its sizes are only in %)."""
    table = app.query_one(FindingsTable)
    table.move_cursor(row=[f.id for f in table.findings].index(finding_id))


def cell(table, row_key: str, column: int) -> str:
    return str(table.get_row(row_key)[column])


@sync
async def test_findings_arriving_out_of_order_are_re_ranked_and_the_cursor_follows_its_finding():
    gate = threading.Semaphore(0)
    app = replay_app(gate=gate)
    events = app.source.events
    first_quantization_finding = next(i for i, e in enumerate(events) if getattr(e, "finding", {}).get("check") == "quantization")
    async with app.run_test() as pilot:
        gate.release(first_quantization_finding)
        await until(pilot, lambda: len(app.query_one(FindingsTable).findings) == 3)
        assert ranked_ids(app) == ["memory/graph-growth", "fake-low/minor", "retracing/wrapper-retraces"]
        table = app.query_one(FindingsTable)
        table.move_cursor(row=1)  # fake-low/minor
        gate.release(10_000)
        await until(pilot, finished(app))
        # the recorded findings price only memory under the server profile (sizes in % only, no CPU time measured):
        # one opportunity, then the diagnostics by severity
        assert ranked_ids(app) == [
            "memory/graph-growth", "quantization/float16", "fake-low/minor", "quantization/int8", "retracing/wrapper-retraces",
        ]
        assert ranked_ids(app) == [f.id for f in app.state.ranked_findings()]
        assert table.selected_finding().id == "fake-low/minor"
        assert [str(c) for c in table.get_row_at(0)[:2]] == ["1", "medium"] and str(table.get_row_at(0)[3]).startswith("$")  # its worth
        assert [str(c) for c in table.get_row_at(1)[:2]] == ["·", "high"]  # a diagnostic


@sync
async def test_an_errored_check_shows_its_cause_and_its_detail():
    app = replay_app()
    async with app.run_test() as pilot:
        await until(pilot, finished(app))
        checks = app.query_one(ChecksTable)
        assert cell(checks, "pruning", 0) == "errored"
        assert cell(checks, "pruning", 4).startswith("ValueError: prune_low_magnitude cannot wrap")
        assert cell(checks, "fake-raises", 4) == "RuntimeError: planted failure"
        checks.focus()
        checks.move_cursor(row=list(checks.rows).index("pruning"))
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, DetailScreen))
        text = app.screen.query_one(Markdown).source
        assert "prune_low_magnitude cannot wrap a Keras 3 layer" in text and "Traceback" in text
        await pilot.press("escape")
        assert not isinstance(app.screen, DetailScreen)


@sync
async def test_selecting_a_finding_opens_evidence_why_fix_and_verify_while_the_audit_goes_on():
    gate = threading.Semaphore(0)
    app = replay_app(gate=gate)
    async with app.run_test() as pilot:
        gate.release(len(app.source.events) - 3)  # the last check (fake-raises) not started yet
        await until(pilot, lambda: "quantization/float16" in ranked_ids(app))
        select(app, "quantization/float16")
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, DetailScreen))
        gate.release(10_000)  # events keep arriving under the detail screen
        await until(pilot, finished(app))
        await pilot.pause(0.4)
        assert app.state.checks["fake-raises"].status == "errored"
        await until(pilot, lambda: isinstance(app.screen, DetailScreen))
        text = app.screen.query_one(Markdown).source
        assert "Float16 weights halve the model" in text
        for part in ("**What was measured**", "**Why it matters**", "**How to verify**", "```python", "supported_types = [tf.float16]"):
            assert part in text


@sync
async def test_export_writes_the_reports_and_says_where(tmp_path):
    app = replay_app(tmp_path)
    notes = []
    app.notify = lambda message, **kwargs: notes.append(message)
    async with app.run_test() as pilot:
        await until(pilot, finished(app))
        await pilot.press("e", "j")
        await until(pilot, lambda: len(notes) == 2, timeout_s=60)
        written = {os.path.splitext(name)[1]: tmp_path / name for name in os.listdir(tmp_path) if (tmp_path / name).is_file()}
        assert sorted(written) == [".json", ".md"]
        charts = tmp_path / (written[".md"].stem + "_files")
        assert sorted(os.listdir(charts)) and all(f"]({charts.name}/{name})" in written[".md"].read_text() for name in os.listdir(charts))
        assert all(path.name.startswith("mlp-") for path in written.values())
        markdown = written[".md"].read_text()
        assert "Float16 weights halve the model" in markdown and "Check `pruning` errored" in markdown
        assert '"schema_version": "1"' in written[".json"].read_text()
        assert sorted(notes) == sorted([f"wrote {written['.md']}", f"wrote {written['.json']}"])


@sync
async def test_export_goes_to_the_given_report_path(tmp_path):
    app = TfauditApp(ReplaySource.from_file(REPLAY), report=str(tmp_path / "given.md"), reports_dir=str(tmp_path / "unused"))
    async with app.run_test() as pilot:
        await until(pilot, finished(app))
        await pilot.press("e")
        await until(pilot, lambda: (tmp_path / "given.md").exists(), timeout_s=60)
        assert (tmp_path / "given.md").read_text().startswith("# tfaudit report: mlp")
        assert not (tmp_path / "unused").exists()


@sync
async def test_quit_stops_the_running_source_and_marks_the_audit_interrupted():
    gate = threading.Semaphore(0)
    app = replay_app(gate=gate)
    async with app.run_test() as pilot:
        gate.release(5)  # model loaded, retracing running
        await until(pilot, lambda: app.state.checks.get("retracing") is not None)
        worker = app.running
        await pilot.press("q")
        await until(pilot, lambda: worker.is_finished)
    assert app.stop.is_set() and app.state.interrupted
    assert app.state.checks["retracing"].status == "errored"
    assert app.state.checks["retracing"].error == "interrupted by the user"
    assert app.state.checks["quantization"].status == "skipped"


@sync
async def test_filter_cycles_the_minimum_severity():
    app = replay_app()
    async with app.run_test() as pilot:
        await until(pilot, finished(app))
        seen = []
        for _ in range(5):
            await pilot.press("f")
            seen.append((app.severity_filter, ranked_ids(app)))
        assert seen[0] == ("critical", [])
        assert seen[1] == ("high", ["quantization/float16"])
        assert seen[2] == ("medium", ["memory/graph-growth", "quantization/float16"])
        assert len(seen[3][1]) == 5 and seen[4] == (None, ranked_ids(app))
        assert app.query_one(FindingsTable).border_subtitle == "all severities"


@sync
async def test_rerun_replaces_the_selected_checks_findings_and_waits_for_a_running_check():
    app = replay_app()
    notes = []
    app.notify = lambda message, **kwargs: notes.append(message)
    async with app.run_test() as pilot:
        await until(pilot, finished(app))
        table = app.query_one(FindingsTable)
        table.focus()
        select(app, "quantization/float16")
        assert table.selected_finding().check == "quantization"
        app.source.delay_s = 0.05  # slow enough to press r again while it runs
        await pilot.press("r")
        assert app.running is not None
        await pilot.press("r")  # refused while running: no second worker
        await until(pilot, finished(app))
        assert sorted(f.id for f in app.state.findings if f.check == "quantization") == ["quantization/float16", "quantization/int8"]
        assert len(app.state.samples[("quantization", "variant_latency_vs_size")]) == 5
        assert notes == ["re-running quantization", "a check is running: re-run when it has finished"]


@sync
async def test_charts_render_every_series_and_ignore_unknown_ones():
    app = replay_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await until(pilot, finished(app))
        for key in "2341":
            await pilot.press(key)
            await pilot.pause()
        assert ("batch-one", "per_row_ms") in app.state.samples  # a plugin's series: kept, not charted
        plots = {plot.chart.id: plot for plot in app.query(ChartPlot)}
        assert "no GPU" in str(plots["gpu_mb"].plt.build())
        variants = str(app.query_one("#compression-charts .frontier").render())
        assert "★ dynamic_range" in variants and "  16x8" in variants


@sync
async def test_help_lists_the_keys():
    app = replay_app()
    async with app.run_test() as pilot:
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        assert "re-run the selected check" in app.screen.query_one(Markdown).source
        await pilot.press("escape")
        assert not isinstance(app.screen, HelpScreen)


@sync
async def test_a_load_failure_closes_the_app_with_the_cause():
    app = TfauditApp(ReplaySource([LoadFailed("cannot load /nope: not a SavedModel")], model_path="/nope"))
    async with app.run_test() as pilot:
        await until(pilot, lambda: app.state.load_error)
        await pilot.pause(0.3)
    assert app.state.load_error == "cannot load /nope: not a SavedModel"
    assert app.return_code in (None, 0)


def test_pareto_frontier_keeps_the_variants_nothing_beats_on_all_three():
    placed = {  # label: [latency ms, fidelity loss, size MB]
        "float32": [1.0, 0.0, 4.0],
        "float16": [1.1, 0.001, 2.0],
        "int8": [1.5, 0.02, 1.0],
        "16x8": [1.2, 0.002, 2.5],  # float16 is smaller, faster and more faithful
        "pruned": [1.0, None, 1.0],  # fidelity not measured yet
    }
    assert pareto_frontier(placed) == {"float32", "float16", "int8"}


@pytest.mark.parametrize(("colorfgbg", "theme"), [("15;0", "textual-dark"), ("0;15", "textual-light"), ("", "textual-dark")])
def test_theme_follows_the_terminal_background(colorfgbg, theme):
    assert terminal_theme({"COLORFGBG": colorfgbg}) == theme


def test_the_tui_never_imports_tensorflow():
    code = f"""
import asyncio, sys
from tfaudit.tui import ReplaySource
from tfaudit.tui.app import TfauditApp

async def main():
    app = TfauditApp(ReplaySource.from_file({REPLAY!r}))
    async with app.run_test() as pilot:
        while app.running is not None:
            await pilot.pause(0.05)
        for key in "2341":
            await pilot.press(key)
    assert app.state.findings

asyncio.run(main())
print("tensorflow" in sys.modules, "keras" in sys.modules)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["False", "False"]


@pytest.mark.parametrize("size", [(80, 24), (160, 48)])
def test_main_screen_snapshot(snap_compare, size):
    async def run_before(pilot):
        await until(pilot, finished(pilot.app))

    assert snap_compare(replay_app(), terminal_size=size, run_before=run_before)


@sync
async def test_x_writes_the_selected_findings_fix_by_re_running_its_check_with_a_fix_dir(tmp_path):
    from tfaudit.events import FindingEmitted

    class FixingSource(ReplaySource):
        """Replays the recording; a re-run with a fix folder replays the check's findings with an artifact there."""

        fix_dirs: list = []

        def rerun(self, check_id, emit, stop, fix_dir=None):
            self.fix_dirs.append(fix_dir)
            events = [e for e in self.events if getattr(e, "check", None) == check_id]
            for position, event in enumerate(events):
                if fix_dir and isinstance(event, FindingEmitted):
                    finding = {**event.finding, "verified": event.finding["savings"], "artifact": {
                        "path": os.path.join(fix_dir, "float16"), "what": "the float16 TFLite model", "made_by": "convert()",
                        "measured": {}, "predicted": event.finding["savings"], "corrected": []}}
                    events[position] = FindingEmitted(event.check, finding)
            self._replay(events, emit, stop)

    source = FixingSource.from_file(REPLAY)
    app = TfauditApp(source, budget="quick", clock=lambda: 0.0, reports_dir=str(tmp_path), fix_dir=str(tmp_path / "fixes"))
    notes = []
    app.notify = lambda message, **kwargs: notes.append(message)
    async with app.run_test() as pilot:
        await until(pilot, finished(app))
        app.query_one(FindingsTable).focus()
        select(app, "quantization/float16")
        selected = app.query_one(FindingsTable).selected_finding()
        assert selected.check == "quantization" and not selected.artifact
        await pilot.press("x")
        await until(pilot, lambda: finished(app)() and app.fixing is None)
        assert source.fix_dirs == [str(tmp_path / "fixes")]
        fixed = next(f for f in app.state.findings if f.id == selected.id)
        assert fixed.artifact["path"] == str(tmp_path / "fixes" / "float16")
        assert "## `float16/`" in (tmp_path / "fixes" / "README.md").read_text()
        assert notes[-1].startswith(f"wrote {tmp_path / 'fixes' / 'float16'} and measured it again")


@sync
async def test_from_100_terminal_columns_the_ranked_table_shows_worth_effort_and_confidence():
    for size, expected in (((100, 30), ["#", "severity", "finding", "$/month", "effort", "confidence"]), ((99, 30), ["#", "severity", "finding", "$/month"])):
        app = replay_app()
        async with app.run_test(size=size) as pilot:
            await until(pilot, finished(app))
            await pilot.pause(0.2)
            table = app.query_one(FindingsTable)
            assert [str(c.label) for c in table.columns.values()] == expected, size
            assert table.selected_finding().id == ranked_ids(app)[0]  # untouched, the cursor stays on the top finding


@sync
async def test_the_cursor_stays_on_the_top_finding_until_the_user_moves_it():
    from tfaudit.api import Measure
    from tfaudit.events import CheckFinished, CheckStarted, FindingEmitted, ModelLoaded

    from test_reports import ENVIRONMENT, INVENTORY, finding

    small = finding("retracing", "small", savings={"size_bytes": Measure(1e3)})
    large = finding("retracing", "large", savings={"size_bytes": Measure(1e9)})  # arrives second, ranks first
    events = [ModelLoaded(INVENTORY, ENVIRONMENT), CheckStarted("retracing", "Retracing"),
              FindingEmitted("retracing", small.to_dict()), FindingEmitted("retracing", large.to_dict()), CheckFinished("retracing", "findings", 1.0)]
    gate = threading.Semaphore(0)
    app = TfauditApp(ReplaySource(events, "/m", gate=gate))
    async with app.run_test() as pilot:
        gate.release(3)
        await until(pilot, lambda: ranked_ids(app) == ["retracing/small"])
        gate.release(10)
        await until(pilot, finished(app))
        await pilot.pause(0.2)
        table = app.query_one(FindingsTable)
        assert ranked_ids(app) == ["retracing/large", "retracing/small"] and table.selected_finding().id == "retracing/large"
