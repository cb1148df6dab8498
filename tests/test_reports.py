"""Ranking and reports, driven by a synthetic event stream (no TensorFlow)."""
import json
import os

import pytest

from tfaudit.api import Effort, Finding, Fix, Measure, Risk
from tfaudit.report.audit import AuditState
from tfaudit.events import (
    CheckFinished,
    CheckProgress,
    CheckStarted,
    FindingEmitted,
    MetricEmitted,
    ModelLoaded,
    SampleEmitted,
    from_json,
    to_json,
)
from tfaudit.report.priority import priority, rank
from tfaudit.report import check_writable, write_atomic
from tfaudit.report.json import render_json
from tfaudit.report.markdown import render_markdown

INVENTORY = {
    "path": "/models/resnet", "format": "saved_model", "signature": "serving_default",
    "signatures": {"serving_default": {"inputs": [{"name": "x", "shape": [None, 8], "dtype": "float32"}],
                                       "outputs": [{"name": "y", "shape": [None, 4], "dtype": "float32"}]}},
    "functions": [{"name": "predict", "concrete_functions": 3, "input_signatures": [], "python_args": []}],
    "variables": {"count": 2, "parameters": 36, "bytes": 144, "by_dtype": {}},
    "size_bytes": 20000, "files": {}, "ops": {"MatMul": 1, "Relu": 1}, "versions": {"tensorflow": "2.21.0", "keras": None},
    "keras_loadable": False,
}
ENVIRONMENT = {"python": "3.11.7", "tensorflow": "2.21.0", "cpu": "Test CPU", "cores_logical": 2, "memory_bytes": 2**34,
               "gpus": [], "gpu_status": "no GPU: NVML library not found", "platform": "Linux"}


def finding(check, slug, severity="medium", hours=1.0, **kw):
    return Finding(
        id=f"{check}/{slug}", check=check, severity=severity, title=f"{slug} title", summary=f"{slug} | summary",
        evidence={"traces": 5, "median_ms": [1.5, 2.5]}, effort=Effort("hours", hours, "an hour"),
        fix=Fix("Use an input signature.", "tf.function(input_signature=[tf.TensorSpec([None, 8], tf.float32)])"),
        why="Retracing costs time.", verify="Run tfaudit again.", **kw,
    )


# What the serving check measured that the server profile prices latency with: 1 CPU ms per request, a call of 1 ms wall
SERVING_CPU = [MetricEmitted("serving", name, 1.0, "ms", 0.9, 1.1) for name in ("cpu_ms_per_row", "cpu_ms_per_call", "p50_ms_batch_1")]


def audit_events():
    slow = finding("retracing", "wrapper", savings={"latency_pct": Measure(60.0, 50.0, 70.0), "latency_ms": Measure(3.0, 2.5, 3.5)})
    small = finding("quantization", "int8", severity="low", hours=2.0, savings={"size_pct": Measure(75.0), "size_bytes": Measure(30e6)},
                    risk=Risk("medium", "top-1 agreement 97 %", 0.03))
    hazard = finding("retracing", "python-arg", severity="high", hours=4.0)
    return [
        ModelLoaded(INVENTORY, ENVIRONMENT),
        CheckStarted("retracing", "Retracing"),
        CheckProgress("retracing", 0.5, "probing"),
        SampleEmitted("retracing", "latency_ms", 0, 9.5, "trace"),
        SampleEmitted("retracing", "latency_ms", 1, 1.0),
        MetricEmitted("retracing", "serving_latency_ms", 1.2, "ms", 1.1, 1.3),
        *SERVING_CPU,
        FindingEmitted("retracing", hazard.to_dict()),
        FindingEmitted("retracing", slow.to_dict()),
        CheckFinished("retracing", "findings", 3.2),
        CheckStarted("quantization", "Quantization"),
        FindingEmitted("quantization", small.to_dict()),
        CheckFinished("quantization", "findings", 9.0),
        CheckStarted("memory", "Memory"),
        CheckFinished("memory", "errored", 1.0, "worker crashed with SIGSEGV", "tail"),
    ]


def replayed_state():
    state = AuditState(model_path="/models/resnet", budget="quick", started_at=1000.0)
    for event in audit_events():
        state.apply(from_json(to_json(event)))  # through the wire format, as from a worker
    state.finished_at = 1012.5
    return state


def test_priority_is_the_worth_at_its_low_end_and_an_unpriced_finding_is_a_diagnostic():
    from tfaudit.report.profiles import Basis, Profile

    basis = Basis(cpu_ms_per_row=Measure(1.0), cpu_ms_per_call=Measure(1.0), wall_ms_per_call=1.0, cores=2)
    slow = finding("retracing", "a", savings={"latency_pct": Measure(60.0, 50.0, 70.0)})
    noise = finding("n", "e", severity="low", savings={"latency_pct": Measure(3.0, -1.0, 7.0)})
    hazard = finding("r", "c", severity="high", hours=4.0)
    ranked = rank([noise, hazard, slow], Profile(), basis)
    assert [f.id for f in ranked] == ["retracing/a", "r/c", "n/e"]  # an interval reaching below zero claims nothing
    assert ranked[0].priority == pytest.approx(ranked[0].worth["low"]) and ranked[0].worth["low"] < ranked[0].worth["value"]
    assert priority(hazard, None) == 0 and ranked[2].priority == 0


def test_events_round_trip_and_reject_garbage():
    for event in audit_events():
        assert from_json(to_json(event)) == event
    with pytest.raises(ValueError):
        from_json('{"event": "nonsense"}')
    assert '"y":null' in to_json(SampleEmitted("c", "s", 1.0, float("nan")))


def test_json_report_schema_and_order():
    report = json.loads(render_json(replayed_state()))
    assert report["schema_version"] == "1"
    assert report["tool"]["name"] == "tfaudit"
    assert report["model"]["signature"] == "serving_default"
    assert report["environment"]["cpu"] == "Test CPU"
    assert [c["id"] for c in report["checks"]] == ["retracing", "quantization", "memory"]
    assert report["checks"][2] == {"id": "memory", "title": "Memory", "status": "errored", "duration_s": 1.0,
                                   "error": "worker crashed with SIGSEGV", "charts": []}
    ids = [f["id"] for f in report["findings"]]
    assert ids == ["retracing/wrapper", "quantization/int8", "retracing/python-arg"]
    priorities = [f["priority"] for f in report["findings"]]
    assert priorities == sorted(priorities, reverse=True)
    assert report["findings"][0]["savings"]["latency_pct"] == {"value": 60.0, "low": 50.0, "high": 70.0}
    assert report["samples"] == [{"check": "retracing", "series": "latency_ms", "points": [[0, 9.5, "trace"], [1, 1.0]]}]  # a tag kept
    assert report["duration_s"] == 12.5
    assert {k: v for k, v in report["metrics"].items() if k.startswith("retracing.")} == {
        "retracing.serving_latency_ms": {"value": 1.2, "low": 1.1, "high": 1.3, "unit": "ms", "better": "lower", "subject": ""}
    }
    assert report["sections"]["opportunities"] == ["retracing/wrapper", "quantization/int8"]
    assert report["sections"]["diagnostics"] == ["retracing/python-arg"] and report["sections"]["errored"][0]["check"] == "memory"
    assert report["profile"]["name"] == "server" and report["profile"]["assumptions"]
    assert report["findings"][0]["worth"]["unit"] == "$/month" and "cores" in report["findings"][0]["worth"]["physical"]
    # the JSON findings load back as Findings
    assert Finding.from_dict(report["findings"][0]).id == "retracing/wrapper"


def test_markdown_report_sections_and_ranked_table():
    text = render_markdown(replayed_state())
    assert text.startswith("# tfaudit report: resnet\n")
    assert "**3 findings** (1 high, 1 medium, 1 low)" in text
    assert "> **Check `memory` errored:** worker crashed with SIGSEGV" in text
    order = [text.index(h) for h in ("## Recommendations", "## Checks", "## Environment", "## Model", "## Findings")]
    assert order == sorted(order)
    table = text.split("## Recommendations")[1].split("## Checks")[0]
    rows = [line for line in table.splitlines() if line.startswith("| ") and not line.startswith("| #")]
    assert [row.split("|")[1].strip() for row in rows] == ["1", "2", "3"]
    assert "retracing/wrapper" in rows[0] and "quantization/int8" in rows[1]
    assert "3 ms [2.5–3.5]" in rows[0]
    assert "wrapper \\| summary" not in table  # summaries stay out of the table
    assert "```python\ntf.function(input_signature" in text
    assert "**How to verify**" in text and "**Why it matters**" in text
    assert "`predict` | 3" in text
    assert "no GPU: NVML library not found" in text


def test_clean_audit_says_nothing_is_wrong():
    state = AuditState(model_path="/m", budget="standard")
    for event in [ModelLoaded(INVENTORY, ENVIRONMENT), CheckStarted("retracing", "R"), CheckFinished("retracing", "passed", 2.0)]:
        state.apply(event)
    text = render_markdown(state)
    assert "> **Verdict:** No findings: nothing measured needs fixing (1 of 1 check passed)." in text
    assert "## Recommendations" not in text


def test_write_atomic_replaces_whole_files_and_leaves_no_temp(tmp_path):
    path = tmp_path / "r.md"
    path.write_text("old")
    write_atomic(str(path), "new report")
    assert path.read_text() == "new report"
    assert os.listdir(tmp_path) == ["r.md"]


@pytest.mark.parametrize("mask", [0o022, 0o077, 0o002])
def test_reports_get_the_permissions_the_umask_gives_a_new_file(tmp_path, mask):
    old = os.umask(mask)
    try:
        write_atomic(str(tmp_path / "r.md"), "report")
        write_atomic(str(tmp_path / "r.png"), b"\x89PNG")
        (tmp_path / "plain").write_text("any new file")
    finally:
        os.umask(old)
    expected = oct((tmp_path / "plain").stat().st_mode & 0o777)
    assert oct((tmp_path / "r.md").stat().st_mode & 0o777) == expected == oct(0o666 & ~mask)
    assert (tmp_path / "r.png").read_bytes() == b"\x89PNG" and oct((tmp_path / "r.png").stat().st_mode & 0o777) == expected


def test_check_writable(tmp_path):
    assert check_writable(str(tmp_path / "ok.md")) is None
    assert check_writable(str(tmp_path / "new" / "dir" / "r.md")) is None and (tmp_path / "new" / "dir").is_dir()
    (tmp_path / "file").write_text("")
    assert "cannot create directory" in check_writable(str(tmp_path / "file" / "r.md"))
    assert "is a directory" in check_writable(str(tmp_path))


def test_json_samples_are_downsampled_keeping_spikes():
    state = AuditState(model_path="/m", budget="quick")
    for i in range(1000):
        state.apply(SampleEmitted("retracing", "latency_ms", i, 50.0 if i == 777 else 1.0))
    points = json.loads(render_json(state))["samples"][0]["points"]
    assert len(points) == 200
    assert [777, 50.0] in points
    assert points[0][0] < points[-1][0]


def test_junit_has_a_case_per_check_and_a_failure_per_gating_finding():
    import xml.etree.ElementTree as ET

    from tfaudit.report.junit import render_junit

    suite = ET.fromstring(render_junit(replayed_state(), gate="medium"))
    assert suite.tag == "testsuite"
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors"), suite.get("skipped")) == ("5", "2", "1", "0")
    cases = {case.get("name"): case for case in suite.iter("testcase")}
    assert set(cases) == {"retracing", "quantization", "memory", "retracing/python-arg", "retracing/wrapper"}
    assert cases["memory"].find("error").get("message") == "worker crashed with SIGSEGV"
    failure = cases["retracing/wrapper"].find("failure")
    assert failure.get("type") == "medium" and "tf.function(input_signature" in failure.text
    assert cases["retracing/wrapper"].get("classname") == "tfaudit.retracing"
    high_only = ET.fromstring(render_junit(replayed_state(), gate="high"))
    assert high_only.get("failures") == "1"


def test_step_summary_is_appended_when_github_asks(tmp_path, monkeypatch):
    from tfaudit.report.outputs import write_outputs

    summary = tmp_path / "summary.md"
    summary.write_text("earlier step\n")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    written = write_outputs(replayed_state(), junit=str(tmp_path / "j.xml"))
    assert written == [str(tmp_path / "j.xml")]
    text = summary.read_text()
    assert text.startswith("earlier step\n# tfaudit report: resnet")
    assert "## Recommendations" in text


def test_info_findings_are_notes_not_recommendations():
    state = AuditState(model_path="/m", budget="standard")
    stable = finding("memory", "stable", severity="info")
    for event in [ModelLoaded(INVENTORY, ENVIRONMENT), CheckStarted("memory", "Memory"),
                  FindingEmitted("memory", stable.to_dict()), CheckFinished("memory", "passed", 2.0)]:
        state.apply(event)
    assert state.recommendations() == [] and [f.id for f in state.notes()] == ["memory/stable"]
    text = render_markdown(state)
    assert "No findings: nothing measured needs fixing (1 of 1 check passed)." in text
    assert "## Recommendations" not in text
    assert "## Measured, nothing to fix" in text and "### 1. stable title" in text
    assert json.loads(render_json(state))["findings"][0]["id"] == "memory/stable"  # JSON keeps everything


def recorded_state(name="audit_replay.jsonl") -> AuditState:
    """A real audit's event stream (tests/data), with samples for every chart the checks feed."""
    from tfaudit.events import from_json

    state = AuditState(model_path="mlp", budget="quick")
    with open(os.path.join(os.path.dirname(__file__), "data", name), encoding="utf-8") as f:
        for line in f:
            state.apply(from_json(line))
    return state


def test_the_markdown_report_writes_its_charts_beside_it_and_links_them(tmp_path):
    from matplotlib.image import imread

    from tfaudit.report.markdown import write_markdown

    state = recorded_state()
    (tmp_path / "out").mkdir()
    images = write_markdown(state, str(tmp_path / "out" / "report.md"))
    text = (tmp_path / "out" / "report.md").read_text()
    names = sorted(os.listdir(tmp_path / "out" / "report_files"))
    assert {"memory_timeline.png", "latency.png", "compression.png"} <= set(names)
    assert sorted(os.path.basename(p) for p in images) == names
    for name in names:
        assert f"](report_files/{name})" in text
        pixels = imread(tmp_path / "out" / "report_files" / name)
        assert pixels.shape[0] >= 1000 and pixels.shape[1] >= 2000  # 8 × 4.5 in at 300 DPI
        assert pixels[..., :3].std() > 0.01  # something is drawn


def test_html_report_is_one_self_contained_file(tmp_path):
    import base64
    import re

    from tfaudit.report.html import write_html

    write_html(recorded_state(), str(tmp_path / "r.html"))
    page = (tmp_path / "r.html").read_text()
    assert page.startswith("<!DOCTYPE html>") and "<table>" in page and "<h2>Recommendations</h2>" in page
    sources = re.findall(r'<img src="([^"]+)"', page)
    assert len(sources) >= 3 and all(s.startswith("data:image/png;base64,") for s in sources)
    assert all(base64.b64decode(s.split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n" for s in sources)
    assert not re.search(r'(src|href)="https?://', page)
