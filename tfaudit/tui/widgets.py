"""Widgets: the model header, the checks and findings tables, and the live charts.

Every widget renders from an ``AuditState``; the app decides when (it
coalesces events, so a burst of samples costs one replot).
"""
from __future__ import annotations

from typing import Callable

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Grid, Vertical
from textual.widgets import DataTable, Static
from textual_plotext import PlotextPlot

from tfaudit.api import Chart, Finding, severity_rank
from tfaudit.report.audit import AuditState
from tfaudit.report.format import (NARROW_COLUMNS, NARROW_RANKED_COLUMNS, audited_text, pipeline_text, confidence_cell, effort_text, human_bytes, risk_text,
                                   shape_text, worth_cell)
from tfaudit.report.variants import frontier_charts, frontier_points, pareto_frontier

SEVERITY_STYLE = {"critical": "bold red", "high": "red", "medium": "yellow", "low": "cyan", "info": "dim"}
STATUS_STYLE = {"passed": "green", "findings": "yellow", "skipped": "dim", "errored": "bold red", "running": "cyan", "pending": "dim"}


def header_text(state: AuditState) -> Text:
    inv, env = state.inventory, state.environment
    if state.load_error:
        return Text.assemble(("cannot load the model: ", "bold red"), state.load_error)
    if inv is None:
        return Text(f"loading {state.model_path} …", style="italic")
    if inv.get("kind") == "pipeline":
        env = env or {}
        return Text.assemble(("tf.data pipeline ", "bold"), pipeline_text(inv), "\n",
                             f"TensorFlow {env.get('tensorflow', '?')} · {env.get('cpu', 'CPU ?')} ({env.get('cores_logical', '?')} cores)")
    signature = inv.get("signatures", {}).get(inv.get("signature"), {})
    inputs = ", ".join(f"{i['name']} {i['dtype']} {shape_text(i['shape'])}" for i in signature.get("inputs", []))
    parameters = inv.get("variables", {}).get("parameters", 0)
    env = env or {}
    gpus = ", ".join(g.get("name", "GPU") for g in env.get("gpus", [])) or "no GPU"
    cores = f" ({env['cores_logical']} cores)" if env.get("cores_logical") else ""
    return Text.assemble(
        (inv.get("path", state.model_path), "bold"), f"  {inv.get('format')} · {audited_text(inv)}\n",
        f"inputs {inputs or 'none'} · {parameters:,} parameters · {human_bytes(inv.get('size_bytes'))}\n",
        f"TensorFlow {env.get('tensorflow', '?')} · {env.get('cpu', 'CPU ?')}{cores} · {gpus}",
    )


class ModelHeader(Static):
    def show(self, state: AuditState) -> None:
        self.update(header_text(state))


def progress_bar(fraction: float, width: int = 10) -> str:
    filled = round(max(0.0, min(1.0, fraction)) * width)
    return "█" * filled + "░" * (width - filled) + f" {fraction:4.0%}"


def check_note(check, state: AuditState) -> str:
    if check.status in ("errored", "skipped"):
        return check.error or check.message
    if check.status == "findings":
        found = sum(1 for f in state.findings if f.check == check.id)
        return f"{found} finding{'s' if found != 1 else ''}"
    if check.status == "passed":
        return "nothing to fix"
    return check.message


class ChecksTable(DataTable):
    """One row per check: status, progress, elapsed time, and the message or the error."""

    def on_mount(self) -> None:
        self.cursor_type = "row"
        self.add_columns("status", "check", "progress", "time", "note")

    def show(self, state: AuditState, planned: list[tuple[str, str]], elapsed: Callable[[str], float]) -> None:
        ids = list(dict.fromkeys([check_id for check_id, _ in planned] + list(state.checks)))
        for check_id in ids:
            check = state.checks.get(check_id)
            status = check.status if check else "pending"
            if check is None:
                seconds, note, fraction = None, "", 0.0
            else:
                seconds = check.duration_s if check.duration_s is not None else elapsed(check_id)
                note = check_note(check, state)
                fraction = check.fraction
            cells = (
                Text(status, style=STATUS_STYLE.get(status, "")),
                check_id,
                progress_bar(fraction),
                "" if seconds is None else f"{seconds:5.1f} s",
                Text(note.splitlines()[0] if note else "", style="red" if status == "errored" else ""),
            )
            if check_id in self.rows:
                for column, old, new in zip(self.columns, self.get_row(check_id), cells):
                    if str(old) != str(new) or getattr(old, "style", None) != getattr(new, "style", None):
                        self.update_cell(check_id, column, new, update_width=True)
            else:
                self.add_row(*cells, key=check_id)

    def selected_check(self) -> str | None:
        if not self.row_count:
            return None
        return self.coordinate_to_cell_key(self.cursor_coordinate).row_key.value


class FindingsTable(DataTable):
    """The ranked recommendations, re-ranked whenever a finding arrives; the cursor follows its finding.

    Opportunities come first, numbered; diagnostics (no saving priced under the profile) follow, marked "·". The saving
    in the profile's currency, effort and confidence always show from 100 columns up (below, #, severity, finding and
    that saving, as the headless table): the title is cut to the width they leave (the whole title is in the detail view), and risk shows
    only where the title keeps ``MIN_TITLE`` columns beside it."""

    MIN_TITLE = 24

    def on_mount(self) -> None:
        self.cursor_type = "row"
        self.zebra_stripes = True
        self.findings: list[Finding] = []
        self.findings_ranked: list[Finding] = []
        self.min_severity: str | None = None
        self.layout_width = 0
        self.unit = "worth"

    def on_resize(self) -> None:
        if self.findings and self.size.width != self.layout_width:
            self.show(self.findings_ranked, self.min_severity, force=True, unit=self.unit)

    def show(self, ranked: list[Finding], min_severity: str | None, force: bool = False, unit: str = "worth") -> None:
        """``ranked``: opportunities (priority above 0) numbered, then diagnostics marked "·"; ``unit``, the worth's header."""
        shown = [f for f in ranked if min_severity is None or severity_rank(f.severity) <= severity_rank(min_severity)]
        if not force and [f.to_dict() for f in shown] == [f.to_dict() for f in self.findings]:
            return
        selected = self.selected_finding() if self.cursor_row > 0 else None  # on the top row, the cursor stays on the top finding
        self.findings_ranked, self.min_severity, self.layout_width, self.unit = ranked, min_severity, self.size.width, unit
        rows = [{"#": str(i) if f.priority > 0 else "·", "severity": f.severity, "worth": worth_cell(f, interval=False), "effort": effort_text(f),
                 "confidence": confidence_cell(f), "risk": risk_text(f)} for i, f in enumerate(shown, 1)]
        narrow = 0 < self.app.size.width < NARROW_COLUMNS  # the terminal's columns, as the headless table counts them
        columns = list(NARROW_RANKED_COLUMNS if narrow else (*NARROW_RANKED_COLUMNS, "effort", "confidence", "risk"))

        headers = {"worth": unit}

        def width(column: str) -> int:
            return max([len(headers.get(column, column))] + [len(row[column]) for row in rows]) + 2  # one cell padding each side

        title_width = (self.size.width or 200) - 1 - sum(width(c) for c in columns if c != "finding") - 2
        if title_width < self.MIN_TITLE and "risk" in columns:
            columns.remove("risk")
            title_width += width("risk")
        title_width = max(self.MIN_TITLE // 2, title_width)
        self.clear(columns=True)
        self.add_columns(*(headers.get(c, c) for c in columns))
        self.findings = shown
        for f, row in zip(shown, rows):
            title = Text(f.title).append(f" — applies if {f.applies_if}" if f.applies_if else "", style="dim")
            title.truncate(title_width, overflow="ellipsis")
            cells = {**row, "severity": Text(f.severity, style=SEVERITY_STYLE[f.severity]), "finding": title}
            self.add_row(*(cells[c] for c in columns))
        # DataTable measures new rows when its own queue next goes idle; rows added from the app's handler did not always
        # bring that about (a loaded CI host showed every column at its header's width for 114 s): a message of its own does.
        self.call_later(self.refresh)
        if selected is not None:
            row = next((i for i, f in enumerate(shown) if f.id == selected.id), 0)
            self.move_cursor(row=row)

    def selected_finding(self) -> Finding | None:
        if not self.findings or not 0 <= self.cursor_row < len(self.findings):
            return None
        return self.findings[self.cursor_row]


class ChartPlot(PlotextPlot):
    """One chart a check declared (``tfaudit.api.Chart``), replotted from the audit state's samples."""

    def __init__(self, check: str, chart: Chart, **kwargs) -> None:
        super().__init__(**kwargs)
        self.check, self.chart = check, chart

    def replot(self, state: AuditState) -> None:
        self.plt.clear_data()
        self.plt.clear_figure()
        self.draw(state)
        self.refresh()

    def waiting(self, state: AuditState) -> str:
        check = state.checks.get(self.check)
        done = check is not None and check.status not in ("running", "pending")
        return f"{self.chart.title}: {self.chart.empty if done else 'waiting'}"

    def draw(self, state: AuditState) -> None:
        plt, chart = self.plt, self.chart
        if chart.kind == "frontier":
            self.draw_frontier(state)
            return
        lines = state.chart_points(self.check, chart)
        if not any(lines.values()):
            plt.title(self.waiting(state))
            return
        plt.title(state.chart_title(chart))
        plt.xlabel(chart.x_label)
        if chart.kind == "bars":
            latest = {x: y for points in lines.values() for x, y, _ in points}  # an x measured twice keeps its latest
            plt.bar([f"{x:g}" for x in latest], list(latest.values()))
            return
        for label, points in lines.items():
            named = {"label": label} if len(lines) > 1 or chart.kind == "curve" else {}  # a lone line needs no legend
            plt.plot([p[0] for p in points], [p[1] for p in points], **named, **({"marker": "o"} if chart.kind == "curve" else {}))
        marked = [(x, y) for points in lines.values() for x, y, label in points if chart.mark and label == chart.mark]
        if marked:
            plt.scatter([x for x, _ in marked], [y for _, y in marked], marker="x", color="red", label=chart.mark)

    def draw_frontier(self, state: AuditState) -> None:
        plt, charts = self.plt, frontier_charts(state)
        placed = frontier_points(state, charts)
        index = [c.id for c in charts].index(self.chart.id)
        points = {label: (p[index], p[-1]) for label, p in placed.items() if p[index] is not None and p[-1] is not None}
        plt.title(self.chart.title if points else self.waiting(state))
        if not points:
            return
        best = pareto_frontier(placed)
        plt.xlabel(self.chart.x_label)
        for on_frontier, color in ((False, "gray"), (True, "green")):
            chosen = [xy for label, xy in points.items() if (label in best) == on_frontier]
            if chosen:
                plt.scatter([x for x, _ in chosen], [y for _, y in chosen], color=color, marker="●" if on_frontier else "•")
        for label, (x, y) in points.items():
            plt.text(label, x, y, alignment="left", color="green" if label in best else "gray")


def frontier_text(state: AuditState) -> Text:
    """The frontier's variants, smallest first, each with its coordinates; the ones nothing beats starred."""
    charts = frontier_charts(state)
    placed = frontier_points(state, charts)
    if not placed:
        return Text("variants appear here when a check that places them (quantization, pruning) runs", style="dim")
    best = pareto_frontier(placed)
    axes = [charts[0].y_label] + [chart.x_label for chart in charts]
    text = Text()
    for label, point in sorted(placed.items(), key=lambda item: (item[1][-1] is None, item[1][-1] or 0)):
        values = "  ".join(f"{'?' if value is None else format(value, '.3g')} {axis}" for value, axis in zip([point[-1], *point[:-1]], axes))
        text.append(f"{'★' if label in best else ' '} {label:<16} {values}\n", style="bold green" if label in best else "")
    text.append("★ green: on the frontier (nothing is better on every axis at once)", style="dim")
    return text


class ChartTab(Vertical):
    """A tab's charts, mounted as the checks that declare them start; a frontier's variants listed below its charts."""

    def __init__(self, tab: str, **kwargs) -> None:
        super().__init__(**kwargs)
        self.tab = tab

    def compose(self) -> ComposeResult:
        yield Static(f"charts appear here when a check that draws {self.tab} starts", classes="placeholder")
        yield Grid(classes="plots")
        yield Static(classes="frontier")

    def show(self, state: AuditState, checks: set[str] | None = None) -> None:
        """Mount the charts declared for this tab that are not shown yet, then replot those of ``checks`` (None: all)."""
        shown = {plot.chart.id for plot in self.query(ChartPlot)}
        for check, chart in state.charts():
            if chart.tab == self.tab and chart.id not in shown:
                self.query_one(".plots", Grid).mount(ChartPlot(check, chart))
                shown.add(chart.id)
        self.query_one(".placeholder", Static).display = not shown
        plots = list(self.query(ChartPlot))
        self.query_one(".plots", Grid).styles.grid_size_columns = 2 if len(plots) > 1 else 1
        frontier = any(plot.chart.kind == "frontier" for plot in plots)
        for plot in plots:
            if checks is None or plot.check in checks or (frontier and plot.chart.kind == "frontier"):
                plot.replot(state)
        self.query_one(".frontier", Static).display = frontier
        if frontier:
            self.query_one(".frontier", Static).update(frontier_text(state))
