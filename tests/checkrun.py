"""Run a check in this process on a model path: fast, for tests that inspect what it yields."""
from __future__ import annotations

import json
import time

from tfaudit.api import Finding, Metric, Sample, SkipCheck


class Outcome:
    def __init__(self, items, skipped: str | None, seconds: float):
        self.items = items
        self.findings = {i.id: i for i in items if isinstance(i, Finding)}
        self.samples = [i for i in items if isinstance(i, Sample)]
        self.metrics = {i.name: i for i in items if isinstance(i, Metric)}
        self.skipped = skipped
        self.seconds = seconds

    def ids(self) -> set[str]:
        return set(self.findings)

    def series(self, name: str) -> list[Sample]:
        return [s for s in self.samples if s.series == name]


def context(path: str, budget: str = "quick", options: dict | None = None):
    """The Context a worker gives a check: the model at ``path`` loaded, its inputs probed."""
    from tfaudit.api import Context
    from tfaudit.budget import BUDGETS
    from tfaudit.engine.input_probe import open_inputs
    from tfaudit.engine.model import load_model

    model = load_model(path)
    return Context(model=model, inputs=open_inputs(model), budget=BUDGETS[budget], options=options or {})


def run_in_process(check, path: str, budget: str = "quick", options: dict | None = None, outcome_class=Outcome) -> Outcome:
    ctx = context(path, budget, options)
    items, skipped = [], None
    start = time.perf_counter()
    try:
        items.extend(check.run(ctx))
    except SkipCheck as exc:
        skipped = str(exc)
    outcome = outcome_class(items, skipped, time.perf_counter() - start)
    for finding in outcome.findings.values():
        json.dumps(finding.to_dict())  # everything a finding carries must reach the JSON report
    return outcome
