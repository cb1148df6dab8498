"""The report's pictures, drawn with matplotlib (Agg, no display) from the audit's own samples and findings.

- every chart the checks declare (``tfaudit.api.Chart``: the memory timeline's panels, per-call
  latency with the calls that retraced marked, the compression variants' frontier, the serving
  curve), drawn from their samples without knowing the checks;
- for a watched program, traces per function;
- with --fix-dir, predicted against verified savings per fix.

Each is a PNG at ``DPI``; a chart without data is not drawn.
"""
from __future__ import annotations

import io
import os
from typing import Callable

from tfaudit.report import write_atomic
from tfaudit.api import Chart
from tfaudit.report.audit import AuditState
from tfaudit.report.variants import frontier_points, pareto_frontier

DPI = 300
SIZE = (8, 4.5)


def _figure(rows: int = 1, columns: int = 1):
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    figure = Figure(figsize=SIZE, layout="constrained")
    return figure, figure.subplots(rows, columns, squeeze=False)


def draw_frontier(axis, chart: Chart, placed: dict[str, list[float | None]], best: set[str], index: int) -> None:
    for label, point in placed.items():
        x, y = point[index], point[-1]
        if x is None or y is None:
            continue
        on = label in best
        axis.scatter(x, y, color="tab:green" if on else "gray", s=40 if on else 20, zorder=3)
        axis.annotate(label, (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points", color="tab:green" if on else "gray")
    axis.set(xlabel=chart.x_label, ylabel=chart.y_label)


def draw_panel(state: AuditState, check: str, chart: Chart, axis) -> None:
    lines = state.chart_points(check, chart)
    axis.set_title(state.chart_title(chart), fontsize=9, wrap=True)
    if not any(lines.values()):
        axis.text(0.5, 0.5, chart.empty, ha="center", va="center", transform=axis.transAxes, color="gray")
        axis.set_xticks([])
        axis.set_yticks([])
        return
    if chart.kind == "bars":
        latest = {x: y for points in lines.values() for x, y, _ in points}
        axis.bar([f"{x:g}" for x in latest], list(latest.values()), color="tab:purple")
    for label, points in lines.items() if chart.kind != "bars" else ():
        axis.plot([p[0] for p in points], [p[1] for p in points], linewidth=1, label=label, marker="o" if chart.kind == "curve" else None)
        for x, y, point_label in points if chart.kind == "curve" else ():
            if point_label:
                axis.annotate(point_label, (x, y), fontsize=7, xytext=(3, -9), textcoords="offset points")
    marked = [(x, y) for points in lines.values() for x, y, label in points if chart.mark and label == chart.mark]
    if marked:
        axis.scatter([x for x, _ in marked], [y for _, y in marked], marker="x", color="red", zorder=3, label=f"{chart.mark}")
    if chart.log_y:
        axis.set_yscale("log")
    axis.set(xlabel=chart.x_label, ylabel=chart.y_label)
    if len(lines) > 1 or marked:
        axis.legend(fontsize=7)


def described(state: AuditState, panels: list[tuple[str, Chart]]):
    """One image of the declared charts in ``panels``; None when none has points."""
    if not any(state.chart_points(check, chart) for check, chart in panels):
        return None
    frontiers = [chart for _, chart in panels if chart.kind == "frontier"]
    placed = frontier_points(state, frontiers)
    best = pareto_frontier(placed)
    columns = 2 if len(panels) > 1 else 1
    figure, axes = _figure((len(panels) + columns - 1) // columns, columns)
    for axis, (check, chart) in zip(axes.flat, panels):
        if chart.kind == "frontier":
            draw_frontier(axis, chart, placed, best, frontiers.index(chart))
        else:
            draw_panel(state, check, chart, axis)
        axis.tick_params(labelsize=7)
    if panels[0][1].figure_title:
        figure.suptitle(panels[0][1].figure_title, fontsize=10)
    return figure


def watch_traces(state: AuditState):
    summary = next((f for f in state.findings if f.id == "watch/summary"), None)
    rows = [r for r in (summary.evidence.get("functions") or [])] if summary else []
    rows = [r for r in rows if not r.get("library")][:20]
    if not rows:
        return None
    figure, axes = _figure()
    axis = axes[0][0]
    axis.barh([r["function"] for r in rows][::-1], [r["traces"] for r in rows][::-1], color=["tab:red" if r["traces"] > 1 else "tab:blue" for r in rows][::-1])
    axis.set(xlabel="traces", title="tf.function traces per function (red: retraced)")
    axis.tick_params(axis="y", labelsize=7)
    return figure


SAVING_AXES = {"size_pct": "size saved (%)", "size_bytes": "size saved", "latency_pct": "latency saved (%)", "latency_ms": "latency saved (ms)", "memory_bytes": "memory saved"}


def _bytes_unit(values: list[float]) -> tuple[float, str]:
    largest = max((abs(v) for v in values), default=0.0)
    return (1024.0 * 1024.0, "MiB") if largest >= 1024 * 1024 else (1024.0, "KiB")


def predicted_verified(state: AuditState):
    """--fix-dir: per saving, the predicted bar beside the verified one (95 % intervals as error bars); red when outside ±25 %."""
    from tfaudit.api import Measure
    from tfaudit.report.fixes import agrees

    fixed = [f for f in state.findings if f.artifact]
    keys = [k for k in SAVING_AXES if any(k in f.verified or k in f.artifact.get("predicted", {}) for f in fixed)]
    if not keys:
        return None
    figure, axes = _figure(1, len(keys))
    for axis, key in zip(axes[0], keys):
        rows = [(f.id, Measure(**f.artifact["predicted"][key]) if key in f.artifact.get("predicted", {}) else None, f.verified.get(key)) for f in fixed]
        rows = [r for r in rows if r[1] is not None or r[2] is not None][::-1]
        scale, unit = _bytes_unit([m.value for _, *ms in rows for m in ms if m]) if key.endswith("_bytes") else (1.0, "")
        for offset, index, color in ((-0.2, 1, "gray"), (0.2, 2, None)):
            for position, row in enumerate(rows):
                m = row[index]
                if m is None:
                    continue
                shade = color or ("tab:green" if row[1] is not None and agrees(row[1], m) else "tab:red")
                error = None if m.low is None else [[(m.value - m.low) / scale], [(m.high - m.value) / scale]]
                axis.barh(position + offset, m.value / scale, height=0.4, color=shade, xerr=error, capsize=2,
                          label=("predicted" if index == 1 else "verified") if position == 0 else None)
        axis.set_yticks(range(len(rows)), [r[0] for r in rows], fontsize=6)
        axis.set_xlabel(SAVING_AXES[key] + (f" ({unit})" if unit else ""), fontsize=8)
        axis.tick_params(axis="x", labelsize=7)
    axes[0][0].legend(fontsize=6)
    figure.suptitle("Predicted and verified savings of the fixes written to --fix-dir (green: within ±25 %)", fontsize=9)
    return figure


REPORT_CHARTS: list[tuple[str, str, Callable]] = [  # pictures of the report's own, beside those the checks declare
    ("watch_traces", "Traces per function", watch_traces),
    ("predicted_verified", "Predicted and verified savings", predicted_verified),
]


def png_images(state: AuditState) -> list[tuple[str, str, bytes]]:
    """(file name, title, PNG bytes) of every chart this state has data for."""
    images = []
    declared = [(name, panels[0][1].figure_title or panels[0][1].title, lambda state, panels=panels: described(state, panels))
                for name, panels in state.figures()]
    for slug, title, draw in declared + REPORT_CHARTS:
        figure = draw(state)
        if figure is None:
            continue
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png", dpi=DPI)
        images.append((f"{slug}.png", title, buffer.getvalue()))
    return images


def write_images(state: AuditState, directory: str) -> list[tuple[str, str]]:
    """Write the charts into ``directory``; returns (title, path) of each."""
    images = png_images(state)
    if images:
        os.makedirs(directory, exist_ok=True)
    written = []
    for name, title, data in images:
        path = os.path.join(directory, name)
        write_atomic(path, data)
        written.append((title, path))
    return written
