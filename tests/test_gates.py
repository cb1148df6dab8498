"""Budgets, baselines and configuration: the CI gates (no TensorFlow)."""
import json

import numpy as np
import pytest

from tfaudit.report.audit import AuditState
from tfaudit.config import ConfigError, load_config
from tfaudit.events import FindingEmitted, MetricEmitted, ModelLoaded
from tfaudit.report.gates import NO_PROCESSES, NO_REFERENCE, TAIL_MINIMUM_FACTOR, BaselineError, apply_gates, check_budgets, compare_with_baseline, load_baseline
from tfaudit.engine.host_index import slower_at_least
from tfaudit.exit_codes import exit_code
from tfaudit.report.markdown import render_markdown
from test_reports import ENVIRONMENT, INVENTORY, finding

LATENCY = {"value": 10.0, "low": 9.5, "high": 10.5, "unit": "ms", "better": "lower"}


def latency(value, spread=0.02, subject=""):
    return {"value": value, "low": value * (1 - spread), "high": value * (1 + spread), "unit": "ms", "better": "lower", "subject": subject}


def processes(ratio=0.7, spread_pct=2.0, count=6, kind="batch_1"):
    """serving's fresh processes: a call ÷ the reference timed in turn with it, their geometric mean and spread."""
    name = f"s.{kind}_per_reference"
    return {name: {"value": ratio, "unit": "×", "samples": count}, name + "_spread_pct": {"value": spread_pct, "unit": "%", "samples": count}}


def state_with(metrics, findings=(), environment=ENVIRONMENT):
    state = AuditState(model_path="/m", budget="quick")
    state.apply(ModelLoaded(INVENTORY, environment))
    for name, m in metrics.items():
        check, _, metric = name.partition(".")
        state.apply(MetricEmitted(check, metric, m["value"], m["unit"], m.get("low"), m.get("high"), m.get("better", "lower"), m.get("subject", ""), m.get("decision"), m.get("samples")))
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
         "r.noise_ms": {"value": 10.0, "low": 9.0, "high": 11.0, "unit": "ms"}, "m.growth": {"value": 50.0, "low": 40.0, "high": 60.0, "unit": "B"},
         "r.host_index_ms": latency(0.7), **processes(0.7)},
        findings=[finding("r", "old-problem"), finding("m", "note", severity="info")],
    )
    state = state_with(
        {"r.latency_ms": {"value": 32.0, "low": 31.0, "high": 33.0, "unit": "ms"}, "q.size_bytes": {"value": 101.0, "unit": "B"},
         "r.noise_ms": {"value": 10.4, "low": 9.8, "high": 11.2, "unit": "ms"}, "m.growth": {"value": 5.0, "low": 1.0, "high": 9.0, "unit": "B"},
         "r.host_index_ms": latency(1.4), **processes(1.4, 3.0)},  # the reference ran 2x slower: the host, never a regression itself
        findings=[finding("r", "new-problem")],
    )
    apply_gates(state, {}, ("old.json", old))
    comparison = state.baseline
    # 1 % size change and overlapping noise are not; r.noise_ms (10 -> 10.4 ms on a 2x slower host) improved
    assert [r["metric"] for r in comparison.regressions] == ["r.latency_ms"]
    assert [r["metric"] for r in comparison.improvements] == ["m.growth", "r.noise_ms"]
    assert comparison.new_findings == ["r/new-problem"] and comparison.resolved_findings == ["r/old-problem"]
    assert comparison.warnings == [] and comparison.regressions[0]["host_scale"] == pytest.approx(2.0)
    assert exit_code(state, "never") == 1
    text = render_markdown(state)
    assert text.index("## Compared with the baseline") < text.index("## Recommendations")
    assert comparison.regressions[0]["factor"] == pytest.approx(1.1)
    assert "| **regressed** | `r.latency_ms` | 8 [7.8–8.2] ms (host ×2: 16 [15.6–16.4] ms) | 32 [31–33] ms | ×1.1 |" in text
    assert "latency: ×2 per unit of reference, at least ×1.9" in text and "(spreads 2 % and 3 % over 6 and 6 processes)" in text
    assert json.loads(json.dumps(state.report()))["baseline"]["regressions"][0]["metric"] == "r.latency_ms"


def compare_latency(old_ms, new_ms, old_index=0.74, new_index=0.74, old_subject="", new_subject="", old_run=None, new_run=None):
    """r.latency_ms from old_ms to new_ms, with the reference workload timed alongside it (None: not timed) and the
    serving check's fresh processes (by default they show the same change as r.latency_ms; False: not measured)."""
    def metrics(ms, index, subject, run):
        return {"r.latency_ms": latency(ms, subject=subject), **({"r.host_index_ms": latency(index)} if index else {}), **(run or {})}

    old_run = processes() if old_run is None else old_run
    new_run = processes(0.7 * (new_ms / (new_index or 1)) / (old_ms / (old_index or 1))) if new_run is None else new_run
    old = baseline_report(metrics(old_ms, old_index, old_subject, old_run))
    state = state_with(metrics(new_ms, new_index, new_subject, new_run))
    apply_gates(state, {}, ("old.json", old))
    return state


def test_a_latency_regresses_past_the_practical_minimum_when_the_runs_processes_show_it_too():
    # Non-overlapping intervals (between-run drift does that) but less than 10 % of a call: not a regression.
    assert compare_latency(1.0, 1.07).baseline.regressions == []
    slower = compare_latency(1.0, 1.15)
    assert [r["metric"] for r in slower.baseline.regressions] == ["r.latency_ms"] and exit_code(slower, "never") == 1
    assert slower.baseline.whole_runs["latency"]["slower"] > 1.1 and slower.baseline.level == 0.95  # quick, one timed metric
    faster = compare_latency(1.15, 1.0).baseline
    assert faster.regressions == [] and [r["metric"] for r in faster.improvements] == ["r.latency_ms"]
    # Overlapping intervals never regress, however large the point change.
    wide = baseline_report({"r.latency_ms": latency(1.0, spread=0.5)})
    state = state_with({"r.latency_ms": latency(1.6, spread=0.5)})
    apply_gates(state, {}, ("old.json", wide))
    assert state.baseline.regressions == []


def test_one_process_reading_slow_alone_is_not_confirmed():
    alone = compare_latency(1.0, 1.5, new_run=processes(0.71))
    assert alone.baseline.regressions == [] and exit_code(alone, "never") == 0
    assert [r["metric"] for r in alone.baseline.unconfirmed] == ["r.latency_ms"]
    assert "| not confirmed | `r.latency_ms` |" in render_markdown(alone)
    # Processes that spread widely need a larger shift of their mean to show a slowdown of 10 %.
    assert compare_latency(1.0, 1.5, new_run=processes(0.7 * 1.2)).baseline.regressions
    noisy = compare_latency(1.0, 1.5, old_run=processes(spread_pct=20.0, count=3), new_run=processes(0.7 * 1.2, 20.0, 3)).baseline
    assert noisy.regressions == [] and noisy.whole_runs["latency"]["slower"] < 1.1 < 1.2


def test_the_self_compare_that_read_one_worker_slow():
    """benchmarks/self_compare.py, MLP with a busy core: the retracing worker of an unchanged run read latency ÷ reference
    0.84 where its run's six fresh processes read 0.67-0.69 (the single-process factor rule exited 1); its slowed twin's
    processes read 2.6x the baseline's."""
    def run(latency_ms, index_ms, calls, references):
        ratios = [[c / r for c in call] for call, r in zip(calls, references)]
        logs = np.log(np.array(ratios))
        metrics = {"retracing.serving_latency_ms": latency(latency_ms), "retracing.host_index_ms": latency(index_ms)}
        for position, kind in enumerate(("batch_1", "serving_batch")):
            metrics.update(processes(float(np.exp(logs[:, position].mean())), float(100 * logs[:, position].std(ddof=1)), len(calls), kind))
        return metrics

    before = run(0.5202, 0.7896, [[0.5712, 0.9803], [0.6013, 0.9905], [0.5629, 0.9344], [0.5474, 0.9313], [0.5628, 0.9488], [0.5711, 0.9578]],
                 [0.8345, 0.8807, 0.8415, 0.8435, 0.8304, 0.852])
    unchanged = run(0.87315, 1.03925, [[0.5611, 0.9444], [0.5613, 0.9545], [0.5787, 0.9954], [0.5731, 0.9436], [0.579, 0.942], [0.5906, 1.022]],
                    [0.8413, 0.8326, 0.8477, 0.8293, 0.8419, 0.8681])
    slowed = run(1.561, 0.8361, [[1.6202, 2.7483], [1.8973, 2.995], [2.4983, 3.9798], [2.0458, 3.0401], [1.7471, 2.8704], [1.7645, 2.8504]],
                 [0.9168, 1.0593, 1.3786, 1.1107, 1.02, 0.9086])
    state = state_with(unchanged)
    apply_gates(state, {}, ("old.json", baseline_report(before)))
    assert state.baseline.regressions == [] and [r["metric"] for r in state.baseline.unconfirmed] == ["retracing.serving_latency_ms"]
    state = state_with(slowed)
    apply_gates(state, {}, ("old.json", baseline_report(before)))
    assert [r["metric"] for r in state.baseline.regressions] == ["retracing.serving_latency_ms"]
    assert state.baseline.whole_runs["latency"]["slower"] > 1.9


def test_the_timed_metrics_compared_share_the_budgets_error_rate():
    metrics = lambda ms: {"r.latency_ms": latency(ms), "r.host_index_ms": latency(0.74), "s.p50_ms": latency(ms),  # noqa: E731
                          "s.host_index_ms": latency(0.74), **processes(), "q.size_bytes": {"value": 1.0, "unit": "B"}}
    state = state_with(metrics(1.0))
    apply_gates(state, {}, ("old.json", baseline_report(metrics(1.0))))
    assert state.baseline.level == pytest.approx(1 - 0.05 / 2)  # two timed metrics at quick's 95 %


def test_the_whole_runs_bound_is_exceeded_at_most_as_often_as_its_level_allows():
    """Simulated pairs of runs whose processes' log ratios differ by exactly the practical minimum: the bound claims more
    than that at most 1 - level of the time."""
    rng = np.random.default_rng(0)
    sigma, level, claimed, trials = 0.05, 0.95, 0, 4000
    shift = np.log(1.1)
    for _ in range(trials):
        old, new = rng.normal(0.0, sigma, 3), rng.normal(shift, sigma, 6)
        summary = [{"ratio": float(np.exp(x.mean())), "spread_pct": float(100 * x.std(ddof=1)), "processes": len(x)} for x in (old, new)]
        claimed += slower_at_least(*summary, level) >= 1.1
    assert claimed / trials <= (1 - level) * 1.2


def test_a_tail_latency_needs_the_tail_minimum():
    def compare_p99(old_ms, new_ms):
        old = baseline_report({"s.p99_ms_batch_1": latency(old_ms), "s.host_index_ms": latency(0.74), **processes()})
        state = state_with({"s.p99_ms_batch_1": latency(new_ms), "s.host_index_ms": latency(0.74), **processes(0.7 * new_ms / old_ms)})
        apply_gates(state, {}, ("old.json", old))
        return state.baseline.regressions

    assert compare_p99(1.0, 1.6) == []  # past a median's minimum, as unchanged runs' tails were
    assert [r["metric"] for r in compare_p99(1.0, 1.05 * TAIL_MINIMUM_FACTOR)] == ["s.p99_ms_batch_1"]


def test_latencies_are_scaled_by_the_reference_timed_alongside_them():
    # The reference workload ran 1.5x as long: a model 1.5x slower is the host, not the model.
    loaded = compare_latency(1.0, 1.5, old_index=0.74, new_index=1.11).baseline
    assert loaded.regressions == [] and loaded.improvements == []
    # The same numbers on an unchanged host are a regression, and a 2x slower model on the busier host still is.
    assert compare_latency(1.0, 1.5).baseline.regressions
    assert compare_latency(1.0, 3.0, old_index=0.74, new_index=1.11).baseline.regressions
    # Another check's reference does not scale this one, and sizes are never scaled.
    old = baseline_report({"q.size_bytes": {"value": 100.0, "unit": "B"}, "r.host_index_ms": latency(1.0)})
    state = state_with({"q.size_bytes": {"value": 120.0, "unit": "B"}, "r.host_index_ms": latency(2.0)})
    apply_gates(state, {}, ("old.json", old))
    assert [r["metric"] for r in state.baseline.regressions] == ["q.size_bytes"]


def test_a_slowdown_whose_noise_a_run_did_not_measure_is_not_confirmed_however_large():
    """No reference timed alongside it in a run, or a run without the serving processes' ratios: the host's drift or the
    noise between processes is unmeasured, so even a 10x slowdown is listed, with why, and never fails the build."""
    for kwargs, why in (({"old_index": None, "new_index": None}, NO_REFERENCE), ({"old_index": None}, NO_REFERENCE),
                        ({"old_run": False}, NO_PROCESSES), ({"old_run": False, "new_run": False}, NO_PROCESSES)):
        state = compare_latency(1.0, 10.0, **kwargs)
        assert state.baseline.regressions == [] and exit_code(state, "never") == 0, kwargs
        assert [(r["metric"], r["why"]) for r in state.baseline.unconfirmed] == [("r.latency_ms", why)], kwargs
        assert f"×1.1: {why}" in render_markdown(state)
        assert compare_latency(10.0, 1.0, **kwargs).baseline.improvements == []  # nor an improvement on unmeasured noise


def test_metrics_of_different_subjects_are_not_comparable_never_regressions():
    changed = compare_latency(1.0, 3.0, old_subject="float16", new_subject="dynamic-range-int8").baseline
    assert changed.regressions == [] and changed.improvements == []
    assert [(r["old"]["subject"], r["new"]["subject"]) for r in changed.not_comparable] == [("float16", "dynamic-range-int8")]
    same = compare_latency(1.0, 3.0, old_subject="float16", new_subject="float16").baseline
    assert same.not_comparable == [] and same.regressions
    old = baseline_report({"q.recommended_size_bytes": {"value": 29_000.0, "unit": "bytes", "subject": "dynamic-range-int8"}})
    state = state_with({"q.recommended_size_bytes": {"value": 48_000.0, "unit": "bytes", "subject": "float16"}})
    apply_gates(state, {}, ("old.json", old))
    assert state.baseline.regressions == [] and exit_code(state, "never") == 0
    assert "| not comparable | `q.recommended_size_bytes` | 2.9e+04 bytes of dynamic-range-int8 | 4.8e+04 bytes of float16 |" in render_markdown(state)


def test_no_growth_at_its_resolution_is_not_a_regression_but_a_real_leak_is():
    # The memory check reports "no growth" as 0 up to the phase's resolution (checks/memory/growth.py).
    old = baseline_report({"m.growth_bytes_per_1000_calls": {"value": 0.0, "low": 0.0, "high": 1.1e6, "unit": "bytes"}})
    noise = state_with({"m.growth_bytes_per_1000_calls": {"value": 1.2e6, "low": -2e5, "high": 1.9e6, "unit": "bytes"}})
    apply_gates(noise, {}, ("old.json", old))
    assert noise.baseline.regressions == []
    leak = state_with({"m.growth_bytes_per_1000_calls": {"value": 3.3e6, "low": 3.2e6, "high": 3.4e6, "unit": "bytes"}})
    apply_gates(leak, {}, ("old.json", old))
    assert [r["metric"] for r in leak.baseline.regressions] == ["m.growth_bytes_per_1000_calls"]


def test_baseline_from_another_host_warns():
    other = dict(ENVIRONMENT, cpu="Other CPU", tensorflow="2.20.0")
    comparison = compare_with_baseline("old.json", baseline_report({}, environment=other), {}, [], ENVIRONMENT)
    assert len(comparison.warnings) == 2 and "Other CPU" in comparison.warnings[0]


def test_baseline_of_another_budget_warns():
    """Fidelity is measured on a budget's number of samples, timings over its windows: a quick run against a standard report
    is told so (the gates are applied all the same)."""
    old = dict(baseline_report({}), budget="standard")
    assert "--budget standard, this run at quick" in compare_with_baseline("old.json", old, {}, [], ENVIRONMENT, budget="quick").warnings[0]
    assert compare_with_baseline("old.json", old, {}, [], ENVIRONMENT, budget="standard").warnings == []
    state = state_with({})  # a quick run: apply_gates passes its budget
    apply_gates(state, {}, ("old.json", old))
    assert len(state.baseline.warnings) == 1


def test_a_renamed_metric_is_named_not_silently_dropped(tmp_path):
    """memory.peak_rss_mb became memory.peak_memory_mb (anonymous memory, lower than RSS): its old numbers do not carry over."""
    old = baseline_report({"memory.peak_rss_mb": {"value": 480.0, "unit": "MB"}})
    new = {"memory.peak_memory_mb": {"value": 210.0, "unit": "MB"}}
    comparison = compare_with_baseline("old.json", old, new, [], ENVIRONMENT)
    assert comparison.regressions == comparison.improvements == []
    assert comparison.warnings == [
        "baseline metric memory.peak_rss_mb is now memory.peak_memory_mb (anonymous memory, without TensorFlow's "
        "mapped libraries: lower than RSS): not compared"
    ]
    path = tmp_path / "ci.toml"
    path.write_text('[budgets]\n"memory.peak_rss_mb" = 900\n')
    with pytest.raises(ConfigError, match="is now memory.peak_memory_mb .*; set that budget again"):
        load_config(str(path))


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
        '[project]\nname = "x"\n[tool.tfaudit]\nbudget = "quick"\nchecks = ["memory"]\n[tool.tfaudit.budgets]\n"memory.peak_memory_mb" = 900\n'
    )
    config = load_config(directory=str(tmp_path))
    assert config.options == {"budget": "quick", "checks": ["memory"]} and config.budgets == {"memory.peak_memory_mb": 900.0}
    plain = tmp_path / "ci.toml"
    plain.write_text('fail_on = "high"\nisolate = "fresh"\n[budgets]\n"retracing.serving_latency_ms" = 2.5\n')
    assert load_config(str(plain)).options == {"fail_on": "high", "isolate": "fresh"}
    assert load_config(directory=str(tmp_path / "nowhere")).options == {}


@pytest.mark.parametrize(
    "content, message",
    [
        ("budget = ", "not valid TOML"),
        ('colour = "red"', "unknown key 'colour'"),
        ('budget = "huge"', "choose one of"),
        ('isolate = "thread"', "choose one of fork, fresh"),
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


def ratio_state(value, low, high, outcome=None):
    decision = {"decision": {"outcome": outcome, "band": 0.1}} if outcome else {}
    return state_with({"retracing.latency_vs_baseline_model": {"value": value, "low": low, "high": high, "unit": "× baseline model", "subject": "/models/old", **decision}})


def test_baseline_model_ratio_gates_without_a_baseline_report():
    slower = ratio_state(1.9, 1.8, 2.0, "slower")
    apply_gates(slower, {}, None)
    assert slower.baseline.path == "/models/old" and exit_code(slower, "never") == 1
    assert "| **regressed** | `retracing.latency_vs_baseline_model` | 1 × baseline model | 1.9 [1.8–2] × baseline model |" in render_markdown(slower)
    same = ratio_state(1.02, 0.99, 1.05, "same")
    apply_gates(same, {}, None)
    assert same.baseline.regressions == [] and exit_code(same, "never") == 0
    undecided = ratio_state(1.12, 1.03, 1.2, "undecided")  # the cap came first: no claim either way
    apply_gates(undecided, {}, None)
    assert undecided.baseline.regressions == [] and undecided.baseline.improvements == []
    unjudged = ratio_state(1.9, 1.8, 2.0)  # a report from before the rounds: its ratio is shown, it gates nothing
    apply_gates(unjudged, {}, None)
    assert unjudged.baseline.regressions == []
    faster = ratio_state(0.5, 0.45, 0.55, "faster")
    apply_gates(faster, {}, None)
    assert [r["metric"] for r in faster.baseline.improvements] == ["retracing.latency_vs_baseline_model"]


def test_baseline_model_ratio_is_never_compared_across_reports():
    old = baseline_report({"retracing.latency_vs_baseline_model": {"value": 1.0, "low": 0.99, "high": 1.01, "unit": "× baseline model", "subject": "/models/old"}})
    state = ratio_state(1.06, 1.04, 1.08)
    apply_gates(state, {}, ("old.json", old))
    assert state.baseline.path == "old.json" and state.baseline.regressions == []


def test_one_measurement_is_said_once_when_latency_and_throughput_share_the_batch():
    metrics = {"r.latency_ms": latency(1.0), "r.host_index_ms": latency(0.74), **processes(), **processes(kind="serving_batch")}
    state = state_with(metrics)
    apply_gates(state, {}, ("old.json", baseline_report(metrics)))
    text = render_markdown(state)
    assert "latency and throughput: ×1 per unit of reference" in text and text.count("per unit of reference, at least") == 1
