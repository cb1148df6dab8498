"""Deployment profiles: each saving in the profile's currency, and the ranking in it (pure; no TensorFlow)."""
import pytest

from tfaudit.api import Effort, Finding, Fix, Measure, Risk
from tfaudit.report.priority import rank
from tfaudit.report.profiles import HOURS_PER_MONTH, Basis, Prices, Profile, assumptions, requests_per, worth

# A call of 2 ms wall time keeping 1.5 cores busy (3 CPU ms), 3 CPU ms a row at the serving batch, on a 4-core host.
BASIS = Basis(cpu_ms_per_row=Measure(3.0, 2.8, 3.2), cpu_ms_per_call=Measure(3.0, 2.9, 3.1), wall_ms_per_call=2.0, cores=4, litert_ms=4.0)
SERVER = Profile("server", 100.0)


def finding(fid, runtime="tensorflow", per="request", hours=1.0, risk="none", severity="low", confidence=1.0, **savings):
    return Finding(id=fid, check=fid.split("/")[0], severity=severity, title=fid, summary="", evidence={}, effort=Effort("hours", hours, ""),
                   fix=Fix(""), savings=savings, risk=Risk(risk), runtime=runtime, per=per,
                   **({"kind": "opportunity", "confidence": confidence, "basis": "a test's"} if savings else {}))


def test_a_latency_share_frees_that_share_of_the_cores_the_traffic_keeps_busy():
    w = worth(finding("serving/threads", latency_pct=Measure(30.0, 20.0, 40.0)), SERVER, BASIS)
    cores = 100 * 3.0 / 1000 * 0.30  # 100 req/s × 3 CPU ms × 30 %
    assert w.value == pytest.approx(cores * Prices().core_hour * HOURS_PER_MONTH)
    assert w.low == pytest.approx(100 * 2.8 / 1000 * 0.20 * Prices().core_hour * HOURS_PER_MONTH)
    assert w.high == pytest.approx(100 * 3.2 / 1000 * 0.40 * Prices().core_hour * HOURS_PER_MONTH)
    assert "frees 0.09 cores" in w.physical and "100 req/s" in w.physical and w.unit == "$/month"
    assert worth(finding("serving/threads", latency_pct=Measure(30.0)), Profile("server", 5000.0), BASIS).value == pytest.approx(50 * w.value)


def test_saved_wall_time_counts_the_cores_a_call_keeps_busy_per_request():
    one = worth(finding("retracing/predict-in-loop", latency_ms=Measure(2.0)), SERVER, BASIS)
    eight = worth(finding("retracing/fixed-batch-dim", per="8 requests", latency_ms=Measure(2.0)), SERVER, BASIS)
    assert one.value == pytest.approx(100 * 2.0 * 1.5 / 1000 * Prices().core_hour * HOURS_PER_MONTH)
    assert eight.value == pytest.approx(one.value / 8)
    assert requests_per("stream of 60 requests") == 60 and requests_per("replica start") is None


def test_without_the_cpu_time_a_latency_saving_is_not_priced_and_says_why():
    w = worth(finding("serving/threads", latency_pct=Measure(30.0)), SERVER, Basis(cores=4))
    assert not w.priced and "CPU time" in w.why_not
    assert "not measured" in assumptions(SERVER, Basis(cores=4))[0]


def test_bytes_are_memory_held_by_each_replica_the_traffic_needs():
    size = finding("quantization/float16", runtime="litert", size_bytes=Measure(500e6))
    assert worth(size, SERVER, BASIS).value == pytest.approx(0.5 * Prices().gb_hour * HOURS_PER_MONTH)
    busy = Profile("server", 5000.0)  # 5,000 × 3 ms = 15 cores: 4 replicas of 4 cores
    assert worth(size, busy, BASIS).value == pytest.approx(4 * 0.5 * Prices().gb_hour * HOURS_PER_MONTH)
    assert "× 4" in worth(size, busy, BASIS).physical


def test_a_cold_start_is_paid_per_replica_start():
    cold = finding("serving/cold-start", per="replica start", latency_ms=Measure(900.0, 800.0, 950.0))
    w = worth(cold, SERVER, BASIS)
    assert w.value == pytest.approx(0.9 * 24 * 30.4 * 4 / 3600 * Prices().core_hour)
    assert "per replica start" in w.physical


def test_edge_prices_the_flatbuffer_and_nothing_of_tensorflow_serving():
    edge = Profile("edge")
    size = finding("quantization/float16", runtime="litert", size_bytes=Measure(2e6), latency_pct=Measure(50.0, 40.0, 60.0))
    w = worth(size, edge, BASIS)
    assert w.value == pytest.approx(2.0 + 0.5 * 4.0) and w.unit == "edge points"  # 2 MB + half of 4 ms, 1 point each
    assert "download" in w.physical and "proxy" in w.physical
    threads = worth(finding("serving/threads", latency_pct=Measure(30.0)), edge, BASIS)
    assert not threads.priced and "TensorFlow serving" in threads.why_not


def test_batch_prices_cpu_hours_per_billion_rows_and_not_bytes():
    batch = Profile("batch")
    w = worth(finding("serving/threads", latency_pct=Measure(50.0)), batch, BASIS)
    assert w.value == pytest.approx(1.5 / 1000 * 1e9 / 3600)
    assert not worth(finding("quantization/float16", runtime="litert", size_bytes=Measure(2e6)), batch, BASIS).priced


def test_the_ranking_follows_the_profile():
    threads = finding("serving/threads", latency_pct=Measure(30.0, 25.0, 35.0))
    smaller = finding("quantization/float16", runtime="litert", size_bytes=Measure(8e6), latency_pct=Measure(10.0, 5.0, 15.0))
    hazard = finding("safety/python-ops", severity="high")
    server = rank([smaller, hazard, threads], SERVER, BASIS)
    assert [f.id for f in server] == ["serving/threads", "quantization/float16", "safety/python-ops"]
    assert server[-1].priority == 0 and server[-1].worth == {}
    assert [f.id for f in rank([threads, hazard, smaller], Profile("edge"), BASIS)][0] == "quantization/float16"


def test_priority_is_the_low_end_of_the_worth_times_confidence_over_effort_and_risk():
    f = finding("serving/threads", hours=2.0, risk="medium", confidence=0.5, latency_pct=Measure(30.0, 20.0, 40.0))
    ranked = rank([f], SERVER, BASIS)[0]
    assert ranked.priority == pytest.approx(ranked.worth["low"] * 0.5 / 2.0 * 0.7, rel=1e-4)


def test_conditional_findings_rank_after_those_that_apply_as_they_are():
    litert = Finding(**{**finding("serving/litert-threads", runtime="litert", latency_pct=Measure(60.0)).__dict__,
                        "applies_if": "you serve the flatbuffer"})
    size = finding("quantization/float16", runtime="litert", size_bytes=Measure(1e6))
    assert [f.id for f in rank([litert, size], Profile("edge"), BASIS)] == ["quantization/float16", "serving/litert-threads"]


def test_a_profile_round_trips_through_the_report():
    profile = Profile("server", 250.0, Prices(core_hour=0.05, currency="€"))
    again = Profile.from_dict(profile.to_dict())
    assert again == profile and again.unit == "€/month"
    with pytest.raises(ValueError):
        Profile("phone")


def test_the_profile_its_traffic_and_prices_come_from_the_configuration(tmp_path):
    from tfaudit.config import ConfigError, load_config

    path = tmp_path / "tfaudit.toml"
    path.write_text('profile = "edge"\ntraffic = 500\n[prices]\ncore_hour = 0.05\ncurrency = "€"\n[edge_weights]\ndownload_mb = 2\n')
    config = load_config(str(path))
    assert config.options == {"profile": "edge", "traffic": 500} and config.prices == {"core_hour": 0.05, "currency": "€"}
    assert config.edge_weights == {"download_mb": 2.0}
    for bad, message in (('profile = "phone"', "choose one of"), ("traffic = 0", "positive"), ("[prices]\ncore = 1", "unknown key 'core'"),
                         ("[prices]\ngb_hour = -1", "at least 0"), ("prices = 3", "must be a table")):
        path.write_text(bad + "\n")
        with pytest.raises(ConfigError, match=message):
            load_config(str(path))


def test_a_traffic_that_is_not_positive_is_a_usage_error(tmp_path, capsys):
    from tfaudit.cli import main

    assert main([str(tmp_path), "--traffic", "0"]) == 2
    assert capsys.readouterr().err.strip() == "tfaudit: error: --traffic must be a positive number of requests a second"


def test_a_comparison_the_budget_left_undecided_is_listed_apart_and_never_ranked_or_gated():
    from checks.serving.judge import undecided_settings
    from tfaudit.events import CheckFinished, CheckStarted, FindingEmitted
    from tfaudit.exit_codes import EXIT_OK, exit_code
    from tfaudit.report.audit import AuditState
    from tfaudit.report.markdown import render_markdown

    noisy = {"a_ms": [1.0] * 6, "b_ms": [0.6, 1.3, 0.7, 1.2, 0.65, 1.25], "quads": 0}  # 0.9× [0.59–1.37]: 6 rounds decide nothing
    same = {"a_ms": [1.0, 1.01, 0.99, 1.0, 1.0, 1.0], "b_ms": [1.0, 1.0, 1.01, 0.99, 1.0, 1.0], "quads": 0}
    rows = [{"setting": {"intra": intra, "inter": 1, "precision": "float32", "onednn": None}, "batch": 1, "confidence": 0.95, "rounds": rounds}
            for intra, rounds in ((1, noisy), (2, same))]
    from tfaudit.api import decide
    from checks.serving import catalogue as serving_text

    [found] = undecided_settings(rows, [decide(row["rounds"], serving_text.SETTING_MINIMUM, 0.95) for row in rows], [])
    assert found.id == "serving/threads" and found.kind == "undecided" and found.severity == "info" and not found.savings
    assert "undecided against the ±10% band" in found.summary and found.confidence is None
    with pytest.raises(ValueError, match="claims nothing"):
        Finding(**{**found.__dict__, "severity": "low"})
    state = AuditState(model_path="/m", budget="quick")
    for event in (CheckStarted("serving", "Serving"), FindingEmitted("serving", found.to_dict()), CheckFinished("serving", "passed", 1.0)):
        state.apply(event)
    sections = state.sections()
    assert sections["undecided"] == ["serving/threads"] and sections["opportunities"] == sections["notes"] == []
    assert sections["passed"][0]["check"] == "serving" and exit_code(state, "low") == EXIT_OK
    assert "## Undecided" in render_markdown(state) and "undecided against" in render_markdown(state)


def test_litert_threads_left_undecided_are_listed_not_claimed():
    from checks.serving.knobs import litert_findings

    noisy = {"a_ms": [1.0] * 6, "b_ms": [0.6, 1.3, 0.7, 1.2, 0.65, 1.25], "quads": 0}
    litert = {"threads": [None, 2], "confidence": 0.95,
              "compared": [{"rounds": noisy, "default_ms": noisy["a_ms"], "ms": noisy["b_ms"]}]}
    [found] = litert_findings(litert, "quick", {})
    assert found.id == "serving/litert-threads" and found.kind == "undecided" and "num_threads=2" in found.title


def test_an_input_pipeline_is_priced_in_its_own_time_per_element():
    parallel = finding("data/parallel-map", per="element", latency_ms=Measure(20.0, 18.0, 22.0), latency_pct=Measure(50.0, 45.0, 55.0))
    basis = Basis(elements_per_second=25.0)
    share = worth(parallel, Profile(subject="pipeline"), basis)
    assert (share.value, share.low, share.high) == (50.0, 45.0, 55.0) and share.unit == "% of the pipeline's time"
    assert "20 ms [18–22] less per element: 25 → 50 elements/s" in share.physical
    batch = worth(parallel, Profile("batch", subject="pipeline"), basis)
    assert batch.value == pytest.approx(20.0 / 1000 * 1e9 / 3600) and batch.unit == "h per 1e9 elements"
    model_saving = worth(finding("serving/threads", latency_pct=Measure(30.0)), Profile(subject="pipeline"), basis)
    assert not model_saving.priced and "per element" in model_saving.why_not
    assert Profile.from_dict(Profile("batch", subject="pipeline").to_dict()).subject == "pipeline"
