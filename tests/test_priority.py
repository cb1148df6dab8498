"""Ranking: leaks are priced by the memory they hold on a server, so they outrank micro-savings (no TensorFlow)."""
import pytest

from tfaudit.checks.memory.growth import KIB, MIB, SERVING_HORIZON_HOURS, horizon_bytes
from tfaudit.api import Effort, Finding, Fix, Measure, Risk
from tfaudit.report.priority import rank
from tfaudit.report.profiles import Basis, Profile

# 2 CPU ms a request, a call keeping one core busy, a 4-core host, 10 ms of LiteRT
BASIS = Basis(cpu_ms_per_row=Measure(2.0), cpu_ms_per_call=Measure(2.0), wall_ms_per_call=2.0, cores=4, litert_ms=10.0)


def finding(fid, severity="low", hours=0.5, confidence=1.0, risk="none", applies_if="", **savings):
    """An opportunity when it prices a saving (``confidence`` its support), else a fact."""
    check = fid.split("/")[0]
    return Finding(
        id=fid, check=check, severity=severity, title=fid, summary="", evidence={}, effort=Effort("hours", hours, ""),
        fix=Fix(""), savings=savings, risk=Risk(risk), applies_if=applies_if,
        **({"kind": "opportunity", "confidence": confidence, "basis": "a test's"} if savings else {}),
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
    # At a modest 200 calls/s, 3.3 KiB per call exhausts an 8 GiB host within the week: held by the replica, it costs more
    # than a retracing wrapper's 144 ms per stream of 60 requests frees at 100 req/s.
    leaking = leak(3.3 * KIB, 200, 8 * 1024 * MIB)
    wrapper = finding("retracing/wrapper-retraces", confidence=0.6, latency_ms=Measure(144.0, 102.0, 160.0))
    wrapper = Finding(**{**wrapper.__dict__, "per": "stream of 60 requests"})
    ranked = rank([wrapper, leaking], Profile(), BASIS)
    assert [f.id for f in ranked] == ["memory/growth-fixed-shape", "retracing/wrapper-retraces"]
    assert ranked[0].priority > ranked[1].priority


def test_a_leak_is_priced_by_its_week_at_the_measured_rate():
    # 1 KiB per call at 0.1 calls/s is 59 MiB a week: a 70 % latency win at 30 min outranks it; at 10 calls/s (5.9 GiB) not.
    latency = finding("serving/threads", latency_pct=Measure(70.0, 65.0, 75.0), latency_ms=Measure(3.0, 2.8, 3.2))
    slow = leak(1 * KIB, 0.1, 64 * 1024 * MIB)
    assert slow.savings["memory_bytes"].value == pytest.approx(1024 * 0.1 * 3600 * SERVING_HORIZON_HOURS)
    assert [f.id for f in rank([slow, latency], Profile(), BASIS)][0] == "serving/threads"
    assert [f.id for f in rank([leak(1 * KIB, 10.0, 64 * 1024 * MIB), latency], Profile(), BASIS)][0] == "memory/growth-fixed-shape"


def test_what_applies_only_under_a_condition_ranks_after_what_applies_as_it_is():
    # LiteRT's num_threads matters only to whoever serves the flatbuffer: it ranked first on MobileNetV2 by its support alone.
    litert = finding("serving/litert-threads", latency_pct=Measure(60.0, 55.0, 65.0), applies_if="you serve the TFLite flatbuffer")
    litert = Finding(**{**litert.__dict__, "runtime": "litert"})
    size = Finding(**{**finding("quantization/float16", hours=1.5, size_bytes=Measure(4e6)).__dict__, "runtime": "litert"})
    fact = finding("safety/python-ops", severity="high", hours=2.0)
    ranked = rank([litert, size, fact], Profile("edge"), BASIS)
    assert ranked[0].priority < ranked[1].priority  # worth more, but conditional
    assert [f.id for f in ranked] == ["quantization/float16", "serving/litert-threads", "safety/python-ops"]


def test_only_opportunities_carry_a_confidence_and_each_states_its_basis():
    with pytest.raises(ValueError, match="only an opportunity"):
        Finding(id="safety/x", check="safety", severity="high", title="", summary="", evidence={}, effort=Effort("hours", 1, ""),
                fix=Fix(""), confidence=0.9)
    with pytest.raises(ValueError, match="needs the support"):
        Finding(id="q/x", check="q", severity="low", title="", summary="", evidence={}, effort=Effort("hours", 1, ""),
                fix=Fix(""), kind="opportunity", savings={"size_pct": Measure(10.0)})
    with pytest.raises(ValueError, match="applies_if"):
        Finding(id="w/x", check="w", severity="low", title="", summary="", evidence={}, effort=Effort("hours", 1, ""),
                fix=Fix(""), kind="advice")
    # A report from before: its hand-set number is kept and said to be one; a fact loses it.
    old = finding("quantization/float16", size_pct=Measure(50.0)).to_dict()
    for key in ("kind", "basis", "applies_if", "fix_writer"):
        old.pop(key)
    assert Finding.from_dict({**old, "confidence": 0.75}).basis.startswith("set by hand")
    assert Finding.from_dict({**old, "savings": {}, "confidence": 0.9}).confidence is None


def test_support_is_computed_from_the_evidence_with_its_method_named():
    from tfaudit.api import Support

    assert Support.exact(120.0, 0.0, "bytes").value == 1.0 and Support.exact(0.0, 1.0, "bytes").value == 0.0
    centred = Support.interval(Measure(10.0, 8.04, 11.96), 10.0, "bootstrap")  # the minimum at the estimate: even odds
    assert centred.value == pytest.approx(0.5) and "bootstrap" in centred.basis
    assert Support.interval(Measure(20.0, 18.04, 21.96), 10.0, "bootstrap").value > 0.9999
    assert Support.interval(Measure(9.0, 7.04, 10.96), 10.0, "bootstrap").value < 0.5
    four = Support.ordered([900, 950, 1000, 980], [30, 31, 29, 33], "first requests")
    assert four.value == pytest.approx(1 - 1 / 70, abs=1e-4) and "1/70" in four.basis


def test_no_check_sets_a_confidence_by_hand():
    """Every confidence comes from a Support computed from the evidence; a literal number in a judge is a defect."""
    import pathlib
    import re

    root = pathlib.Path(__file__).resolve().parent.parent
    sources = [*root.joinpath("checks").rglob("*.py"), *root.joinpath("tfaudit", "watch").rglob("*.py")]
    set_by_hand = [f"{path.relative_to(root)}:{n}" for path in sources for n, line in enumerate(path.read_text().splitlines(), 1)
                   if re.search(r"\bconfidence=(0?\.\d|1\.0|round\()", line) or re.search(r"\bSupport\(\d", line)
                   or re.search(r"\"confidence\"(:|,) *\d?\.\d", line)]
    assert len(sources) > 30 and set_by_hand == []
