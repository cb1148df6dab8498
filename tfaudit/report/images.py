"""The report's pictures, drawn with matplotlib (Agg, no display) from the audit's own samples and findings.

- the memory timeline in 4 panels (anonymous memory, GPU, growth from the baseline, peak by batch);
- per-call latency of each replayed request stream, the calls that retraced marked;
- compression variants: size against latency and against fidelity loss, the Pareto frontier named;
- the serving throughput–latency curve, one line per device;
- for a watched program, traces per function;
- with --fix-dir, predicted against verified savings per fix.

Each is a PNG at ``DPI``; a chart without data is not drawn.
"""
from __future__ import annotations

import io
import os
from typing import Callable

from tfaudit.report import write_atomic
from tfaudit.report.audit import AuditState
from tfaudit.report.variants import compression_variants, pareto_frontier

DPI = 300
SIZE = (8, 4.5)


def _figure(rows: int = 1, columns: int = 1):
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    figure = Figure(figsize=SIZE, layout="constrained")
    return figure, figure.subplots(rows, columns, squeeze=False)


def memory_timeline(state: AuditState):
    series = {name: state.samples.get(("memory", name), []) for name in ("ram_mb", "gpu_mb", "delta_mb", "peak_mb_by_batch")}
    if not series["ram_mb"]:
        return None
    figure, axes = _figure(2, 2)
    panels = (("ram_mb", "anonymous memory (MB)"), ("gpu_mb", "GPU memory (MB)"), ("delta_mb", "growth from the baseline (MB)"), ("peak_mb_by_batch", "peak by batch size (MB)"))
    for axis, (name, title) in zip(axes.flat, panels):
        points = series[name]
        axis.set_title(title, fontsize=9)
        if not points:
            axis.text(0.5, 0.5, "no GPU" if name == "gpu_mb" else "not measured", ha="center", va="center", transform=axis.transAxes, color="gray")
            axis.set_xticks([])
            axis.set_yticks([])
            continue
        if name == "peak_mb_by_batch":
            peaks = {x: y for x, y, _ in points}
            axis.bar([f"{x:g}" for x in peaks], list(peaks.values()), color="tab:purple")
            axis.set_xlabel("batch size", fontsize=8)
        else:
            axis.plot([p[0] for p in points], [p[1] for p in points], linewidth=1)
            axis.set_xlabel("s", fontsize=8)
        axis.tick_params(labelsize=7)
    figure.suptitle("Memory over the memory check's phases", fontsize=10)
    return figure


def latency(state: AuditState):
    series = {name.split(":", 1)[1]: points for (check, name), points in state.samples.items() if check == "retracing" and name.startswith("latency_ms:")}
    if not series:
        return None
    figure, axes = _figure()
    axis = axes[0][0]
    for pattern, points in series.items():
        axis.plot([p[0] for p in points], [p[1] for p in points], linewidth=1, label=pattern)
    traced = [(x, y) for points in series.values() for x, y, label in points if label == "trace"]
    if traced:
        axis.scatter([x for x, _ in traced], [y for _, y in traced], marker="x", color="red", zorder=3, label="call that retraced")
    axis.set_yscale("log")
    axis.set(xlabel="request", ylabel="latency per call (ms, log)", title="Per-call latency of each request stream")
    axis.legend(fontsize=7)
    return figure


def compression(state: AuditState):
    variants = [v for v in compression_variants(state) if v.size_mb is not None]
    if not variants:
        return None
    frontier = pareto_frontier(variants)
    figure, axes = _figure(1, 2)
    for axis, metric, label in ((axes[0][0], "latency_ms", "latency (ms)"), (axes[0][1], "fidelity_loss", "fidelity loss (relative L2)")):
        for v in variants:
            value = getattr(v, metric)
            if value is None:
                continue
            on = v.name in frontier
            axis.scatter(value, v.size_mb, color="tab:green" if on else "gray", s=40 if on else 20, zorder=3)
            axis.annotate(v.name, (value, v.size_mb), fontsize=7, xytext=(3, 3), textcoords="offset points", color="tab:green" if on else "gray")
        axis.set(xlabel=label, ylabel="size (MB)")
    figure.suptitle("Compression variants (green: Pareto frontier on size, latency and fidelity)", fontsize=10)
    return figure


def serving(state: AuditState):
    series = {name.removesuffix(" batch"): points for (check, name), points in state.samples.items() if check == "serving" and name.endswith(" batch")}
    if not series:
        return None
    figure, axes = _figure()
    axis = axes[0][0]
    for device, points in series.items():
        axis.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=device)
        for x, y, label in points:
            if label:
                axis.annotate(label, (x, y), fontsize=7, xytext=(3, -9), textcoords="offset points")
    headline = next((f.title for f in state.findings if f.id == "serving/configuration"), "Serving: throughput against latency")
    axis.set(xlabel="p50 latency per call (ms)", ylabel="throughput (rows/s)")
    axis.set_title(headline, fontsize=9, wrap=True)
    axis.legend(fontsize=7)
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


CHARTS: list[tuple[str, str, Callable]] = [
    ("memory_timeline", "Memory timeline", memory_timeline),
    ("latency", "Per-call latency with retraces", latency),
    ("compression", "Compression variants", compression),
    ("serving", "Serving throughput and latency", serving),
    ("watch_traces", "Traces per function", watch_traces),
    ("predicted_verified", "Predicted and verified savings", predicted_verified),
]


def png_images(state: AuditState) -> list[tuple[str, str, bytes]]:
    """(file name, title, PNG bytes) of every chart this state has data for."""
    images = []
    for slug, title, draw in CHARTS:
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
