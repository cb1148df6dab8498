"""What to fix first, in the deployment profile's currency (tfaudit.report.profiles):

    priority = worth × confidence ÷ effort_hours × (1 − risk_penalty)

worth is the saving in the profile's currency at the conservative end of its interval (its low end); confidence is an
opportunity's support for its saving (its basis says how it was computed), 1 for a fact. A finding the profile prices no
saving for (a hazard, advice, a saving of another runtime) has priority 0: it is a diagnostic, not an opportunity.
Findings that apply only under a condition the audit cannot see (``applies_if``) rank after every finding that applies as
it is, whatever their priority. Risk penalties: none 0, low 0.1, medium 0.3, high 0.6.
"""
from __future__ import annotations

from dataclasses import replace

from tfaudit.api import Finding, severity_rank
from tfaudit.report.profiles import Basis, Profile, Worth, worth

RISK_PENALTY = {"none": 0.0, "low": 0.1, "medium": 0.3, "high": 0.6}


def priority(finding: Finding, value: Worth | None) -> float:
    if value is None or not value.priced:
        return 0.0
    confidence = 1.0 if finding.confidence is None else finding.confidence
    return round(value.low * confidence / finding.effort.hours * (1 - RISK_PENALTY[finding.risk.level]), 6)


def rank(findings: list[Finding], profile: Profile | None = None, basis: Basis | None = None) -> list[Finding]:
    """Findings with their worth and priority filled in: priced ones first (those that apply as they are, then the
    conditional ones; each highest priority first), then the rest by severity (ties: id)."""
    profile, basis = profile or Profile(), basis or Basis()
    scored = []
    for f in findings:
        value = worth(f, profile, basis)
        scored.append(replace(f, priority=priority(f, value), worth=value.to_dict() if value else {}))
    return sorted(scored, key=lambda f: (f.priority <= 0, bool(f.applies_if), -f.priority, severity_rank(f.severity), f.id))
