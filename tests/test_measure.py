import numpy as np
import pytest

from tfaudit.engine import measure

from tfaudit.engine.measure import MIN_REPEATS, bootstrap_median, compare, time_call, Timing


def test_time_call_warms_up_then_times_the_asked_repeats():
    calls = []
    timing = time_call(lambda: calls.append(1), warmup=3, repeats=12, max_seconds=60)
    assert len(calls) == 15 and timing.n == 12 and timing.warmup == 3
    assert all(ms >= 0 for ms in timing.samples_ms)


def test_time_call_stops_at_the_deadline_but_keeps_a_minimum():
    import time

    timing = time_call(lambda: time.sleep(0.02), warmup=0, repeats=1000, max_seconds=0.0)
    assert timing.n == MIN_REPEATS
    assert 15 < timing.median_ms < 200


def test_median_interval_brackets_the_median():
    rng = np.random.default_rng(1)
    values = rng.normal(10.0, 1.0, 200)
    m = bootstrap_median(values)
    assert m.low < m.value < m.high
    assert m.low < 10.0 < m.high  # the true median, with 95 % coverage on this seed
    assert m.high - m.low < 0.6


def test_compare_claims_a_real_speedup_and_not_noise():
    rng = np.random.default_rng(2)
    slow = Timing(tuple(rng.normal(20.0, 1.0, 60)), warmup=0)
    fast = Timing(tuple(rng.normal(10.0, 1.0, 60)), warmup=0)
    same = Timing(tuple(rng.normal(20.0, 1.0, 60)), warmup=0)
    real = compare(slow, fast)
    assert real.significant
    assert 9 < real.saved_ms.value < 11 and 45 < real.saved_pct.value < 55
    assert real.speedup.low < 2.0 < real.speedup.high or abs(real.speedup.value - 2.0) < 0.15
    noise = compare(slow, same)
    assert not noise.significant
    assert noise.saved_ms.low < 0 < noise.saved_ms.high


def test_timing_summary_is_json_ready():
    summary = Timing((1.0, 2.0, 3.0, 4.0, 100.0), warmup=1).summary()
    assert summary["median_ms"] == 3.0 and summary["n"] == 5 and summary["mad_ms"] == 1.0
    assert summary["p90_ms"] > summary["p10_ms"]


@pytest.mark.parametrize("n", [5, 8, 31, 400])
@pytest.mark.parametrize("q", [50, 99])
def test_percentiles_of_resamples_follow_the_distribution_resampling_gives(n, q):
    """The order-statistic sampler draws what building BOOTSTRAP_ROUNDS resamples would, without building them."""
    values = np.random.default_rng(n).lognormal(0, 0.5, n)
    statistic = measure.percentile(q)
    built = np.percentile(values[np.random.default_rng(1).integers(0, n, size=(20000, n))], q, axis=1)
    drawn = np.concatenate([measure._resample(values, np.random.default_rng(seed), statistic) for seed in range(10)])
    spread = np.percentile(built, 97.5) - np.percentile(built, 2.5)
    for level in (2.5, 25, 50, 75, 97.5):
        assert abs(np.percentile(drawn, level) - np.percentile(built, level)) <= 0.05 * spread + 1e-12
    assert measure._resample(values, np.random.default_rng(0), np.median).shape == (measure.BOOTSTRAP_ROUNDS,)


def test_timing_in_turn_stops_once_every_median_is_known_to_the_precision_asked():
    import time

    from tfaudit.engine.host_index import median_half_width, time_interleaved

    steady = lambda: sum(range(2000))  # noqa: E731
    started = time.perf_counter()
    early = time_interleaved(steady, steady, warmup=1, max_seconds=1.0, precision=0.5, min_seconds=0.05)
    assert time.perf_counter() - started < 0.5 and all(median_half_width(t.samples_ms) <= 0.5 for t in early)
    started = time.perf_counter()
    time_interleaved(steady, steady, warmup=1, max_seconds=0.2)
    assert time.perf_counter() - started >= 0.2  # without a precision: the whole window
    assert median_half_width([1.0] * 50) == 0.0 and median_half_width([1.0, 2.0] * 50) == pytest.approx(0.25)
