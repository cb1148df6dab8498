"""Timing and the statistics every check shares: medians, spread, and intervals.

No TensorFlow here: checks pass in callables that block until their result exists
(call ``.numpy()`` on TF outputs), so the clock measures the real work.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from tfaudit.api import Measure, Slope

MIN_REPEATS = 5
BOOTSTRAP_ROUNDS = 2000


@dataclass(frozen=True)
class Timing:
    """Per-call wall times of one measurement, in milliseconds."""

    samples_ms: tuple[float, ...]
    warmup: int

    @property
    def n(self) -> int:
        return len(self.samples_ms)

    @property
    def median_ms(self) -> float:
        return float(np.median(self.samples_ms))

    @property
    def p10_ms(self) -> float:
        return float(np.percentile(self.samples_ms, 10))

    @property
    def p90_ms(self) -> float:
        return float(np.percentile(self.samples_ms, 90))

    @property
    def mad_ms(self) -> float:
        """Median absolute deviation: the spread that one slow outlier cannot inflate."""
        values = np.asarray(self.samples_ms)
        return float(np.median(np.abs(values - np.median(values))))

    def median_interval(self, confidence: float = 0.95) -> Measure:
        return bootstrap_median(self.samples_ms, confidence=confidence)

    def summary(self) -> dict[str, float]:
        interval = self.median_interval()
        return {
            "median_ms": round(self.median_ms, 4),
            "median_ci_ms": [round(interval.low, 4), round(interval.high, 4)],
            "p10_ms": round(self.p10_ms, 4),
            "p90_ms": round(self.p90_ms, 4),
            "mad_ms": round(self.mad_ms, 4),
            "n": self.n,
            "warmup": self.warmup,
        }


def time_call(
    fn: Callable[[], object], *, warmup: int, repeats: int, max_seconds: float
) -> Timing:
    """Call ``fn`` ``warmup`` times untimed, then up to ``repeats`` times timed.

    Timing stops early once ``max_seconds`` have passed, but never before
    ``MIN_REPEATS`` timed calls, so a slow model still gets a usable spread.
    """
    for _ in range(warmup):
        fn()
    samples: list[float] = []
    deadline = time.perf_counter() + max_seconds
    while len(samples) < max(repeats, MIN_REPEATS):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1000.0)
        if len(samples) >= MIN_REPEATS and time.perf_counter() > deadline:
            break
    return Timing(samples_ms=tuple(samples), warmup=warmup)


def percentile(q: float) -> Callable:
    """The ``q``-th percentile as a bootstrap statistic (numpy's linear interpolation), resampled from its exact distribution."""
    def statistic(values, axis=None):
        return np.percentile(values, q, axis=axis)

    statistic.percentile = q  # type: ignore[attr-defined]
    return statistic


def _resample(values: Sequence[float], rng: np.random.Generator, statistic=np.median) -> np.ndarray:
    """``statistic`` (a numpy reduction taking ``axis``) of BOOTSTRAP_ROUNDS resamples of ``values``."""
    data = np.asarray(values, dtype=float)
    q = 50.0 if statistic is np.median else getattr(statistic, "percentile", None)
    if q is not None:
        return _resampled_percentiles(data, rng, q)
    picks = rng.integers(0, len(data), size=(BOOTSTRAP_ROUNDS, len(data)))
    return statistic(data[picks], axis=1)


def _resampled_percentiles(data: np.ndarray, rng: np.random.Generator, q: float) -> np.ndarray:
    """The ``q``-th percentiles of BOOTSTRAP_ROUNDS resamples, drawn from their exact distribution without building one.

    numpy's percentile of n values interpolates between the k-th and (k+1)-th smallest, k = ⌊(n − 1)·q/100⌋ + 1.
    A resample is n draws from the empirical distribution F, so its k-th smallest value is F⁻¹(U₍ₖ₎),
    U₍ₖ₎ the k-th smallest of n uniforms: Beta(k, n − k + 1); the next one up is U₍ₖ₎ + (1 − U₍ₖ₎)·Beta(1, n − k)
    (the least of the n − k uniforms above it). O(rounds) instead of O(rounds · n).
    """
    ordered, n = np.sort(data), len(data)

    def quantile(u: np.ndarray) -> np.ndarray:  # F⁻¹(u): the ceil(u·n)-th smallest value
        return ordered[np.clip(np.ceil(u * n).astype(int) - 1, 0, n - 1)]

    position = (n - 1) * q / 100.0
    k, fraction = int(position) + 1, position - int(position)
    lower = rng.beta(k, n - k + 1, size=BOOTSTRAP_ROUNDS)
    if k >= n or fraction == 0:
        return quantile(lower)
    upper = lower + (1 - lower) * rng.beta(1, n - k, size=BOOTSTRAP_ROUNDS)
    return quantile(lower) + fraction * (quantile(upper) - quantile(lower))


def bootstrap(values: Sequence[float], statistic=np.median, confidence: float = 0.95, seed: int = 0) -> Measure:
    """``statistic`` of ``values`` with a percentile-bootstrap interval (median, mean, or e.g. a p99)."""
    resampled = _resample(values, np.random.default_rng(seed), statistic)
    tail = (1 - confidence) / 2 * 100
    return Measure(
        value=float(statistic(np.asarray(values, dtype=float), axis=0)),
        low=float(np.percentile(resampled, tail)),
        high=float(np.percentile(resampled, 100 - tail)),
    )


def bootstrap_median(values: Sequence[float], confidence: float = 0.95, seed: int = 0) -> Measure:
    """The median with a percentile-bootstrap interval."""
    return bootstrap(values, np.median, confidence, seed)


def theil_sen(x, y, confidence: float = 0.95, max_points: int = 400) -> Slope:
    """Median of pairwise slopes, with Sen's rank-based interval (Kendall's S variance, no ties correction); 0 [0, 0]
    without two distinct x. More than ``max_points`` points are thinned evenly first, which keeps the pairs O(max_points²)."""
    from statistics import NormalDist

    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if len(x) > max_points:
        keep = np.linspace(0, len(x) - 1, max_points).round().astype(int)
        x, y = x[keep], y[keep]
    n = len(x)
    i, j = np.triu_indices(n, k=1)
    dx = x[j] - x[i]
    usable = dx != 0
    slopes = np.sort((y[j] - y[i])[usable] / dx[usable])
    if len(slopes) == 0:
        return Slope(0.0, 0.0, 0.0)
    spread = NormalDist().inv_cdf(0.5 + confidence / 2) * np.sqrt(n * (n - 1) * (2 * n + 5) / 18.0)
    count = len(slopes)
    low = int(np.clip(np.floor((count - spread) / 2), 0, count - 1))
    high = int(np.clip(np.ceil((count + spread) / 2), 0, count - 1))
    return Slope(float(np.median(slopes)), float(slopes[low]), float(slopes[high]))


@dataclass(frozen=True)
class Comparison:
    """What switching from ``before`` to ``after`` saves, each with a 95 % interval."""

    saved_ms: Measure
    saved_pct: Measure  # 0-100 of the ``before`` median
    speedup: Measure  # before / after

    @property
    def significant(self) -> bool:
        """True when the interval of the saving excludes zero: the noise does not swallow it."""
        return self.saved_ms.excludes_zero()


def compare(before: Timing, after: Timing, confidence: float = 0.95, seed: int = 0) -> Comparison:
    rng = np.random.default_rng(seed)
    before_medians = _resample(before.samples_ms, rng)
    after_medians = _resample(after.samples_ms, rng)
    saved = before_medians - after_medians
    saved_pct = 100.0 * saved / before_medians
    speedup = before_medians / np.maximum(after_medians, 1e-12)
    tail = (1 - confidence) / 2 * 100

    def interval(point: float, resampled: np.ndarray) -> Measure:
        return Measure(
            value=float(point),
            low=float(np.percentile(resampled, tail)),
            high=float(np.percentile(resampled, 100 - tail)),
        )

    b, a = before.median_ms, after.median_ms
    return Comparison(
        saved_ms=interval(b - a, saved),
        saved_pct=interval(100.0 * (b - a) / b, saved_pct),
        speedup=interval(b / max(a, 1e-12), speedup),
    )
