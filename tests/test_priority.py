"""Ranking: leaks are priced by what they cost a server, so they outrank micro-savings (no TensorFlow)."""
import pytest

from tfaudit.checks.memory.growth import KIB, MIB, SERVING_HORIZON_HOURS, horizon_bytes
from tfaudit.api import Effort, Finding, Fix, Measure, Risk
from tfaudit.report.priority import priority, rank


def finding(fid, severity="low", hours=0.5, confidence=1.0, risk="none", **savings):
    check = fid.split("/")[0]
    return Finding(
        id=fid, check=check, severity=severity, title=fid, summary="", evidence={}, effort=Effort("hours", hours, ""),
        fix=Fix(""), savings=savings, confidence=confidence, risk=Risk(risk),
    )


def leak(per_call_bytes, calls_per_second, available):
    """memory/growth-fixed-shape as the memory check prices it (confidence 0.9, 2 h, low risk)."""
    saving = Measure(*(horizon_bytes(b, calls_per_second, available) for b in (per_call_bytes, 0.9 * per_call_bytes, 1.1 * per_call_bytes)))
    return finding("memory/growth-fixed-shape", "medium", hours=2.0, confidence=0.9, risk="low", memory_bytes=saving)


def test_horizon_is_a_week_at_the_measured_rate_up_to_the_memory_available():
    assert horizon_bytes(1000, 10, None) == 1000 * 10 * 3600 * SERVING_HORIZON_HOURS
    assert horizon_bytes(1000, 10, 2**30) == 2**30  # 6 GB a week, but only 1 GiB to take
    assert horizon_bytes(-50, 10, 2**30) == 0


def test_a_leak_outranks_the_micro_savings_it_used_to_tie_with():
    # Measured before: 3.3 KiB per call priced as growth per 1,000 calls ranked 1.22, level with a
    # wrapper tip at 1.2. At a modest 200 calls/s it takes 3.8 GiB a week of an 8 GiB host.
    leaking = leak(3.3 * KIB, 200, 8 * 1024 * MIB)
    wrapper = finding("retracing/wrapper-retraces", confidence=0.6, latency_ms=Measure(144.0, 102.0, 160.0))
    assert priority(wrapper) == pytest.approx(1.2)
    assert priority(leaking) > 100 * priority(wrapper)
    assert [f.id for f in rank([wrapper, leaking])][0] == "memory/growth-fixed-shape"


@pytest.mark.parametrize("days_to_exhaust", [0.01, 1.0, 6.9])
@pytest.mark.parametrize("available_gib", [1, 16])
def test_a_leak_that_exhausts_memory_within_the_week_ranks_first(days_to_exhaust, available_gib):
    available = available_gib * 1024 * MIB
    rate = 50.0
    per_call = available / (days_to_exhaust * 86400 * rate)
    # The best any other finding can score: all latency and all size saved, certain, no risk, 30 min.
    best = finding("quantization/best", latency_pct=Measure(100.0), latency_ms=Measure(5.0), size_pct=Measure(100.0))
    floor = finding("safety/critical", severity="critical")
    ranked = rank([best, floor, leak(per_call, rate, available)])
    assert ranked[0].id == "memory/growth-fixed-shape", [(f.id, f.priority) for f in ranked]


def test_a_leak_is_priced_by_its_week_at_the_measured_rate():
    # 1 KiB per call (the smallest growth the check reports) at 0.1 calls/s is 59 MiB a week:
    # a 70 % latency win at 30 min outranks it; the same leak at 10 calls/s (5.9 GiB a week) does not.
    latency = finding("quantization/dynamic-range-int8", latency_pct=Measure(70.0, 65.0, 75.0), latency_ms=Measure(3.0, 2.8, 3.2))
    slow = leak(1 * KIB, 0.1, 64 * 1024 * MIB)
    assert slow.savings["memory_bytes"].value == pytest.approx(1024 * 0.1 * 3600 * SERVING_HORIZON_HOURS)
    assert priority(slow) < priority(latency)
    assert priority(leak(1 * KIB, 10.0, 64 * 1024 * MIB)) > priority(latency)
