"""Widgets: the model header, the checks and findings tables, and the live charts.

Every widget renders from an ``AuditState``; the app decides when (it
coalesces events, so a burst of samples costs one replot).
"""
from __future__ import annotations

from typing import Callable

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Grid, Horizontal, Vertical
from textual.widgets import DataTable, Static
from textual_plotext import PlotextPlot

from tfaudit.api import Finding, severity_rank
from tfaudit.report.audit import AuditState
from tfaudit.report.format import effort_text, human_bytes, risk_text, saving_text, shape_text
from tfaudit.report.variants import compression_variants, pareto_frontier

SEVERITY_STYLE = {"critical": "bold red", "high": "red", "medium": "yellow", "low": "cyan", "info": "dim"}
STATUS_STYLE = {"passed": "green", "findings": "yellow", "skipped": "dim", "errored": "bold red", "running": "cyan", "pending": "dim"}


def header_text(state: AuditState) -> Text:
    inv, env = state.inventory, state.environment
    if state.load_error:
        return Text.assemble(("cannot load the model: ", "bold red"), state.load_error)
    if inv is None:
        return Text(f"loading {state.model_path} …", style="italic")
    signature = inv.get("signatures", {}).get(inv.get("signature"), {})
    inputs = ", ".join(f"{i['name']} {i['dtype']} {shape_text(i['shape'])}" for i in signature.get("inputs", []))
    parameters = inv.get("variables", {}).get("parameters", 0)
    env = env or {}
    gpus = ", ".join(g.get("name", "GPU") for g in env.get("gpus", [])) or "no GPU"
    cores = f" ({env['cores_logical']} cores)" if env.get("cores_logical") else ""
    return Text.assemble(
        (inv.get("path", state.model_path), "bold"), f"  {inv.get('format')} · signature {inv.get('signature')}\n",
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
    """The ranked recommendations, re-ranked whenever a finding arrives; the cursor follows its finding."""

    def on_mount(self) -> None:
        self.cursor_type = "row"
        self.zebra_stripes = True
        self.findings: list[Finding] = []
        self.add_columns("#", "priority", "severity", "finding", "saving", "effort", "risk")

    def show(self, ranked: list[Finding], min_severity: str | None) -> None:
        shown = [f for f in ranked if min_severity is None or severity_rank(f.severity) <= severity_rank(min_severity)]
        if [f.to_dict() for f in shown] == [f.to_dict() for f in self.findings]:
            return
        selected = self.selected_finding()
        self.clear()
        self.findings = shown
        for position, f in enumerate(shown, 1):
            self.add_row(
                str(position), f"{f.priority:g}", Text(f.severity, style=SEVERITY_STYLE[f.severity]),
                f.title, saving_text(f), effort_text(f), risk_text(f),
            )
        if selected is not None:
            row = next((i for i, f in enumerate(shown) if f.id == selected.id), 0)
            self.move_cursor(row=row)

    def selected_finding(self) -> Finding | None:
        if not self.findings or not 0 <= self.cursor_row < len(self.findings):
            return None
        return self.findings[self.cursor_row]


class Chart(PlotextPlot):
    """A PlotextPlot that replots from the audit state; ``draw`` gets this widget's own ``plt``."""

    def replot(self, state: AuditState) -> None:
        self.plt.clear_data()
        self.plt.clear_figure()
        self.draw(state)
        self.refresh()

    def draw(self, state: AuditState) -> None:  # pragma: no cover - overridden
        raise NotImplementedError


class LatencyChart(Chart):
    """Per-call latency over the request stream of each serving pattern; calls that traced are marked."""

    def draw(self, state: AuditState) -> None:
        plt = self.plt
        plt.title("per-call latency (ms); x = call that retraced")
        plt.xlabel("request")
        series = {name.split(":", 1)[1]: points for (check, name), points in state.samples.items()
                  if check == "retracing" and name.startswith("latency_ms:")}
        if not series:
            plt.title("per-call latency (ms): waiting for the retracing check")
            return
        for pattern, points in series.items():
            plt.plot([p[0] for p in points], [p[1] for p in points], label=pattern)
        traced = [(x, y) for points in series.values() for x, y, label in points if label == "trace"]
        if traced:
            plt.scatter([x for x, _ in traced], [y for _, y in traced], marker="x", color="red", label="retrace")


class ServingChart(Chart):
    """Throughput against p50 latency, one point per batch size as the serving sweep measures it; the headline once known."""

    def draw(self, state: AuditState) -> None:
        plt = self.plt
        plt.xlabel("p50 latency per call (ms)")
        series = {name.removesuffix(" batch"): points for (check, name), points in state.samples.items()
                  if check == "serving" and name.endswith(" batch")}
        headline = next((f.title for f in state.findings if f.id == "serving/configuration"), "")
        if not series:
            plt.title("throughput vs latency: waiting for the serving check")
            return
        plt.title(headline or "throughput (rows/s) vs latency, by batch size")
        for device, points in series.items():
            plt.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=f"{device} rows/s (batch 1, 2, 4, …)")


class MemoryPanel(Chart):
    def __init__(self, series: str, title: str, bars: bool = False, **kwargs) -> None:
        super().__init__(**kwargs)
        self.series, self.chart_title, self.bars = series, title, bars

    def draw(self, state: AuditState) -> None:
        plt = self.plt
        points = state.samples.get(("memory", self.series), [])
        if self.series == "gpu_mb" and not points and not (state.environment or {}).get("gpus"):
            plt.title(f"{self.chart_title}: no GPU")
            return
        plt.title(self.chart_title if points else f"{self.chart_title}: waiting")
        if not points:
            return
        if self.bars:
            peaks = {x: y for x, y, _ in points}  # a batch size measured twice keeps its latest peak
            plt.bar([f"{x:g}" for x in peaks], list(peaks.values()))
            plt.xlabel("batch size")
        else:
            plt.plot([p[0] for p in points], [p[1] for p in points])
            plt.xlabel("s")


class MemoryPanels(Grid):
    def compose(self) -> ComposeResult:
        yield MemoryPanel("ram_mb", "Memory (MB, anonymous)")
        yield MemoryPanel("gpu_mb", "GPU (MB)")
        yield MemoryPanel("delta_mb", "delta from baseline (MB)")
        yield MemoryPanel("peak_mb_by_batch", "peak by batch size (MB)", bars=True)

    def replot(self, state: AuditState) -> None:
        for panel in self.query(MemoryPanel):
            panel.replot(state)


class VariantChart(Chart):
    def __init__(self, metric: str, title: str, **kwargs) -> None:
        super().__init__(**kwargs)
        self.metric, self.chart_title = metric, title

    def draw(self, state: AuditState) -> None:
        plt = self.plt
        variants = [v for v in compression_variants(state) if getattr(v, self.metric) is not None and v.size_mb is not None]
        plt.title(self.chart_title if variants else f"{self.chart_title}: waiting")
        if not variants:
            return
        frontier = pareto_frontier(compression_variants(state))
        for on_frontier, color, label in ((False, "gray", "dominated"), (True, "green", "Pareto frontier")):
            chosen = [v for v in variants if (v.name in frontier) == on_frontier]
            if chosen:
                plt.scatter([getattr(v, self.metric) for v in chosen], [v.size_mb for v in chosen],
                            color=color, marker="●" if on_frontier else "•")
        for v in variants:
            plt.text(v.name, getattr(v, self.metric), v.size_mb, alignment="left", color="green" if v.name in frontier else "gray")


def variants_text(state: AuditState) -> Text:
    variants = compression_variants(state)
    if not variants:
        return Text("compression variants appear here when the quantization or pruning check runs", style="dim")
    frontier = pareto_frontier(variants)
    text = Text()
    for v in sorted(variants, key=lambda v: (v.size_mb is None, v.size_mb or 0)):
        def fmt(value, spec):
            return "?" if value is None else format(value, spec)

        line = f"{'★' if v.name in frontier else ' '} {v.name:<16} {fmt(v.size_mb, '.2f')} MB  {fmt(v.latency_ms, '.2f')} ms  fidelity loss {fmt(v.fidelity_loss, '.3g')}\n"
        text.append(line, style="bold green" if v.name in frontier else "")
    text.append("★ green: Pareto frontier (no variant is smaller, faster and as faithful)", style="dim")
    return text


class CompressionView(Vertical):
    def compose(self) -> ComposeResult:
        with Horizontal():
            yield VariantChart("latency_ms", "size MB vs latency ms")
            yield VariantChart("fidelity_loss", "size MB vs fidelity loss")
        yield Static(id="variants")

    def replot(self, state: AuditState) -> None:
        for chart in self.query(VariantChart):
            chart.replot(state)
        self.query_one("#variants", Static).update(variants_text(state))
