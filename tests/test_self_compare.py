"""Baselines that do not cry wolf, end to end (slow): benchmarks/ holds the full runs.

Audits a small MLP twice, the second against the first with `--baseline`, while another process
keeps one core busy: nothing changed, so the compare may not exit 1. Then the same MLP computing its body
six times (~2× slower on a 2-core host, where four times was 1.54-1.63×) must exit 1 with a latency
regression (`benchmarks/self_compare.py --runs 8` for rates).
"""
import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks"))
import self_compare  # noqa: E402


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_self_compares_pass_and_a_2x_slowdown_is_caught(tmp_path):
    result = self_compare.run(["mlp"], runs=1, out=str(tmp_path), hog_mode="always", log=lambda *_: None)  # the benchmark runs 8
    summary = result["summary"]["mlp"]
    assert min(summary["measured_slowdown_x3"]) > 1.6  # the twin really is about twice as slow
    failed = [c for c in result["comparisons"] if c["kind"] == "self" and c["exit_code"] != 0]
    assert summary["false_alarms"] == 0 and not failed, failed
    assert summary["detected"] == summary["slowdowns"] == 1, result["comparisons"]


@pytest.mark.slow
def test_baseline_model_times_old_and_new_alternately(tmp_path):
    import checkrun
    from tfaudit.api import Metric
    from tfaudit.checks.retracing import BASELINE_MODEL_METRIC, BaselineModelNotCompared, RetracingCheck
    from tfaudit.report.audit import AuditState
    from tfaudit.events import MetricEmitted
    from tfaudit.report.gates import apply_gates

    models = self_compare.build_models(str(tmp_path), ["mlp"])["mlp"]

    def gated(model, old):
        outcome = checkrun.run_in_process(RetracingCheck(), model, "quick", options={"baseline_model": old})
        ratio = outcome.metrics[BASELINE_MODEL_METRIC]
        assert ratio.subject == old and ratio.low <= ratio.value <= ratio.high
        state = AuditState(model_path=model, budget="quick")
        state.apply(MetricEmitted("retracing", ratio.name, ratio.value, ratio.unit, ratio.low, ratio.high, ratio.better, ratio.subject, ratio.decision))
        apply_gates(state, {}, None)
        return ratio, state.baseline

    same, comparison = gated(models["base"], models["base"])
    assert same.decision["outcome"] in ("same", "undecided") and comparison.regressions == []
    slower, comparison = gated(models["slow"], models["base"])
    assert slower.value > 1.6 and slower.decision["outcome"] == "slower"
    assert [r["metric"] for r in comparison.regressions] == ["retracing.latency_vs_baseline_model"]
    reported = []
    with pytest.raises(BaselineModelNotCompared, match="not compared"):  # a gate that cannot measure fails loudly …
        reported.extend(RetracingCheck().run(checkrun.context(models["base"], "quick", {"baseline_model": str(tmp_path / "missing")})))
    metrics = {item.name for item in reported if isinstance(item, Metric)}
    assert BASELINE_MODEL_METRIC not in metrics and "serving_latency_ms" in metrics  # … after reporting the rest
