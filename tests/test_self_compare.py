"""Baselines that do not cry wolf, end to end (slow): benchmarks/ holds the full runs.

Audits a small MLP three times, each against the run before it with `--baseline`, while another
process keeps one core busy: nothing changed, so neither compare may exit 1. After each, the same
MLP computing its body four times (measured ~2× slower here) must exit 1 with a latency regression.
"""
import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks"))
import self_compare  # noqa: E402


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_self_compares_pass_and_a_2x_slowdown_is_caught(tmp_path):
    result = self_compare.run(["mlp"], runs=2, out=str(tmp_path), hog_mode="always", log=lambda *_: None)
    summary = result["summary"]["mlp"]
    assert min(summary["measured_slowdown_x3"]) > 1.6  # the twin really is about twice as slow
    failed = [c for c in result["comparisons"] if c["kind"] == "self" and c["exit_code"] != 0]
    assert summary["false_alarms"] == 0 and not failed, failed
    assert summary["detected"] == summary["slowdowns"] == 2, result["comparisons"]
