"""The batch sweep, in the check's worker: back-to-back calls at batch 1, 2, 4, … until growth, time or memory stops it."""
from __future__ import annotations

import time
from typing import Any, Iterator

import psutil

from tfaudit.api import Progress, Sample, compare_in_turn, host_reference, one_line, peak_anonymous_bytes, process_memory_bytes, reset_peak_memory, time_in_turn

from .batching import Sweep, choose_serving_batch
from .catalogue import BATCH_MINIMUM
from .budgets import (CPU_MIN_CALLS, CPU_SECONDS, MAX_BATCH, MEMORY_SHARE, MIN_POINT_CALLS, POINT_MIN_SHARE, POINT_PRECISION, POINT_SECONDS, SWEEP_SECONDS,
                      THROUGHPUT_GROWTH, budget_key, feed_of)
from .devices import Device, GpuMonitor
from .endpoint import Endpoint, timed_first
from .stats import MAX_SAMPLES_PER_WINDOW, thinned, timing_of, timing_stats


def batch_sizes(ctx) -> list[int]:
    if not ctx.inputs.batch_dynamic:
        fixed = next((s.shape[0] for s in ctx.inputs.specs if s.shape), 1) or 1
        return [fixed]
    sizes, batch = [], 1
    while batch <= MAX_BATCH[budget_key(ctx)]:
        sizes.append(batch)
        batch *= 2
    return sizes


def batch_sweep(ctx, endpoint: Endpoint, device: Device, monitor: GpuMonitor, progress: tuple[float, float]) -> Iterator:
    """Yields a sample and progress per point; returns the Sweep, its serving batch chosen."""
    return (yield from BatchSweep(ctx, endpoint, device, monitor).run(progress))


class BatchSweep:
    def __init__(self, ctx, endpoint: Endpoint, device: Device, monitor: GpuMonitor):
        self.ctx, self.endpoint, self.device, self.monitor = ctx, endpoint, device, monitor
        self.key = budget_key(ctx)
        self.sweep = Sweep(device.name)
        self.available = psutil.virtual_memory().available
        self.baseline = process_memory_bytes()
        self.deadline = time.perf_counter() + SWEEP_SECONDS[self.key]

    def run(self, progress: tuple[float, float]) -> Iterator:
        sweep, sizes = self.sweep, batch_sizes(self.ctx)
        reference = host_reference() if self.device.name == "CPU" else None
        for position, batch in enumerate(sizes):
            sweep.stop = self.reason_to_stop_before(batch)
            if sweep.stop:
                break
            try:
                tensors = self.endpoint.tensors(feed_of(self.ctx, batch, seed=3))
                reset_peak_memory()
                first_ms = timed_first(lambda: self.endpoint(tensors))
            except Exception as exc:  # an OOM, or a batch the model rejects: the sweep ends here
                sweep.stop = f"batch {batch} failed: {one_line(exc)}"
                break
            point = self.measure(batch, tensors, first_ms, reference if batch == sizes[0] else None)
            yield Sample(f"{self.device.name} batch", point["p50_ms"], point["rows_per_s"], label=f"batch {batch}")
            low, high = progress
            yield Progress(low + (high - low) * (position + 1) / len(sizes),
                           f"{self.device.name}: batch {batch}: {point['rows_per_s']:.0f} rows/s, p99 {point['p99_ms']:.2f} ms")
            if len(sweep.points) >= 3 and all(
                sweep.points[-i]["rows_per_s"] < THROUGHPUT_GROWTH * sweep.points[-i - 1]["rows_per_s"] for i in (1, 2)
            ):
                sweep.stop = f"throughput stopped growing: two doublings added less than {THROUGHPUT_GROWTH - 1:.0%} each"
                break
        else:
            if len(sizes) > 1:
                sweep.stop = f"reached the largest batch measured at this budget ({sizes[-1]})"
        choose_serving_batch(sweep, self.ctx.options.get("latency_budget_ms"))
        if sweep.points and self.device.name == "CPU":
            for batch in dict.fromkeys((sweep.points[0]["batch"], sweep.serving_batch)):
                sweep.cpu.append(self.cpu_time(batch))
        if sweep.points and sweep.serving_batch != sweep.points[0]["batch"]:
            try:
                sweep.batched = self.batched_in_turn(sweep.points[0]["batch"], sweep.serving_batch)
            except Exception as exc:  # the sweep measured both batches: a failure here only leaves the claim to its intervals
                sweep.batched = {"error": one_line(exc)}
        return sweep

    def batched_in_turn(self, first: int, batch: int) -> dict[str, Any]:
        """``batch // first`` calls of the first batch against one call of ``batch`` rows, in ABBA rounds until decided past
        BATCH_MINIMUM (or half the budget's timing time): the serving batch's claim."""
        calls = batch // first
        single = self.endpoint.tensors(feed_of(self.ctx, first, seed=3))
        together = self.endpoint.tensors(feed_of(self.ctx, batch, seed=3))

        def one_at_a_time() -> None:
            for _ in range(calls):
                self.endpoint(single)

        _, rounds = compare_in_turn(one_at_a_time, lambda: self.endpoint(together), BATCH_MINIMUM, warmup=self.ctx.budget.warmup,
                                    max_seconds=self.ctx.budget.timing_seconds / 2, confidence=self.ctx.budget.confidence)
        return {"batch": batch, "calls_of_first": calls, "rounds": rounds.to_json(), "confidence": self.ctx.budget.confidence}

    def cpu_time(self, batch: int) -> dict[str, Any]:
        """Each call's CPU time (every thread of the process: intra-op threads run in parallel) beside its wall time, for
        CPU_MIN_CALLS calls and then until CPU_SECONDS: what a deployment profile prices a saved call in (cores, not ms)."""
        tensors = self.endpoint.tensors(feed_of(self.ctx, batch, seed=3))
        cpu_ms: list[float] = []
        wall_ms: list[float] = []
        deadline = time.perf_counter() + CPU_SECONDS
        while len(cpu_ms) < CPU_MIN_CALLS or time.perf_counter() < deadline:
            cpu, wall = time.process_time(), time.perf_counter()
            self.endpoint(tensors)
            wall_ms.append(round((time.perf_counter() - wall) * 1000.0, 5))
            cpu_ms.append(round((time.process_time() - cpu) * 1000.0, 5))
        return {"batch": batch, "cpu_ms": thinned(cpu_ms), "wall_ms": thinned(wall_ms)}

    def reason_to_stop_before(self, batch: int) -> str:
        """Why the sweep ends before ``batch`` ("" when it goes on): the sweep's time, or the memory the last point projects."""
        if not self.sweep.points:
            return ""
        last, key = self.sweep.points[-1], self.key
        projected_s = 2 * last["p50_ms"] / 1000.0 * (self.ctx.budget.warmup + MIN_POINT_CALLS + 1)
        if time.perf_counter() + max(projected_s, POINT_SECONDS[key]) > self.deadline:
            return f"batch {batch} skipped: it would take ~{projected_s:.1f} s, past the sweep's {SWEEP_SECONDS[key]:g} s (--budget)"
        grown = last.get("memory_mb", 0.0) * 1e6
        if 2 * grown > MEMORY_SHARE * self.available:
            return f"batch {batch} skipped: ~{2 * grown / 1e6:.0f} MB projected, over {MEMORY_SHARE:.0%} of the {self.available / 1e6:.0f} MB available"
        return ""

    def measure(self, batch: int, tensors: dict, first_ms: float, reference) -> dict[str, Any]:
        """One point: back-to-back calls for POINT_SECONDS (the host reference in turn with them), at least MIN_POINT_CALLS;
        past the first point, until its median is known within POINT_PRECISION unless the bound is on the p99."""
        timings: list = []
        whole_window = not self.sweep.points or bool(self.ctx.options.get("latency_budget_ms"))
        seconds = POINT_SECONDS[self.key]

        def work() -> None:
            calls = [lambda: self.endpoint(tensors)] + ([reference] if reference else [])
            timings.extend(time_in_turn(*calls, warmup=self.ctx.budget.warmup, max_seconds=seconds,
                                        precision=None if whole_window else POINT_PRECISION, min_seconds=POINT_MIN_SHARE * seconds))

        gpu = self.monitor.measure(work)
        samples = thinned(timings[0].samples_ms)
        if len(timings) > 1:
            self.sweep.host_index_ms = thinned(timings[1].samples_ms, MAX_SAMPLES_PER_WINDOW)
        while len(samples) < MIN_POINT_CALLS:
            samples.append(round(timed_first(lambda: self.endpoint(tensors)), 5))
        peak = peak_anonymous_bytes()
        point = {**timing_stats(timing_of(samples), batch), "first_call_ms": round(first_ms, 3), **gpu}
        if peak is not None:
            point["memory_mb"] = round(max(0, peak - self.baseline) / 1e6, 1)
        self.sweep.points.append(point)
        self.sweep.samples_ms.append(samples)
        return point
