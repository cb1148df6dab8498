"""Human formatting shared by the Markdown report and the terminal front ends."""
from __future__ import annotations

from tfaudit.api import Finding, Measure


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def human_bytes(n: float | None) -> str:
    if n is None:
        return "n/a"
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(value) < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GiB"


def _interval(measure: Measure, fmt: str) -> str:
    if measure.low is None or measure.high is None:
        return ""
    return f" [{fmt.format(measure.low)}–{fmt.format(measure.high)}]"


def saving_text(finding: Finding) -> str:
    """The savings in one cell, each with its 95 % interval when measured."""
    s = finding.savings
    parts = []
    if "latency_ms" in s:
        parts.append(f"{s['latency_ms'].value:.3g} ms{_interval(s['latency_ms'], '{:.3g}')}")
    if "latency_pct" in s:
        parts.append(f"{s['latency_pct'].value:.0f}% latency{_interval(s['latency_pct'], '{:.0f}')}")
    if "size_bytes" in s:
        parts.append(human_bytes(s["size_bytes"].value))
    if "size_pct" in s:
        parts.append(f"{s['size_pct'].value:.0f}% size")
    if "memory_bytes" in s:
        parts.append(f"{human_bytes(s['memory_bytes'].value)} memory")
    return ", ".join(parts) or "—"


def effort_text(finding: Finding) -> str:
    hours = finding.effort.hours
    span = f"~{hours * 60:.0f} min" if hours < 1 else (f"~{hours:g} h" if hours < 16 else f"~{hours / 8:g} days")
    return f"{finding.effort.level} ({span})"


def risk_text(finding: Finding) -> str:
    risk = finding.risk
    text = risk.level
    if risk.fidelity_loss is not None:
        text += f" (fidelity loss {risk.fidelity_loss:.3g})"
    return text


def shape_text(shape: list) -> str:
    return "[" + ", ".join("None" if d is None else str(d) for d in shape) + "]"
