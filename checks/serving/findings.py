"""How the serving check's findings are written: the catalogue's rule filled in, suffixed per device, and the helpers
for the intervals their numbers carry (pure: no TensorFlow)."""
from __future__ import annotations

from dataclasses import replace
from typing import Any

from tfaudit.api import Finding, Measure

from . import catalogue as text
from .catalogue import RULES


def found(rule_id: str, evidence: dict[str, Any], *, suffix: str = "", **facts: Any) -> Finding:
    return as_written(RULES[rule_id].finding(evidence, **facts), suffix)


def configuration_finding(evidence: dict[str, Any], **facts: Any) -> Finding:
    return as_written(text.CONFIGURATION.finding(evidence, **facts))


def as_written(finding: Finding, suffix: str = "") -> Finding:
    """The finding, its id suffixed with the device (``-gpu0``), its example in the catalogue's language."""
    language = text.EXAMPLE_LANGUAGE.get(finding.id, "python")
    return replace(finding, id=finding.id + suffix, fix=replace(finding.fix, language=language))


def measure_of(interval: Measure, digits: int = 2) -> Measure:
    return Measure(round(interval.value, digits), *rounded_ci(interval, digits))


def ends(interval: Measure) -> tuple[float, float]:
    """An interval's low and high end (compare and bootstrap always give both)."""
    return (interval.value if interval.low is None else interval.low, interval.value if interval.high is None else interval.high)


def low_end(interval: Measure) -> float:
    return ends(interval)[0]


def rounded_ci(interval: Measure, digits: int) -> list[float]:
    return [round(end, digits) for end in ends(interval)]
