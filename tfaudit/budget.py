"""How much time and how many repetitions a check may spend (``--budget``)."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Budget:
    name: str
    warmup: int  # untimed calls before timing
    repeats: int  # timed calls per measurement (the median is reported)
    timing_seconds: float  # stop repeating one measurement after this long (min 5 repeats)
    check_timeout_s: float  # a worker running longer is killed and marked errored
    confidence: float  # of a comparison's claim, over all its looks (tfaudit.engine.sequential)


BUDGETS = {
    "quick": Budget("quick", warmup=3, repeats=15, timing_seconds=2.0, check_timeout_s=300, confidence=0.95),
    "standard": Budget("standard", warmup=5, repeats=50, timing_seconds=5.0, check_timeout_s=900, confidence=0.99),
    "thorough": Budget("thorough", warmup=10, repeats=200, timing_seconds=20.0, check_timeout_s=3600, confidence=0.999),
}
