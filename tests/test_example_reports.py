"""reports/ holds what `tfaudit --demo --headless` wrote (README: "Example reports"); they must parse and follow the schema."""
import json
import os

import pytest

from tfaudit.api import SEVERITIES, Finding
from tfaudit.events import CHECK_STATUSES
from tfaudit.engine.registry import discover_checks

REPORTS = os.path.join(os.path.dirname(__file__), "..", "reports")


@pytest.fixture(scope="module")
def demo_json():
    with open(os.path.join(REPORTS, "demo.json"), encoding="utf-8") as f:
        return json.load(f)


def test_json_report_follows_the_schema(demo_json):
    assert demo_json["schema_version"] == "1"
    assert {"tool", "started_at", "duration_s", "budget", "interrupted", "model", "environment", "checks", "findings", "samples"} <= set(demo_json)
    model = demo_json["model"]
    assert {"path", "format", "signature", "signatures", "functions", "variables", "size_bytes", "files", "ops", "versions"} <= set(model)
    builtin = {spec.id for spec in discover_checks() if spec.origin == "built-in"}
    assert {c["id"] for c in demo_json["checks"]} == builtin  # regenerate reports/ when a check is added
    assert all(c["status"] in CHECK_STATUSES for c in demo_json["checks"])
    findings = [Finding.from_dict(f) for f in demo_json["findings"]]
    assert findings and all(f.severity in SEVERITIES for f in findings)
    priced = [f for f in findings if f.priority > 0]  # the opportunities, then the rest
    assert priced and all(f.priority == 0 for f in findings[len(priced):]) and set(demo_json["sections"]["opportunities"]) == {f.id for f in priced if f.severity != "info"}
    for conditional in (False, True):  # what applies as it is first, then what applies only if; each by priority
        priorities = [f.priority for f in priced if bool(f.applies_if) == conditional]
        assert priorities == sorted(priorities, reverse=True)
    assert [bool(f.applies_if) for f in priced] == sorted(bool(f.applies_if) for f in priced)
    assert demo_json["profile"]["name"] == "server" and all(f.worth["unit"] == "$/month" for f in priced)
    assert all(f.confidence is None or f.basis for f in findings) and {"opportunity", "fact"} <= {f.kind for f in findings} <= {"opportunity", "fact", "undecided"}
    for series in demo_json["samples"]:
        assert len(series["points"]) <= 200 and all(len(p) == 2 or (len(p) == 3 and p[2]) for p in series["points"])


def test_demo_report_shows_the_planted_problems(demo_json):
    ids = {f["id"] for f in demo_json["findings"]}
    assert {"retracing/retraced-before-export", "retracing/python-argument", "retracing/fixed-batch-dim", "quantization/float64"} <= ids
    assert any(i.startswith("pruning/magnitude-") for i in ids)


def test_markdown_report_matches_the_json(demo_json):
    with open(os.path.join(REPORTS, "demo.md"), encoding="utf-8") as f:
        text = f.read()
    for heading in ("## Recommendations", "## Checks", "## Environment", "## Model", "## Findings"):
        assert heading in text
    first = next(f for f in demo_json["findings"] if f["severity"] != "info")
    assert f"### 1. {first['title']}" in text


def state_from_report(report: dict):
    from tfaudit.report.audit import AuditState, CheckState

    state = AuditState(model_path=report["model"]["path"], budget=report["budget"])
    state.inventory, state.environment, state.metrics = report["model"], report["environment"], report["metrics"]
    state.checks = {c["id"]: CheckState(c["id"], c["title"], c["status"], 1.0, "", c["duration_s"], c["error"]) for c in report["checks"]}
    state.findings = [Finding.from_dict(f) for f in report["findings"]]
    return state


def table_cells(markdown: str) -> list[str]:
    cells = []
    for line in markdown.splitlines():
        if line.startswith("|") and not set(line) <= set("|-"):
            cells += [c.strip() for c in line.strip().strip("|").replace("\\|", "¦").split("|")]
    return cells


def test_no_table_cell_of_the_demo_report_holds_json(demo_json):
    """Every cell of every table: no braces, no quoted keys, no lists of quoted strings."""
    import re

    from tfaudit.report.markdown import render_markdown

    cells = table_cells(render_markdown(state_from_report(demo_json)))
    assert len(cells) > 300
    offending = [c for c in cells if re.search(r'[{}]|"\w+"\s*:|\[\s*"', c)]
    assert offending == []
    with open(os.path.join(REPORTS, "demo.md"), encoding="utf-8") as f:
        assert [c for c in table_cells(f.read()) if re.search(r'[{}]|"\w+"\s*:|\[\s*"', c)] == []  # the committed example too


def test_the_report_opens_with_a_three_line_verdict(demo_json):
    from tfaudit.report.markdown import render_markdown

    lines = render_markdown(state_from_report(demo_json)).splitlines()
    first = next(f for f in demo_json["findings"] if f["severity"] != "info")
    assert lines[2].startswith("> **Do first** (profile `server`): " + first["title"])
    assert lines[3].startswith("> **Saves:** ") and lines[4].startswith("> **How sure:** confidence ")
