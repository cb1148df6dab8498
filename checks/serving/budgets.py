"""What each phase of the serving check may spend, per ``--budget``."""
from __future__ import annotations

import math

POINT_SECONDS = {"quick": 0.2, "standard": 0.6, "thorough": 2.0}  # a batch-sweep point, at most
SWEEP_SECONDS = {"quick": 3.0, "standard": 12.0, "thorough": 45.0}
MIN_POINT_CALLS = 10
MAX_BATCH = {"quick": 128, "standard": 512, "thorough": 2048}
THROUGHPUT_GROWTH = 1.10  # two doublings in a row adding less than this end the sweep
# Past the first batch (whose p99 is a metric and whose p50 sets the default bound), a point stops once its median is known
# within ± a fifth of the growth that ends the sweep, after a quarter of its time: the median is all the choice reads
# unless --latency-budget-ms bounds the p99, which keeps the whole window.
POINT_PRECISION = (THROUGHPUT_GROWTH - 1) / 5
POINT_MIN_SHARE = 0.25
CPU_MIN_CALLS, CPU_SECONDS = 5, 0.1  # CPU time per call at the first and the serving batch: calls, then seconds
MEMORY_SHARE = 0.5  # of the memory available, that the next batch may take
NOISE_SECONDS = {"quick": 0.2, "standard": 0.4, "thorough": 1.0}  # per fresh process: the model and the host reference in turn
NOISE_ROUNDS = 40  # enough rounds for a median; the noise that matters is between processes, not within one
TURN_MS = 4.0  # a comparison's turn of calls (concurrent callers, a serving process): long beside waking threads or a pipe


def turn_calls(call_ms: float, callers: int = 1) -> int:
    """Calls a turn makes so that each of ``callers`` spends about TURN_MS on them (a multiple of ``callers``)."""
    return callers * max(1, math.ceil(TURN_MS / callers / max(call_ms, 1e-3)))


def cold_starts(confidence: float, before: int = 0) -> int:
    """Processes the cold-start comparison needs: with ``before`` first requests timed without the warm-up file, the fewest
    with it for which "every one without slower than every one with" holds at ``confidence`` (exact permutation test,
    p = 1/C(before + n, n)); with ``before`` 0, the fewest n a side (p = 1/C(2n, n)): 3 at 95 %, 5 at 99 %, 7 at 99.9 %."""
    n = 1
    while 1 / math.comb((before or n) + n, n) > 1 - confidence + 1e-12:
        n += 1
    return n


def budget_key(ctx) -> str:
    return ctx.budget.name if ctx.budget.name in POINT_SECONDS else "standard"


def noise_timing(ctx, feeds: dict[int, str], batches: list[int]) -> dict:
    """helper_open's arguments that time ``batches``' feeds and the host reference in turn in a fresh process."""
    return {"noise_feeds": [feeds[b] for b in batches], "noise_seconds": NOISE_SECONDS[budget_key(ctx)], "noise_rounds": NOISE_ROUNDS}


def feed_of(ctx, batch: int, seed: int) -> dict:
    """A request of ``batch`` rows (the signature's own batch when its batch dimension is fixed)."""
    return ctx.inputs.make(batch=batch, seed=seed) if ctx.inputs.batch_dynamic else ctx.inputs.make(seed=seed)
