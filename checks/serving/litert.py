"""LiteRT threads: the float32 TFLite model (reused from the quantization check when it ran) at num_threads 1 … cores,
each against LiteRT's default in ABBA rounds until decided, in the conversion process."""
from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import asdict
from typing import Iterator

from tfaudit.api import HelperFailed, Progress

from .._compression import conversion_source, float32_flatbuffer, prepare_conversions, write_feeds
from . import catalogue as text
from .budgets import feed_of
from .in_helper import litert_threads_job


def litert_threads(ctx, isolated, cores: int) -> Iterator:
    """Returns {"threads": [None (the default), 1, 2, …], "compared": per count past the default, its rounds against the
    default and both sides' calls, "confidence"}, or {"error": why not}."""
    yield Progress(0.92, "LiteRT threads")
    tmp = tempfile.mkdtemp(prefix="tfaudit-serving-litert-")
    counts: list[int | None] = [None] + sorted({1, *[2 ** i for i in range(1, 8) if 2 ** i <= cores], cores})
    try:
        source = conversion_source(ctx, tmp)
        prepare_conversions(isolated, ctx, source)
        converted = float32_flatbuffer(ctx, source, isolated, tmp)
        path = converted.path or os.path.join(tmp, "float32.tflite")
        if not converted.path:
            with open(path, "wb") as f:
                f.write(converted.content)
        feed = write_feeds(os.path.join(tmp, "request.npz"), [feed_of(ctx, 1, seed=2)])
        reply = isolated.call("timing LiteRT threads", litert_threads_job, model=path, signature=ctx.model.signature,
                              feed=feed, threads=counts, minimums=[asdict(text.LITERT_MINIMUM), asdict(text.LITERT_HALVES)],
                              seconds=ctx.budget.timing_seconds / 4, warmup=ctx.budget.warmup, confidence=ctx.budget.confidence)
    except HelperFailed as exc:  # HelperCrashed too: a converter that crashed
        return {"error": f"not measured: {exc}"}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if "error" in reply:
        return {"error": f"not measured: {reply['error']}"}
    return {"threads": counts, "compared": reply["compared"], "confidence": ctx.budget.confidence}
