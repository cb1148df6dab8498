"""Test-only checks that misbehave on purpose (loaded through TFAUDIT_EXTRA_CHECKS)."""
from __future__ import annotations

import ctypes
import json
import os
import time

from tfaudit.api import Check, CheckMeta, Effort, Finding, Fix, HelperCrashed, Measure, Metric, Progress, Sample, SkipCheck, helper_process


class TimedFinding(Check):
    """Times the real serving function and reports what it measured."""

    meta = CheckMeta("fake-timed", "Fake timed check", "times serving and emits a finding")

    def run(self, ctx):
        serve = ctx.model.serving_fn()
        batch = ctx.inputs.make(batch=2)
        timing = ctx.timer(lambda: {k: v.numpy() for k, v in serve(**batch).items()}, warmup=2, repeats=10)
        for i, ms in enumerate(timing.samples_ms):
            yield Sample("latency_ms", i, ms)
        yield Progress(0.5, "timed")
        interval = timing.median_interval()
        yield Finding(
            id="fake-timed/slow",
            check="fake-timed",
            severity="medium",
            title="Serving takes time",
            summary=f"median {timing.median_ms:.3f} ms",
            evidence=timing.summary(),
            effort=Effort("hours", 2, "made up for the test"),
            fix=Fix("do less", "pass"),
            savings={"latency_ms": Measure(interval.value, interval.low, interval.high), "latency_pct": Measure(10.0, 5.0, 15.0)},
        )


class LowFinding(Check):
    meta = CheckMeta("fake-low", "Fake low check", "emits one low finding without TensorFlow work")

    def run(self, ctx):
        yield Progress(0.5, f"parent {os.getppid()}")  # the zygote's pid in a forked worker, the runner's in a fresh one
        yield Metric("input_count", len(ctx.inputs.specs), "inputs")
        yield Finding(
            id="fake-low/minor", check="fake-low", severity="low", title="Minor thing", summary="minor",
            evidence={"inputs": [s.name for s in ctx.inputs.specs]}, effort=Effort("minutes", 0.5, "quick"),
            fix=Fix("tweak"), savings={"size_pct": Measure(4.0), "size_bytes": Measure(40_000.0)},
        )


class Raises(Check):
    meta = CheckMeta("fake-raises", "Fake raising check", "raises")

    def run(self, ctx):
        yield Progress(0.1, "about to fail")
        raise RuntimeError("planted failure\nsecond line")


class Segfaults(Check):
    meta = CheckMeta("fake-segfault", "Fake crashing check", "dereferences NULL")

    def run(self, ctx):
        yield Progress(0.1, "about to crash")
        print("native code goes wrong now", flush=True)
        ctypes.string_at(0)


class Hangs(Check):
    meta = CheckMeta("fake-hang", "Fake hanging check", "sleeps forever")

    def run(self, ctx):
        yield Progress(0.1, "sleeping")
        while True:
            time.sleep(1)


class Skips(Check):
    meta = CheckMeta("fake-skip", "Fake skipping check", "does not apply")

    def run(self, ctx):
        raise SkipCheck("does not apply to this model")
        yield  # pragma: no cover


class Killed(Check):
    meta = CheckMeta("fake-killed", "Fake OOM-killed check", "killed by SIGKILL as the OOM killer would")

    def run(self, ctx):
        yield Progress(0.1, "allocating")
        os.kill(os.getpid(), 9)


class WrongCheckId(Check):
    meta = CheckMeta("fake-wrong-id", "Fake check with a bad finding", "names another check")

    def run(self, ctx):
        yield Finding(id="other/x", check="other", severity="low", title="t", summary="s", evidence={},
                      effort=Effort("minutes", 0.5, "n"), fix=Fix("f"))


class Hog(Check):
    meta = CheckMeta("fake-hog", "Fake memory hog", "allocates until something stops it")

    def run(self, ctx):
        yield Progress(0.1, "allocating")
        hoard = []
        while True:
            hoard.append(bytearray(64 * 1024 * 1024))  # bytearray pages are touched: resident at once
            time.sleep(0.02)


class Chatty(Check):
    meta = CheckMeta("fake-chatty", "Fake chatty check", "streams samples forever, never pausing")

    def run(self, ctx):
        i = 0
        while True:
            i += 1
            yield Sample("noise", i, 1.0)
            time.sleep(0.001)


def who_am_i() -> dict:
    """Called in a helper process: its pid and its parent's."""
    return {"pid": os.getpid(), "parent": os.getppid()}


def hoard(limit_mb: int) -> dict:
    """Called in a helper process: hold up to ``limit_mb`` resident, then wait to be killed."""
    held = [bytearray(64 * 1024 * 1024) for _ in range(limit_mb // 64)]
    time.sleep(600)
    return {"held": len(held)}


class HelperTrouble(Check):
    """A helper that crashes, restarts, and is then left to hog memory or hang: the runner must count and stop it."""

    meta = CheckMeta("fake-helpers", "Fake check with troubled helpers", "crashes a helper, then leaves one that hoards")

    def run(self, ctx):
        helper = helper_process()
        first = helper.call("asking who it is", who_am_i)
        try:
            helper.call("reading address 0", ctypes.string_at, ptr=0)
        except HelperCrashed as crash:
            signal_name = crash.signal
        second = helper.call("asking who it is", who_am_i)
        yield Progress(0.5, json.dumps({"worker": os.getpid(), "first": first, "second": second, "signal": signal_name}))
        closed = helper_process()
        closed.call("asking who it is", who_am_i)
        closed.close()  # its exit, relayed by the zygote, stays unread here when this worker dies
        time.sleep(0.3)
        helper.call("hoarding memory", hoard, limit_mb=int(os.environ.get("FAKE_HOARD_MB", "0")))
