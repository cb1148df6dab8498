"""Growth of memory against calls: Theil–Sen slopes with Sen's interval, and when a slope counts (numpy only)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from tfaudit.api import Metric, Slope, theil_sen  # noqa: F401 - Slope re-exported

from .catalogue import KIB, MIB, MIN_BYTES_PER_CALL, MIN_BYTES_PER_SHAPE, MIN_PHASE_GROWTH_BYTES, PERSISTENCE  # noqa: F401 - re-exported

EARLY_LOOKS = (0.125, 0.25, 0.375, 0.5, 0.75)  # shares of the fixed phase's time where it may stop, no growth decided
SERVING_HORIZON_HOURS = 24.0 * 7


@dataclass(frozen=True)
class Growth:
    """A fitted slope and whether it counts as growth (see the check's docstring)."""

    slope: Slope  # bytes per step (call or new shape)
    late_slope: float  # the second half's slope
    steps: int
    total_bytes: float  # slope × steps
    min_step_bytes: float

    @property
    def resolution(self) -> float:
        """The smallest slope this phase could report as growth (per step)."""
        return max(self.min_step_bytes, MIN_PHASE_GROWTH_BYTES / self.steps) if self.steps else float("inf")

    @property
    def significant(self) -> bool:
        return (
            self.slope.excludes_zero()
            and self.slope.low >= self.min_step_bytes
            and self.total_bytes >= MIN_PHASE_GROWTH_BYTES
            and self.late_slope >= PERSISTENCE * self.slope.value
        )

    def summary(self) -> dict[str, Any]:
        return {
            "bytes_per_step": round(self.slope.value, 1),
            "bytes_per_step_ci95": [round(self.slope.low, 1), round(self.slope.high, 1)],
            "second_half_bytes_per_step": round(self.late_slope, 1),
            "steps": self.steps,
            "total_growth_bytes": round(self.total_bytes),
            "growth": self.significant,
        }


def fit_growth(steps, values, min_step_bytes: float = MIN_BYTES_PER_CALL) -> Growth:
    steps, values = np.asarray(steps, dtype=float), np.asarray(values, dtype=float)
    slope = theil_sen(steps, values)
    half = len(steps) // 2
    late = theil_sen(steps[half:], values[half:]).value if len(steps) - half >= 3 else slope.value
    span = float(steps[-1] - steps[0]) if len(steps) else 0.0
    return Growth(slope, late, int(span), slope.value * span, min_step_bytes)


def no_growth_decided(calls, memory, confidence: float) -> bool:
    """Whether the fixed phase may stop at an early look: over calls enough to have seen MIN_PHASE_GROWTH_BYTES at
    MIN_BYTES_PER_CALL, the slope's whole interval lies below MIN_BYTES_PER_CALL. Each look (the early ones and the
    phase's end) spends an equal share of ``1 - confidence`` (a union bound), so looking early adds no missed leaks."""
    if len(calls) < 5 or calls[-1] - calls[0] < MIN_PHASE_GROWTH_BYTES / MIN_BYTES_PER_CALL:
        return False
    return theil_sen(calls, memory, confidence=1 - (1 - confidence) / (len(EARLY_LOOKS) + 1)).high < MIN_BYTES_PER_CALL


def beyond(slope: Slope, fixed: Slope) -> Slope:
    """Per-call growth with new shapes minus the fixed-shape growth, with the conservative (widest) interval."""
    return Slope(slope.value - fixed.value, slope.low - fixed.high, slope.high - fixed.low)


def horizon_bytes(per_call: float, calls_per_second: float, available: float | None) -> float:
    """Bytes a growth of ``per_call`` takes over the serving horizon, at most ``available``."""
    grown = max(0.0, per_call) * calls_per_second * 3600 * SERVING_HORIZON_HOURS
    return min(grown, available) if available else grown


def sustained_rate(calls: list[int], times: list[float], seconds: float) -> float:
    """Calls per second when the host disturbed the loop least: the 90th percentile over checkpoint intervals.

    The phase's average rate swung 6× between audits of one leaking model on a shared host (677 to
    4,291 calls/s), and with it the hours to exhaustion across the 1 h severity threshold.
    """
    spans, done = np.diff(np.array(times)), np.diff(np.array(calls, dtype=float))
    usable = spans > 0
    if usable.sum() < 5:
        return calls[-1] / seconds if seconds > 0 and calls else 0.0
    return float(np.percentile(done[usable] / spans[usable], 90))


def per_1000_calls(name: str, growth: Growth) -> Metric:
    """The slope × 1000 with its interval; "no growth" carries the resolution it was measured at.

    When the check does not call the slope growth, the interval is widened to reach 0 and the
    phase's resolution, so a baseline never reads "no growth" as exactly 0 (or as a tiny but
    tight slope) and calls the next run's allocator noise a regression.
    """
    slope = growth.slope
    low, high = slope.low, slope.high
    if not growth.significant:
        low, high = min(low, 0.0), max(high, growth.resolution)
    return Metric(name, slope.value * 1000, "bytes", low * 1000, high * 1000)


def mb(nbytes: float) -> float:
    return round(nbytes / MIB, 3)
