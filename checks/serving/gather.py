"""What the serving check measures, in the worker and its helper processes; plain data for ``judge``.

Per device: the batch sweep, concurrent callers and XLA at the serving batch. On the CPU, in processes of their own:
threads, precision and oneDNN, cold start, and the best of each together. Then LiteRT's threads. Every timing keeps its
samples (per round where there are rounds, thinned), so the judge decides from the same numbers gather stopped on.
"""
from __future__ import annotations

import os
import re
import time
from typing import Any, Iterator

from tfaudit.api import Progress, SkipCheck, compare_in_turn, one_line

from . import catalogue as text
from .._compression import fidelity, max_fidelity_loss
from .batching import Sweep
from .budgets import budget_key, feed_of
from .concurrency import concurrency_sweep
from .devices import Device, GpuMonitor, chosen_devices
from .endpoint import Endpoint, timed_first
from .judge import xla_pays
from .litert import litert_threads
from .processes import gather_processes
from .stats import MAX_SAMPLES_PER_WINDOW, thinned
from .sweep import batch_sweep


class PhaseClock:
    """The seconds each phase took, in order (``phase_seconds``)."""

    def __init__(self):
        self.seconds: dict[str, float] = {}
        self.last = time.perf_counter()

    def __call__(self, phase: str) -> None:
        now = time.perf_counter()
        self.seconds[phase] = round(now - self.last, 2)
        self.last = now


def gather(ctx, isolated) -> Iterator:
    """Yields progress and live samples; returns the measurements."""
    if ctx.inputs.placeholder_string_inputs:
        raise SkipCheck("string inputs without a vocabulary: a sweep of placeholder strings would not be what the model serves (give --inputs)")
    import tensorflow as tf

    started = time.perf_counter()
    cores = os.cpu_count() or 1
    serve = ctx.model.serving_fn()
    devices, note = chosen_devices(ctx, tf)
    clock = PhaseClock()
    measured: dict[str, Any] = {
        "budget": budget_key(ctx), "cores": cores, "latency_budget_ms": ctx.options.get("latency_budget_ms"),
        "max_fidelity_loss": max_fidelity_loss(ctx), "signature": ctx.model.signature, "input_names": [s.name for s in ctx.inputs.specs],
        "devices": [d.name for d in devices], "devices_note": note, "phase_seconds": clock.seconds, "sweeps": {},
    }
    span = 0.45 / len(devices)
    sweeps: dict[str, Sweep] = {}
    for index, device in enumerate(devices):
        sweeps[device.name], measured["sweeps"][device.name] = yield from device_phases(
            ctx, tf, serve, device, (index * span, index * span + span), cores, clock)
    primary = sweeps[devices[0].name]
    if not primary.points:
        raise SkipCheck(f"the serving signature could not be called: {primary.stop}")
    cpu = measured["sweeps"].get("CPU") or {}
    xla_paid = "xla" in cpu and xla_pays(cpu["xla"], measured["max_fidelity_loss"], measured["budget"])
    measured["processes"] = yield from gather_processes(ctx, primary, xla_paid, clock)
    measured["litert"] = yield from litert_threads(ctx, isolated, cores)
    clock("LiteRT threads")
    yield Progress(0.97, "ranking the configurations")
    measured["check_seconds"] = round(time.perf_counter() - started, 2)
    return measured


def device_phases(ctx, tf, serve, device: Device, span: tuple[float, float], cores: int, clock: PhaseClock) -> Iterator:
    """The batch sweep, then concurrency and XLA at its serving batch: returns (the Sweep, what was measured)."""
    low, high = span
    endpoint = Endpoint(serve, device.tf_name)
    sweep = yield from batch_sweep(ctx, endpoint, device, GpuMonitor(device, tf), (low, low + (high - low) * 0.6))
    measured = sweep.measured()
    if not sweep.points:
        return sweep, measured
    feed = feed_of(ctx, sweep.serving_batch, seed=3)
    clock(f"{device.name} batch sweep")
    call_ms = sweep.point(sweep.serving_batch)["p50_ms"]
    measured["concurrency"] = yield from concurrency_sweep(ctx, endpoint, feed, sweep.serving_batch, cores, call_ms)
    clock(f"{device.name} concurrency")
    measured["xla"] = measure_xla(ctx, serve, device, feed)
    clock(f"{device.name} XLA")
    yield Progress(high, f"{device.name}: serving batch {sweep.serving_batch}")
    return sweep, measured


def measure_xla(ctx, serve, device: Device, feed: dict) -> dict[str, Any]:
    """jit_compile=True at the serving batch: its first call, its outputs against the plain call's, both timed call by call in turn."""
    plain = Endpoint(serve, device.tf_name)
    tensors = plain.tensors(feed)
    reference = plain(tensors)
    try:
        compiled = Endpoint(serve, device.tf_name, xla=True)
        first_ms = timed_first(lambda: compiled(tensors))
        outputs = compiled(tensors)
    except Exception as exc:  # noqa: BLE001 - what XLA cannot compile is a finding's evidence, not an error
        return {"compiles": False, "why": xla_reason(exc)}
    _, rounds = compare_in_turn(lambda: plain(tensors), lambda: compiled(tensors), (text.XLA_MINIMUM, text.XLA_MEDIUM),
                                warmup=ctx.budget.warmup, max_seconds=ctx.budget.timing_seconds / 2, confidence=ctx.budget.confidence)
    return {
        "compiles": True, "first_ms": first_ms, "warmup": ctx.budget.warmup, "relative_l2": fidelity([reference], [outputs])["relative_l2"],
        "rounds": rounds.to_json(), "confidence": ctx.budget.confidence,
        "plain_ms": thinned(rounds.calls_a, MAX_SAMPLES_PER_WINDOW), "xla_ms": thinned(rounds.calls_b, MAX_SAMPLES_PER_WINDOW),
    }


def xla_reason(exc: BaseException) -> str:
    """The op XLA has no kernel for, with the attributes asked for, else the error's first line."""
    text = str(exc)
    missing = re.search(r"No registered '([^']+)' OpKernel for (\S+) devices", text)
    if missing:
        wanted = re.search(r"Requested Attributes: ([^)}\n]+)", text)
        return f"XLA ({missing.group(2)}) has no kernel for op {missing.group(1)}" + (f" with {wanted.group(1).strip()}" if wanted else "")
    return one_line(exc)
