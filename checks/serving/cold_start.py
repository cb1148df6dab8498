"""Cold start: what a new replica pays before its first answer, and again with TF Serving's warm-up file replayed at load."""
from __future__ import annotations

import os
import time
from typing import Any, Iterator

from tfaudit.api import HelperFailed, Progress, helper_process

from .batching import Sweep
from .budgets import cold_starts, feed_of
from .fix import write_warmup_copy
from .in_helper import helper_open
from .judge import cold_start_is_slow


def cold_start(ctx, tmp: str, modules: list[str], cold: list[dict], feeds: dict, primary: Sweep, noise: dict) -> Iterator:
    """``cold_starts`` fresh processes' load and first two requests (``cold`` holds those already timed, by the settings'
    processes); when the first is slow and the model is a SavedModel, as many processes loading a copy with the warm-up
    file as the permutation test needs beside them. None when no process answered."""
    first_batch = primary.points[0]["batch"]
    processes = cold_starts(ctx.budget.confidence)
    for _ in range(max(0, processes - len(cold))):
        reply = open_fresh(ctx, modules, feeds[first_batch], noise=noise)
        if reply:
            cold.append(reply)
    if not cold:
        return None
    warm = primary.points[0]["p50_ms"]
    measured: dict[str, Any] = {"first_requests": cold, "warm_p50_ms": warm, "saved_model": os.path.isdir(ctx.model.path),
                                "noise_batches": noise_batches(primary)}
    if not measured["saved_model"] or not cold_start_is_slow([r["first_ms"] for r in cold], warm):
        return measured
    yield Progress(0.72, "cold start: writing the warm-up file and replaying it")
    copy = os.path.join(tmp, "with-warmup")
    batches = sorted({first_batch, primary.serving_batch})
    records = write_warmup_copy(ctx.model.path, copy, ctx.model.signature, [feed_of(ctx, b, seed=7) for b in batches])
    replayed = []
    for _ in range(cold_starts(ctx.budget.confidence, before=len(cold))):
        reply = open_fresh(ctx, modules, feeds[first_batch], model=copy, warmup_records=records, noise=noise)
        if reply:
            replayed.append(reply)
    measured.update(warmup_batches=batches, after_warmup=replayed)
    return measured


def noise_batches(primary: Sweep) -> list[int]:
    """The batches whose latency ÷ host reference each fresh process times: the first (latencies) and the serving batch
    (throughput), which runs on every core as the single-threaded reference does not."""
    return sorted({primary.points[0]["batch"], primary.serving_batch})


def open_fresh(ctx, modules: list[str], feed: str, model: str | None = None, warmup_records: str | None = None,
               noise: dict | None = None) -> dict | None:
    """A fresh process's helper_open reply (load, first and second request, ``noise``'s timing), None when it failed."""
    helper = helper_process()
    try:
        helper.deadline_for(time.monotonic(), ctx.budget)
        reply = helper.call("loading the model (cold start)", helper_open,
                            model=model or ctx.model.path, signature=ctx.model.signature, modules=modules, device="/CPU:0",
                            first_feed=feed, warmup_records=warmup_records, **(noise or {}))
    except HelperFailed:
        return None
    finally:
        helper.close()
    return None if "error" in reply else reply
