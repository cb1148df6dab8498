"""The Textual app: renders the audit's event stream; never imports TensorFlow.

Events arrive on a thread (the event source runs in a Textual thread worker)
and wait in an inbox; a timer applies them in batches, so a burst of samples
costs one table update and one replot, not hundreds.
"""
from __future__ import annotations

import copy
import os
import threading
import time
from collections import deque
from typing import Callable, Iterable

from rich.markup import escape
from textual import events, on, work
from textual._time import get_time as monotonic  # the clock Textual stamps events with
from textual.app import App, ComposeResult, SystemCommand
from textual.binding import Binding
from textual.css.query import NoMatches
from textual.containers import VerticalScroll
from textual.screen import ModalScreen, Screen
from textual.widgets import DataTable, Footer, Markdown, TabbedContent, TabPane, Tabs
from textual.widgets._markdown import MarkdownTableContent  # the grid of a Markdown table: its columns are set below
from textual.worker import Worker, WorkerFailed, WorkerState

from tfaudit.api import SEVERITIES
from tfaudit.report.audit import AuditState, CheckState
from tfaudit.events import CheckStarted, Event, FindingEmitted, LoadFailed, SampleEmitted, to_json
from tfaudit.report.format import plural
from tfaudit.report.json import write_json
from tfaudit.report.profiles import Profile
from tfaudit.report.markdown import finding_lines, model_name, write_markdown
from tfaudit.tui.source import EventSource
from tfaudit.tui.widgets import ChartTab, ChecksTable, FindingsTable, ModelHeader

APPLY_INTERVAL_S = 0.1  # events reach the tables within this
REPLOT_INTERVAL_S = 0.3  # charts replot at most this often while samples stream in
CHART_TABS = ("latency", "memory", "compression", "serving")  # where the checks' charts go (tfaudit.api.Chart.tab)
PIPELINE_CHART_TABS = ("data",)  # tfaudit data's
SEVERITY_FILTERS = (None, *SEVERITIES[:-1])  # `f` cycles: all, critical, high and up, medium and up, low and up
LIGHT_BACKGROUNDS = {"7", "15"}  # COLORFGBG background colours of light terminal themes
LATENCY_LOG_VARIABLE = "TFAUDIT_TUI_LATENCY_LOG"  # a file to append "key milliseconds" lines: key press to repaint

HELP = """\
# tfaudit

The audit runs in worker processes; this screen renders what they report.

| key | action |
|---|---|
| `e` | export the Markdown report (to `--report`, else `reports/<model>-<time>.md`) |
| `j` | export the JSON report (to `--json`, else `reports/<model>-<time>.json`) |
| `r` | re-run the selected check (when no check is running) |
| `x` | write the selected finding's fixed model (re-runs its check with `--fix-dir`, else into `fixes/<model>`) and measure it again |
| `f` | filter the recommendations by severity (cycles) |
| `enter` | details of the selected finding or check |
| `1`–`5` | findings, latency, memory, compression, serving tabs |
| `?` | this help |
| `q` | quit (stops the running worker) |
| `ctrl+p` | command palette |

Press `escape` to close.
"""


def terminal_theme(environ=os.environ) -> str:
    """Light or dark, after the terminal's COLORFGBG ("fg;bg"); dark when the terminal does not say."""
    background = environ.get("COLORFGBG", "").split(";")[-1]
    return "textual-light" if background in LIGHT_BACKGROUNDS else "textual-dark"


def check_markdown(check: CheckState) -> str:
    lines = [f"# Check `{check.id}`: {check.title}", "", f"Status **{check.status}**", ""]
    if check.error:
        lines += ["## Cause", "", check.error, ""]
    if check.stderr_tail:
        lines += ["## Last lines of the worker's output", "", "```", check.stderr_tail, "```", ""]
    return "\n".join(lines + ["Press `r` on the main screen to re-run it, `escape` to close."])


MAX_LABEL_COLUMNS = 32  # a detail table's label column, at most (longer labels wrap)


class DetailScreen(Screen):
    """A finding (evidence, why, the fix as highlighted code, how to verify) or a check's error."""

    BINDINGS = [Binding("escape", "app.pop_screen", "Back")]

    def __init__(self, markdown: str) -> None:
        super().__init__()
        self.markdown = markdown

    def compose(self) -> ComposeResult:
        with VerticalScroll():
            yield Markdown()
        yield Footer()

    async def on_mount(self) -> None:
        await self.query_one(Markdown).update(self.markdown)
        for table in self.query(MarkdownTableContent):
            if len(table.headers) == 2:  # label | value: the grid would shrink the labels to their longest word
                labels = [row[0].cell_length for row in table.rows] + [table.headers[0].cell_length]
                table.styles.grid_columns = f"{min(max(labels), MAX_LABEL_COLUMNS) + 2} 1fr"


class HelpScreen(ModalScreen):
    BINDINGS = [Binding("escape", "app.pop_screen", "Close"), Binding("question_mark", "app.pop_screen", "Close")]

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="help"):
            yield Markdown(HELP)


class TfauditApp(App[None]):
    CSS_PATH = "app.tcss"
    TITLE = "tfaudit"
    BINDINGS = [
        Binding("e", "export_markdown", "Export MD"),
        Binding("j", "export_json", "Export JSON"),
        Binding("r", "rerun", "Re-run"),
        Binding("x", "write_fix", "Write fix"),
        Binding("f", "filter", "Filter"),
        Binding("question_mark", "help", "Help", key_display="?"),
        Binding("q", "quit", "Quit"),
        *(Binding(str(i), f"show_tab({i})", show=False) for i in range(1, len(CHART_TABS) + 2)),
    ]

    def __init__(
        self,
        source: EventSource,
        *,
        budget: str = "",
        report: str | None = None,
        json_path: str | None = None,
        record: str | None = None,
        clock: Callable[[], float] = time.monotonic,
        reports_dir: str = "reports",
        fix_dir: str | None = None,
        profile: Profile | None = None,
    ) -> None:
        super().__init__()
        self.source = source
        self.state = AuditState(model_path=source.model_path, budget=budget, profile=profile or Profile())
        self.report_path, self.json_path, self.reports_dir = report, json_path, reports_dir
        self.fix_dir = fix_dir
        self.fixing: tuple[str, str] | None = None  # (finding id, folder) while `x` re-runs its check
        self.clock = clock
        self.theme = terminal_theme()
        self.stop = threading.Event()
        self.inbox: deque[Event] = deque()
        self.recording = open(record, "w", encoding="utf-8") if record else None
        self.started_at: dict[str, float] = {}
        self.dirty_charts: set[str] = set()
        self.severity_filter: str | None = None
        self.running: Worker | None = None
        self.last_key: events.Key | None = None

    # ---- layout -------------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        yield ModelHeader(id="model")
        with TabbedContent(id="tabs"):
            with TabPane("Findings", id="findings"):
                yield ChecksTable(id="checks")
                yield FindingsTable(id="ranked")
            for tab in self.chart_tabs:
                with TabPane(tab.capitalize(), id=tab):
                    yield ChartTab(tab, id=f"{tab}-charts")
        yield Footer()

    @property
    def main(self) -> Screen:
        """The screen with the tables and charts, whatever screen is on top of it."""
        return self.screen_stack[0]

    def on_mount(self) -> None:
        self.main.query_one(FindingsTable).border_title = "ranked recommendations"
        self.main.query_one(ChecksTable).border_title = "checks"
        self.refresh_views()
        self.replot(None)
        self.set_interval(APPLY_INTERVAL_S, self.on_apply_tick)
        self.set_interval(REPLOT_INTERVAL_S, self.on_replot_tick)
        self.running = self.run_source(None)
        self.main.query_one(FindingsTable).focus()

    def on_unmount(self) -> None:
        if self.recording:
            self.recording.close()
            self.recording = None

    async def on_event(self, event: events.Event) -> None:
        if isinstance(event, events.Key) and event is not self.last_key and os.environ.get(LATENCY_LOG_VARIABLE):
            self.last_key = event  # a key reaches the app twice: on its way to the focused widget and bubbling back
            self.call_after_refresh(self.log_latency, event.key, event.time)
        await super().on_event(event)

    def log_latency(self, key: str, pressed: float) -> None:
        with open(os.environ[LATENCY_LOG_VARIABLE], "a", encoding="utf-8") as log:
            log.write(f"{key} {(monotonic() - pressed) * 1000:.1f}\n")

    # ---- events in ---------------------------------------------------------------------------

    def receive(self, event: Event) -> None:
        """Called on the source's thread: queue the event; the UI applies it on its next tick."""
        self.inbox.append(event)
        if self.recording:
            self.recording.write(to_json(event) + "\n")

    @work(thread=True, exit_on_error=False, group="audit")
    def run_source(self, check_id: str | None, fix_dir: str | None = None) -> str:
        try:
            if check_id is None:
                self.source.run(self.receive, self.stop)
            else:
                self.source.rerun(check_id, self.receive, self.stop, fix_dir=fix_dir)
        except KeyboardInterrupt:
            return "interrupted"
        return "done"

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.worker is self.running and event.worker.is_finished:
            self.source_finished(event.worker)

    def source_finished(self, worker: Worker) -> None:
        self.apply_inbox()
        if worker.state == WorkerState.ERROR:
            self.notify(f"the audit stopped: {worker.error}", severity="error", timeout=10)
        if worker.result == "interrupted":
            self.state.interrupted = True
        self.state.finished_at = time.time()
        self.running = None
        self.refresh_views()
        if self.fixing:
            self.fix_written(*self.fixing)

    def fix_written(self, finding_id: str, folder: str) -> None:
        from tfaudit.report.fixes import write_fix_readme

        self.fixing = None
        fixed = next((f for f in self.state.findings if f.id == finding_id and f.artifact), None)
        if fixed is None:
            self.notify(f"{finding_id}: its check wrote no fixed model for it (see the finding for why)", severity="warning", timeout=10)
            return
        try:
            write_fix_readme(self.state.findings, folder, self.state.model_path)
        except OSError as exc:
            self.notify(f"cannot write {folder}/README.md: {exc}", severity="error", timeout=8)
        self.notify(f"wrote {fixed.artifact['path']} and measured it again: press enter on the finding for predicted and verified", title="fix written", timeout=10)

    def on_apply_tick(self) -> None:
        try:
            self.apply_inbox()
        except (NoMatches, IndexError):  # the app is closing: its screens and widgets are gone
            pass

    def on_replot_tick(self) -> None:
        try:
            self.replot(self.dirty_charts)
        except (NoMatches, IndexError):
            pass

    def apply_inbox(self) -> None:
        applied = False
        while self.inbox:
            event = self.inbox.popleft()
            self.state.apply(event)
            applied = True
            if isinstance(event, CheckStarted):
                self.started_at[event.check] = self.clock()
                self.dirty_charts.add(event.check)  # its charts are mounted
            elif isinstance(event, (SampleEmitted, FindingEmitted)):
                self.dirty_charts.add(event.check)  # a chart's title can be its check's headline finding
            elif isinstance(event, LoadFailed):
                self.exit()  # run_tui prints the cause once the terminal is restored
                return
        if applied or self.running is not None:  # a running check's elapsed time moves on
            self.refresh_views()

    # ---- views -----------------------------------------------------------------------------------

    def refresh_views(self) -> None:
        self.main.query_one(ModelHeader).show(self.state)
        checks = self.main.query_one(ChecksTable)
        checks.show(self.state, self.source.planned_checks(), lambda check: self.clock() - self.started_at.get(check, self.clock()))
        finished = sum(1 for c in self.state.checks.values() if c.status not in ("running", "pending"))
        checks.border_title = f"checks: {finished} of {max(len(self.source.planned_checks()), len(self.state.checks))} finished"
        if self.state.interrupted:
            checks.border_title += " (interrupted)"
        elif self.running is None and self.state.checks:
            checks.border_title += f" · {escape(self.state.verdict())}"
        ranked = self.main.query_one(FindingsTable)
        ranked.show(self.state.ranked_findings(), self.severity_filter, unit=self.state.profile.unit)
        shown = f"{len(ranked.findings)} of {len(self.state.findings)}" if self.severity_filter else f"{len(self.state.findings)}"
        notes = len(self.state.notes())
        ranked.border_title = (f"{shown} findings: {plural(len(self.state.opportunities()), 'opportunity')} in {self.state.profile.unit} at "
                               f"{self.state.profile.label}, diagnostics (·) after" + (f" · {notes} info = measured, nothing to fix" if notes else ""))
        ranked.border_subtitle = f"severity ≥ {self.severity_filter}" if self.severity_filter else "all severities"

    def replot(self, checks: Iterable[str] | None) -> None:
        """Replot the charts of ``checks`` (None: every chart), mounting those of checks that started since."""
        for tab in self.main.query(ChartTab):
            tab.show(self.state, None if checks is None else set(checks))
        self.dirty_charts.clear()

    @on(DataTable.RowSelected, "#ranked")
    def open_finding(self, event: DataTable.RowSelected) -> None:
        finding = self.main.query_one(FindingsTable).selected_finding()
        if finding is not None:
            position = self.main.query_one(FindingsTable).findings.index(finding) + 1
            self.push_screen(DetailScreen("\n".join(finding_lines(position, finding))))

    @on(DataTable.RowSelected, "#checks")
    def open_check(self, event: DataTable.RowSelected) -> None:
        check = self.state.checks.get(str(event.row_key.value))
        if check is not None:
            self.push_screen(DetailScreen(check_markdown(check)))

    # ---- actions -----------------------------------------------------------------------------

    def export_path(self, given: str | None, suffix: str) -> str:
        if given:
            return given
        name = model_name(self.state.model_path).replace(os.sep, "-")
        os.makedirs(self.reports_dir, exist_ok=True)
        return os.path.join(self.reports_dir, f"{name}-{time.strftime('%Y%m%d-%H%M%S')}{suffix}")

    def export(self, write: Callable[[AuditState, str], object], given: str | None, suffix: str) -> None:
        """Write a snapshot of the state on a thread: drawing the report's charts takes seconds, the screen must not wait."""
        self.apply_inbox()
        try:
            path = self.export_path(given, suffix)
        except OSError as exc:
            self.notify(f"cannot write the report: {exc}", severity="error", timeout=8)
            return
        snapshot = copy.deepcopy(self.state)

        def write_snapshot() -> None:
            try:
                write(snapshot, path)
            except OSError as exc:
                self.call_from_thread(self.notify, f"cannot write the report: {exc}", severity="error", timeout=8)
                return
            self.call_from_thread(self.notify, f"wrote {path}", title="exported", timeout=8)

        self.run_worker(write_snapshot, thread=True, group="export")

    def action_export_markdown(self) -> None:
        self.export(write_markdown, self.report_path, ".md")

    def action_export_json(self) -> None:
        self.export(write_json, self.json_path, ".json")

    def selected_check(self) -> str | None:
        ranked = self.main.query_one(FindingsTable)
        if self.focused is ranked and ranked.selected_finding() is not None:
            return ranked.selected_finding().check
        return self.main.query_one(ChecksTable).selected_check()

    def action_rerun(self, fix_dir: str | None = None) -> None:
        check_id = self.selected_check()
        if self.running is not None:
            self.notify("a check is running: re-run when it has finished", severity="warning")
            return
        if check_id is None or check_id not in self.state.checks:
            self.notify("select a finished check to re-run", severity="warning")
            return
        self.state.findings = [f for f in self.state.findings if f.check != check_id]
        for key in [key for key in self.state.samples if key[0] == check_id]:
            del self.state.samples[key]
        self.state.interrupted = False
        self.dirty_charts.add(check_id)
        self.notify(f"re-running {check_id}" + (f", writing its fixes into {fix_dir}" if fix_dir else ""))
        self.running = self.run_source(check_id, fix_dir)

    def action_write_fix(self) -> None:
        """The selected finding's fixed artifact: its check again with --fix-dir, so it is written and measured in turn with the original."""
        from tfaudit.usage import UsageError, checked_fix_dir

        ranked = self.main.query_one(FindingsTable)
        finding = ranked.selected_finding() if self.focused is ranked else None
        if finding is None:
            self.notify("select a finding to write its fix", severity="warning")
            return
        if self.running is not None:
            self.notify("a check is running: write the fix when it has finished", severity="warning")
            return
        given = self.fix_dir or os.path.join("fixes", model_name(self.state.model_path).replace(os.sep, "-"))
        try:
            folder = checked_fix_dir(given, self.state.model_path)
        except UsageError as exc:
            self.notify(str(exc), severity="error", timeout=8)
            return
        self.fixing = (finding.id, folder)
        self.action_rerun(fix_dir=folder)

    def action_filter(self) -> None:
        position = SEVERITY_FILTERS.index(self.severity_filter)
        self.severity_filter = SEVERITY_FILTERS[(position + 1) % len(SEVERITY_FILTERS)]
        self.refresh_views()

    def action_help(self) -> None:
        self.push_screen(HelpScreen())

    @property
    def chart_tabs(self) -> tuple[str, ...]:
        return PIPELINE_CHART_TABS if self.state.profile.subject == "pipeline" else CHART_TABS

    def action_show_tab(self, number: int) -> None:
        """The tab the number key names: 1 the findings, then the charts' tabs in order (a number past them does nothing)."""
        tabs = ("findings", *self.chart_tabs)
        if not 1 <= number <= len(tabs):
            return
        tab = tabs[number - 1]
        tabbed = self.main.query_one(TabbedContent)
        # Focus must leave a pane before it hides, or Textual refocuses a widget in it and switches back.
        tabbed.query_one(Tabs).focus()
        tabbed.active = tab
        if tab == "findings":
            self.main.query_one(FindingsTable).focus()

    async def action_quit(self) -> None:
        """Stop the running worker process (the runner kills it), then leave."""
        worker = self.running
        if worker is not None:
            self.stop.set()
            self.notify("stopping the running check…")
            try:
                await worker.wait()
            except WorkerFailed:
                pass  # source_finished reports it
            if self.running is worker:
                self.source_finished(worker)
        self.exit()

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        yield SystemCommand("Export Markdown report", "Write the Markdown report (e)", self.action_export_markdown)
        yield SystemCommand("Export JSON report", "Write the JSON report (j)", self.action_export_json)
        yield SystemCommand("Re-run selected check", "Run the selected check again (r)", self.action_rerun)
        yield SystemCommand("Write the selected finding's fix", "Write the fixed model and measure it again (x)", self.action_write_fix)
        yield SystemCommand("Filter by severity", "Cycle the minimum severity shown (f)", self.action_filter)
        yield SystemCommand("Help", "Keys and what they do (?)", self.action_help)
