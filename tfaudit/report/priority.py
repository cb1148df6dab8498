"""Cost–benefit ranking: what to fix first.

    priority = benefit × confidence ÷ effort_hours × (1 − risk_penalty)

confidence is an opportunity's support for its saving (its basis says how it was computed);
facts are certain (1) and advice counts 1 too, but findings that apply only under a condition
the audit cannot see (advice, or a saving only some deployments get: ``applies_if``) rank after
every finding that applies as it is, whatever their priority.

benefit, in points: latency_pct + ½·size_pct + memory MiB, each taken at the
conservative end of its measured interval (the low bound when one exists) and
ignored when not positive. A latency share counts only when the milliseconds
behind it reach MIN_PRACTICAL_LATENCY_MS: 70 % of a 10-microsecond call is real,
but nobody's bottleneck. Memory is priced by what it costs a server: a growth
finding's memory_bytes is what the growth takes over a week of serving at the
measured call rate, at most the memory available (checks/memory.py), so a leak
that exhausts the memory within the week scores all of it (≥ 1,024 points on
any host with 1 GiB available) and outranks every latency or size saving
(at most 100 + 50 points, over at least half an hour of effort). Findings that
price no saving (a correctness hazard, say) get a floor by severity instead:
critical 50, high 20, medium 5, low 1, info 0. Risk penalties: none 0,
low 0.1, medium 0.3, high 0.6.
"""
from __future__ import annotations

from dataclasses import replace

from tfaudit.api import MIN_PRACTICAL_LATENCY_MS, Finding, Measure, severity_rank

SEVERITY_FLOOR = {"critical": 50.0, "high": 20.0, "medium": 5.0, "low": 1.0, "info": 0.0}
RISK_PENALTY = {"none": 0.0, "low": 0.1, "medium": 0.3, "high": 0.6}
MIB = 1024 * 1024


def _conservative(measure: Measure | None) -> float:
    if measure is None:
        return 0.0
    value = measure.value if measure.low is None else min(measure.value, measure.low)
    return max(0.0, value)


def benefit(finding: Finding) -> float:
    savings = finding.savings
    latency_ms = savings.get("latency_ms")
    practical = latency_ms is None or _conservative(latency_ms) >= MIN_PRACTICAL_LATENCY_MS
    points = (
        (_conservative(savings.get("latency_pct")) if practical else 0.0)
        + 0.5 * _conservative(savings.get("size_pct"))
        + _conservative(savings.get("memory_bytes")) / MIB
    )
    return points if points > 0 else SEVERITY_FLOOR[finding.severity]


def priority(finding: Finding) -> float:
    confidence = 1.0 if finding.confidence is None else finding.confidence
    score = benefit(finding) * confidence / finding.effort.hours * (1 - RISK_PENALTY[finding.risk.level])
    return round(score, 2)


def rank(findings: list[Finding]) -> list[Finding]:
    """Findings with their priority filled in: those that apply as they are first, then the conditional ones; within each,
    highest priority first (ties: worse severity, then id)."""
    scored = [replace(f, priority=priority(f)) for f in findings]
    return sorted(scored, key=lambda f: (bool(f.applies_if), -f.priority, severity_rank(f.severity), f.id))
