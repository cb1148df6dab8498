"""The audit's state, built from the event stream alone (front ends and reports share it)."""
from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from tfaudit import __version__
from tfaudit.api import SEVERITIES, Chart, Finding, severity_rank
from tfaudit.events import (
    CheckFinished,
    CheckProgress,
    CheckStarted,
    Event,
    FindingEmitted,
    LoadFailed,
    MeasurementsEmitted,
    MetricEmitted,
    ModelLoaded,
    SampleEmitted,
)
from tfaudit.report.format import plural
from tfaudit.report.priority import rank
from tfaudit.report.profiles import Basis, Profile, assumptions

SCHEMA_VERSION = "1"
MAX_POINTS_PER_SERIES = 200  # the JSON report keeps a downsampled series


@dataclass
class CheckState:
    id: str
    title: str
    status: str = "pending"  # pending, running, then a CheckFinished status
    fraction: float = 0.0
    message: str = ""
    duration_s: float | None = None
    error: str = ""
    stderr_tail: str = ""
    charts: tuple[dict[str, Any], ...] = ()  # tfaudit.api.Chart descriptors


@dataclass
class AuditState:
    model_path: str
    budget: str
    started_at: float = field(default_factory=time.time)
    finished_at: float | None = None
    inventory: dict[str, Any] | None = None
    environment: dict[str, Any] | None = None
    load_error: str = ""
    interrupted: bool = False
    checks: dict[str, CheckState] = field(default_factory=dict)
    findings: list[Finding] = field(default_factory=list)
    samples: dict[tuple[str, str], list[tuple[float, float, str]]] = field(default_factory=dict)
    metrics: dict[str, dict[str, Any]] = field(default_factory=dict)  # "check.name" -> value, low, high, unit, better
    measurements: dict[str, dict[str, Any]] = field(default_factory=dict)  # check -> what its gather measured
    budget_results: list[Any] = field(default_factory=list)  # tfaudit.report.gates.BudgetResult
    baseline: Any = None  # tfaudit.report.gates.BaselineComparison
    profile: Profile = field(default_factory=Profile)  # what the ranking's currency is (--profile, --traffic)

    def apply(self, event: Event) -> None:
        if isinstance(event, ModelLoaded):
            self.inventory, self.environment = event.inventory, event.environment
        elif isinstance(event, LoadFailed):
            self.load_error = event.message
        elif isinstance(event, CheckStarted):
            self.checks[event.check] = CheckState(event.check, event.title, status="running", charts=tuple(event.charts))
        elif isinstance(event, CheckProgress):
            state = self._check(event.check)
            state.fraction, state.message = event.fraction, event.message
        elif isinstance(event, SampleEmitted):
            self.samples.setdefault((event.check, event.series), []).append((event.x, event.y, event.label))
        elif isinstance(event, MetricEmitted):
            self.metrics[f"{event.check}.{event.name}"] = {
                "value": event.value, "low": event.low, "high": event.high, "unit": event.unit, "better": event.better,
                "subject": event.subject, **({"decision": event.decision} if event.decision else {}),
                **({"samples": event.samples} if event.samples is not None else {}),
            }
        elif isinstance(event, MeasurementsEmitted):
            self.measurements[event.check] = event.data
        elif isinstance(event, FindingEmitted):
            self.findings.append(Finding.from_dict(event.finding))
        elif isinstance(event, CheckFinished):
            state = self._check(event.check)
            state.status, state.duration_s = event.status, event.duration_s
            state.error, state.stderr_tail = event.error, event.stderr_tail
            state.fraction = 1.0

    def _check(self, check_id: str) -> CheckState:
        return self.checks.setdefault(check_id, CheckState(check_id, check_id))

    def charts(self) -> list[tuple[str, Chart]]:
        """(check, chart) of every chart the checks that started declared, in their order."""
        return [(c.id, Chart.from_dict(chart)) for c in self.checks.values() for chart in c.charts]

    def chart_title(self, chart: Chart) -> str:
        """The chart's title: its headline finding's title once found."""
        return next((f.title for f in self.findings if chart.headline and f.id == chart.headline), chart.title)

    def figures(self) -> list[tuple[str, list[tuple[str, Chart]]]]:
        """(name, panels) of each picture: charts sharing a ``figure`` are its panels; a frontier several checks declare is one."""
        figures: dict[str, list[tuple[str, Chart]]] = {}
        for check, chart in self.charts():
            panels = figures.setdefault(chart.figure or chart.id, [])
            if all(other.id != chart.id for _, other in panels):
                panels.append((check, chart))
        return list(figures.items())

    def chart_points(self, check: str, chart: Chart) -> dict[str, list[tuple[float, float, str]]]:
        """The chart's lines: line label → points, from the check's samples (a frontier takes every check's)."""
        lines: dict[str, list[tuple[float, float, str]]] = {}
        for (owner, series), points in self.samples.items():
            label = chart.matches(series)
            if label is not None and (owner == check or chart.kind == "frontier"):
                lines.setdefault(label, []).extend(points)
        return lines

    def basis(self) -> Basis:
        """What this run measured that the profile prices savings with."""
        return Basis.of(self.metrics, self.environment or {})

    def ranked_findings(self) -> list[Finding]:
        return rank(self.findings, self.profile, self.basis())

    def recommendations(self) -> list[Finding]:
        """Ranked findings that ask for a fix (info findings only report measurements): opportunities, then diagnostics."""
        return [f for f in self.ranked_findings() if f.severity != "info"]

    def opportunities(self) -> list[Finding]:
        """Findings with a saving the profile prices, ranked by what each buys for the effort."""
        return [f for f in self.recommendations() if f.priority > 0]

    def diagnostics(self) -> list[Finding]:
        """Findings to act on without a saving the profile prices: hazards, facts, advice, savings of another runtime."""
        return [f for f in self.recommendations() if f.priority <= 0]

    def notes(self) -> list[Finding]:
        """Info findings: what was measured with nothing to fix (the undecided ones apart)."""
        return [f for f in self.ranked_findings() if f.severity == "info" and f.kind != "undecided"]

    def undecided(self) -> list[Finding]:
        """Comparisons the budget could not decide: no claim, not ranked."""
        return [f for f in self.ranked_findings() if f.kind == "undecided"]

    def passed(self) -> list[CheckState]:
        """Checks that finished with nothing to fix (what they measured is in their notes)."""
        acting = {f.check for f in self.recommendations()}
        return [c for c in self.checks.values() if c.status in ("passed", "findings") and c.id not in acting]

    def sections(self) -> dict[str, Any]:
        """The report's sections, as Lighthouse has them, by finding id and check id."""
        notes = self.notes()
        return {
            "opportunities": [f.id for f in self.opportunities()],
            "diagnostics": [f.id for f in self.diagnostics()],
            "passed": [{"check": c.id, "title": c.title, "notes": [f.id for f in notes if f.check == c.id]} for c in self.passed()],
            "notes": [f.id for f in notes],
            "undecided": [f.id for f in self.undecided()],
            "errored": [{"check": c.id, "error": c.error} for c in self.errored()],
            "skipped": [{"check": c.id, "reason": c.error} for c in self.checks.values() if c.status == "skipped"],
        }

    def errored(self) -> list[CheckState]:
        return [c for c in self.checks.values() if c.status == "errored"]

    def all_errored(self) -> bool:
        return bool(self.checks) and len(self.errored()) == len(self.checks)

    def verdict(self) -> str:
        """The audit's outcome in one sentence, the same in every front end and report.

        An errored check is counted and the first error named: no findings from checks that did
        not run is never "nothing needs fixing".
        """
        if self.load_error:
            return f"The model could not be audited: {self.load_error}"
        checks, errored = list(self.checks.values()), self.errored()
        if not checks:
            return "No check ran; nothing was measured."
        first = f"first: {errored[0].id}: {errored[0].error or 'no cause reported'}" if errored else ""
        if self.all_errored():
            return f"All {plural(len(checks), 'check')} errored; nothing was measured ({first})."
        found = self.recommendations()
        finished = sum(1 for c in checks if c.status in ("passed", "findings"))
        if errored:
            head = plural(len(found), "finding") if found else "No findings"
            return (f"{head} from the {plural(finished, 'check')} that finished, but {len(errored)} of {plural(len(checks), 'check')} "
                    f"errored: the audit is incomplete ({first}).")
        if found:
            counts = Counter(f.severity for f in found)
            opportunities, diagnostics = len(self.opportunities()), len(self.diagnostics())
            sections = [f"{plural(opportunities, 'opportunity')} ranked by {self.profile.unit} saved ({self.profile.label}) for the effort"
                        if opportunities else f"none with a saving priced ({self.profile.label})"]
            sections += [plural(diagnostics, "diagnostic")] if diagnostics else []
            return f"{plural(len(found), 'finding')} to fix ({', '.join(f'{counts[s]} {s}' for s in SEVERITIES if counts[s])}): {', '.join(sections)}."
        passed = sum(1 for c in checks if c.status == "passed")
        skipped = sum(1 for c in checks if c.status == "skipped")
        return (f"No findings: nothing measured needs fixing ({passed} of {plural(len(checks), 'check')} passed"
                + (f", {skipped} skipped" if skipped else "") + ").")

    def findings_at_or_above(self, severity: str) -> list[Finding]:
        if severity == "never":
            return []
        return [f for f in self.findings if severity_rank(f.severity) <= severity_rank(severity)]

    @property
    def started_iso(self) -> str:
        return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.started_at))

    def gate_failures(self) -> list[str]:
        """Why the budgets or the baseline fail this audit (exit 1)."""
        failures = [f"budget {r.metric} violated" for r in self.budget_results if r.status == "violated"]
        if self.baseline is not None:
            failures += [f"{row['metric']} regressed against the baseline" for row in self.baseline.regressions]
        return failures

    def report(self) -> dict[str, Any]:
        """The JSON report (schema documented in docs/reference.md)."""
        end = self.finished_at or time.time()
        return {
            "schema_version": SCHEMA_VERSION,
            "tool": {"name": "tfaudit", "version": __version__},
            "started_at": self.started_iso,
            "duration_s": round(end - self.started_at, 3),
            "budget": self.budget,
            "profile": {**self.profile.to_dict(), "assumptions": assumptions(self.profile, self.basis())},
            "interrupted": self.interrupted,
            "verdict": self.verdict(),
            "model": self.inventory or {"path": self.model_path},
            "environment": self.environment or {},
            "checks": [
                {"id": c.id, "title": c.title, "status": c.status, "duration_s": c.duration_s, "error": c.error, "charts": list(c.charts)}
                for c in self.checks.values()
            ],
            "metrics": self.metrics,
            "measurements": self.measurements,
            "budgets": [dict(r.__dict__) for r in self.budget_results],
            "baseline": self.baseline.to_dict() if self.baseline is not None else None,
            "sections": self.sections(),
            "findings": [f.to_dict() for f in self.ranked_findings()],
            "samples": [
                {"check": check, "series": series, "points": [[x, y, tag] if tag else [x, y] for x, y, tag in _downsample(points)]}
                for (check, series), points in self.samples.items()
            ],
        }


def _downsample(points: list[tuple[float, float, str]]) -> list[tuple[float, float, str]]:
    """At most MAX_POINTS_PER_SERIES points, keeping each bucket's highest: spikes and peaks survive."""
    if len(points) <= MAX_POINTS_PER_SERIES:
        return points
    edges = [round(i * len(points) / MAX_POINTS_PER_SERIES) for i in range(MAX_POINTS_PER_SERIES + 1)]
    return [max(points[a:b], key=lambda p: p[1]) for a, b in zip(edges, edges[1:])]
