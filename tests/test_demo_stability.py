"""Repeated audits of the demo give the same verdicts (slow; benchmarks/demo_stability.py)."""
import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks"))
import demo_stability  # noqa: E402


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_three_demo_audits_give_the_same_findings_severities_and_top_3(tmp_path):
    verdicts = demo_stability.run(3, str(tmp_path))  # benchmarks/demo_stability.py --runs N for more
    assert len(verdicts[0]["top3"]) == 3 and verdicts[0]["errored"] == []
    for verdict in verdicts[1:]:
        assert demo_stability.differences(verdicts[0], verdict) == [], [v["priorities"] for v in verdicts]
