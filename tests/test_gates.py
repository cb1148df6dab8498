"""Budgets, baselines and configuration: the CI gates (no TensorFlow)."""
import json

import pytest

from tfaudit.audit import AuditState
from tfaudit.config import ConfigError, load_config
from tfaudit.events import FindingEmitted, MetricEmitted, ModelLoaded
from tfaudit.gates import BaselineError, apply_gates, check_budgets, compare_with_baseline, load_baseline
from tfaudit.headless import exit_code
from tfaudit.report.markdown import render_markdown
from test_reports import ENVIRONMENT, INVENTORY, finding

LATENCY = {"value": 10.0, "low": 9.5, "high": 10.5, "unit": "ms", "better": "lower"}


def state_with(metrics, findings=()):
    state = AuditState(model_path="/m", budget="quick")
    state.apply(ModelLoaded(INVENTORY, ENVIRONMENT))
    for name, m in metrics.items():
        check, _, metric = name.partition(".")
        state.apply(MetricEmitted(check, metric, m["value"], m["unit"], m.get("low"), m.get("high"), m.get("better", "lower")))
    for f in findings:
        state.apply(FindingEmitted(f.check, f.to_dict()))
    return state


def test_budget_fails_only_when_the_whole_interval_is_past_the_limit():
    metrics = {"r.latency_ms": LATENCY, "q.size_bytes": {"value": 100.0, "unit": "B"}, "p.sparsity_pct": {"value": 50.0, "unit": "%", "better": "higher"}}
    results = {r.metric: r.status for r in check_budgets(
        {"r.latency_ms": 9.6, "q.size_bytes": 99.0, "p.sparsity_pct": 60.0, "m.missing": 1.0}, metrics)}
    assert results == {"r.latency_ms": "ok", "q.size_bytes": "violated", "p.sparsity_pct": "violated", "m.missing": "not measured"}
    assert {r.status for r in check_budgets({"r.latency_ms": 9.4}, metrics)} == {"violated"}


def test_violated_budget_is_a_finding_and_exits_1():
    state = state_with({"r.latency_ms": LATENCY})
    apply_gates(state, {"r.latency_ms": 5.0}, None)
    assert [f.id for f in state.recommendations()] == ["budget/r.latency_ms"]
    assert state.recommendations()[0].severity == "high"
    assert exit_code(state, "never") == 1
    text = render_markdown(state)
    assert "## Budgets" in text and "| `r.latency_ms` | 5 | 10 [9.5–10.5] ms | **violated** |" in text
    kept = state_with({"r.latency_ms": LATENCY})
    apply_gates(kept, {"r.latency_ms": 20.0}, None)
    assert exit_code(kept, "never") == 0 and kept.findings == []


def baseline_report(metrics, findings=(), environment=ENVIRONMENT):
    return {"schema_version": "1", "tool": {"name": "tfaudit"}, "environment": environment, "metrics": metrics,
            "findings": [f.to_dict() for f in findings]}


def test_baseline_regressions_beyond_noise_exit_1_and_come_first():
    old = baseline_report(
        {"r.latency_ms": {"value": 8.0, "low": 7.8, "high": 8.2, "unit": "ms"}, "q.size_bytes": {"value": 100.0, "unit": "B"},
         "r.noise_ms": {"value": 10.0, "low": 9.0, "high": 11.0, "unit": "ms"}, "m.growth": {"value": 50.0, "low": 40.0, "high": 60.0, "unit": "B"}},
        findings=[finding("r", "old-problem"), finding("m", "note", severity="info")],
    )
    state = state_with(
        {"r.latency_ms": LATENCY, "q.size_bytes": {"value": 101.0, "unit": "B"}, "r.noise_ms": {"value": 10.4, "low": 9.8, "high": 11.2, "unit": "ms"},
         "m.growth": {"value": 5.0, "low": 1.0, "high": 9.0, "unit": "B"}},
        findings=[finding("r", "new-problem")],
    )
    apply_gates(state, {}, ("old.json", old))
    comparison = state.baseline
    assert [r["metric"] for r in comparison.regressions] == ["r.latency_ms"]  # 1 % size change and overlapping noise are not
    assert [r["metric"] for r in comparison.improvements] == ["m.growth"]
    assert comparison.new_findings == ["r/new-problem"] and comparison.resolved_findings == ["r/old-problem"]
    assert comparison.warnings == []
    assert exit_code(state, "never") == 1
    text = render_markdown(state)
    assert text.index("## Compared with the baseline") < text.index("## Recommendations")
    assert "| **regressed** | `r.latency_ms` | 8 [7.8–8.2] ms | 10 [9.5–10.5] ms |" in text
    assert json.loads(json.dumps(state.report()))["baseline"]["regressions"][0]["metric"] == "r.latency_ms"


def test_baseline_from_another_host_warns():
    other = dict(ENVIRONMENT, cpu="Other CPU", tensorflow="2.20.0")
    comparison = compare_with_baseline("old.json", baseline_report({}, environment=other), {}, [], ENVIRONMENT)
    assert len(comparison.warnings) == 2 and "Other CPU" in comparison.warnings[0]


@pytest.mark.parametrize(
    "content, message",
    [
        ("not json", "is not JSON"),
        ('{"tool": {"name": "other"}}', "is not a tfaudit JSON report"),
        ('{"tool": {"name": "tfaudit"}, "schema_version": "9"}', "schema_version '9'"),
        ('{"tool": {"name": "tfaudit"}, "schema_version": "1"}', "lacks findings or metrics"),
    ],
)
def test_malformed_baseline_is_one_clear_error(tmp_path, content, message):
    path = tmp_path / "old.json"
    path.write_text(content)
    with pytest.raises(BaselineError, match=message):
        load_baseline(str(path))


def test_config_from_pyproject_and_explicit_file(tmp_path):
    (tmp_path / "pyproject.toml").write_text(
        '[project]\nname = "x"\n[tool.tfaudit]\nbudget = "quick"\nchecks = ["memory"]\n[tool.tfaudit.budgets]\n"memory.peak_rss_mb" = 900\n'
    )
    config = load_config(directory=str(tmp_path))
    assert config.options == {"budget": "quick", "checks": ["memory"]} and config.budgets == {"memory.peak_rss_mb": 900.0}
    plain = tmp_path / "ci.toml"
    plain.write_text('fail_on = "high"\n[budgets]\n"retracing.serving_latency_ms" = 2.5\n')
    assert load_config(str(plain)).options == {"fail_on": "high"}
    assert load_config(directory=str(tmp_path / "nowhere")).options == {}


@pytest.mark.parametrize(
    "content, message",
    [
        ("budget = ", "not valid TOML"),
        ('colour = "red"', "unknown key 'colour'"),
        ('budget = "huge"', "choose one of"),
        ("max_fidelity_loss = true", "wrong type"),
        ('[budgets]\nlatency = 3', "must name a metric as check.name"),
        ('[budgets]\n"r.latency_ms" = "fast"', "must be a number"),
    ],
)
def test_malformed_config_is_one_clear_error(tmp_path, content, message):
    path = tmp_path / "ci.toml"
    path.write_text(content)
    with pytest.raises(ConfigError, match=message) as error:
        load_config(str(path))
    assert "\n" not in str(error.value)
    with pytest.raises(ConfigError, match="not found"):
        load_config(str(tmp_path / "missing.toml"))
