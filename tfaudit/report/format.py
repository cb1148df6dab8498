"""Human formatting shared by the Markdown report and the terminal front ends."""
from __future__ import annotations

from tfaudit.api import Finding, Measure
from tfaudit.report.profiles import Worth, worth_text


NARROW_COLUMNS = 100  # below this width the ranked tables keep NARROW_RANKED_COLUMNS; ids are never broken
NARROW_RANKED_COLUMNS = ("#", "severity", "finding", "worth")
IRREGULAR_PLURALS = {"opportunity": "opportunities"}


def plural(count: int, noun: str) -> str:
    return f"{count} {noun if count == 1 else IRREGULAR_PLURALS.get(noun, noun + 's')}"


def worth_cell(finding: Finding, interval: bool = True) -> str:
    """The finding's saving in the profile's currency (tfaudit.report.profiles) for a column headed by its unit; "—" when it
    has none there. ``interval=False``: the value alone, for a narrow cell (the detail view has the interval)."""
    return worth_text(Worth.from_dict(finding.worth) if finding.worth else None, unit=False, interval=interval)


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


def audited_text(inv: dict, quote: str = "") -> str:
    """What the audit called: ``signature serving_default``, or with --function the function it saved again as one
    (``quote``: around names, "`" in Markdown)."""
    function, signature = inv.get("function"), f"{quote}{inv.get('signature')}{quote}"
    if function:
        return f"function {quote}{function['name']}{quote} (saved again as signature {signature})"
    return f"signature {signature}"


def pipeline_text(inv: dict) -> str:
    """A ``tfaudit data`` pipeline in one line: its factory and arguments, stages, elements and count."""
    arguments = ", ".join(f"{k}={v}" for k, v in inv.get("arguments", {}).items())
    return (f"{inv['path']}({arguments}): {len(inv.get('stages', []))} stages, elements {inv.get('element_spec')}, "
            f"cardinality {inv.get('cardinality')}")


def saving_text(finding: Finding) -> str:
    """The savings in one cell, each with its 95 % interval when measured, and "projected" when computed from measured numbers."""
    s = finding.savings
    parts = []

    def add(key: str, text: str) -> None:
        parts.append(text + (" (projected)" if s[key].projected else ""))

    per_element = finding.per == "element"  # an input pipeline's saving (tfaudit data)
    if "latency_ms" in s:
        add("latency_ms", f"{s['latency_ms'].value:.3g} ms{' per element' if per_element else ''}{_interval(s['latency_ms'], '{:.3g}')}")
    if "latency_pct" in s:
        what = "of the time" if per_element else "latency"
        add("latency_pct", f"{s['latency_pct'].value:.0f}% {what}{_interval(s['latency_pct'], '{:.0f}')}")
    if "size_bytes" in s:
        add("size_bytes", human_bytes(s["size_bytes"].value))
    if "size_pct" in s:
        add("size_pct", f"{s['size_pct'].value:.0f}% size")
    if "memory_bytes" in s:
        add("memory_bytes", f"{human_bytes(s['memory_bytes'].value)} memory")
    return ", ".join(parts) or "—"


def effort_text(finding: Finding) -> str:
    """The effort, labelled as the estimate it is."""
    hours = finding.effort.hours
    span = f"~{hours * 60:.0f} min" if hours < 1 else (f"~{hours:g} h" if hours < 16 else f"~{hours / 8:g} days")
    return f"{finding.effort.level} (est. {span})"


def confidence_text(finding: Finding) -> str:
    """How sure: an opportunity's confidence (the support for its saving), or what kind of finding needs none."""
    if finding.confidence is not None:
        if finding.confidence >= 0.9999 and not finding.basis.startswith("exact"):
            return "confidence > 99.99%"  # a sampled claim is never certain, however it rounds
        return f"confidence {100 * finding.confidence:.4g}%"
    if finding.kind == "advice":
        return "advice, not measured as a saving"
    return "a fact, certain" if finding.kind == "fact" else "no saving claimed"


def confidence_cell(finding: Finding) -> str:
    """``confidence_text`` for a table cell: "> 99.99%", "95.2%", "fact", "advice", "—"."""
    text = confidence_text(finding)
    if text.startswith("confidence "):
        return text.removeprefix("confidence ")
    return {"advice": "advice", "a fact": "fact"}.get(text.split(",")[0], "—")


def risk_text(finding: Finding) -> str:
    risk = finding.risk
    text = risk.level
    if risk.fidelity_loss is not None:
        text += f" (fidelity loss {risk.fidelity_loss:.3g})"
    return text


def shape_text(shape: list) -> str:
    return "[" + ", ".join("None" if d is None else str(d) for d in shape) + "]"
