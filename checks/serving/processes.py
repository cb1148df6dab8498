"""Threads, precision and oneDNN, each in a serving process of its own, timed in turn; then the best of each knob together.

Each setting needs a process of its own: ``tf.config.threading`` and Grappler's options take effect only before the first
op, and ``TF_ENABLE_ONEDNN_OPTS`` only at import (a fresh interpreter). Each setting's process is compared with the
defaults' in ABBA turns until decided (``compare_in_turn``), each turn timed in its process, so they share the host's moments.
"""
from __future__ import annotations

import os
import shutil
import tempfile
import time
from typing import Any, Iterator

from tfaudit.api import Helper, HelperFailed, Progress, compare_in_turn, helper_process, process_ratios

from .._compression import eval_feeds, fidelity, max_fidelity_loss, read_feeds, write_feeds
from .batching import Sweep
from . import catalogue as text
from .budgets import budget_key, feed_of, noise_timing, turn_calls
from .cold_start import cold_start, noise_batches
from .judge import fresh_processes
from .in_helper import helper_open, helper_outputs, helper_turn
from .knobs import best_setting
from .settings import Setting, bf16_cpu_support, thread_settings
from .stats import thinned


def gather_processes(ctx, primary: Sweep, xla_pays: bool, clock) -> Iterator:
    """Returns the settings' per-round samples, the precision's fidelity, the cold start and the combined run."""
    settings, measured = settings_to_try(ctx)
    modules = list(ctx.inventory.get("op_libraries") or []) + list(ctx.options.get("imports") or [])
    first_batch, batch = primary.points[0]["batch"], primary.serving_batch
    tmp = tempfile.mkdtemp(prefix="tfaudit-serving-")
    helpers: dict[Setting, Helper] = {}
    try:
        feeds = {b: write_feeds(os.path.join(tmp, f"batch{b}.npz"), [feed_of(ctx, b, seed=3)]) for b in {first_batch, batch}}
        failures: dict[str, str] = {}
        noise = noise_timing(ctx, feeds, noise_batches(primary))
        cold = yield from start_processes(ctx, settings, modules, feeds[first_batch], noise, helpers, failures)
        clock("processes started")
        # First the fresh processes: how far apart they run (each against the host reference) is the spread every
        # comparison of two processes below must allow for.
        measured["cold_start"] = yield from cold_start(ctx, tmp, modules, cold, feeds, primary, noise)
        clock("cold start")
        spread = between_processes(measured["cold_start"], noise_batches(primary))
        calls = turn_calls(primary.point(batch)["p50_ms"])
        measured["settings"] = yield from compare_settings(ctx, helpers, feeds[batch], batch, calls, failures, spread.get(batch, 0.0))
        if measured["settings"]:
            measured["precision_fidelity"] = precision_fidelity(ctx, helpers, measured["settings"], tmp, failures)
            yield Progress(0.86, "settings judged")
        measured["settings_failed"] = failures
        best = best_setting(measured, batch, max_fidelity_loss(ctx), ctx.budget.confidence)
        clock("settings timed")
        try:
            measured["combined"], measured["combined_error"] = combine(
                ctx, helpers, best, xla_pays, feeds, first_batch, batch, turn_calls(primary.points[0]["p50_ms"]), calls,
                max(spread.values(), default=0.0)), ""
        except HelperFailed as exc:
            measured["combined"], measured["combined_error"] = {}, str(exc)
        clock("combined")
        return measured
    finally:
        for helper in helpers.values():
            helper.close()
        shutil.rmtree(tmp, ignore_errors=True)


def settings_to_try(ctx) -> tuple[list[Setting], dict[str, Any]]:
    """The defaults, the thread counts, bfloat16 where the CPU computes it, oneDNN flipped (not at quick); and why any is left out."""
    settings = [Setting(), *thread_settings(os.cpu_count() or 1)]
    precision_ok, precision_why = bf16_cpu_support()
    if precision_ok:
        settings.append(Setting(precision="bfloat16"))
    measured: dict[str, Any] = {"precision_support": precision_why}
    if budget_key(ctx) == "quick":
        measured["onednn"] = "not measured at --budget quick (it needs a fresh interpreter, ~4 s of import)"
    else:
        current = os.environ.get("TF_ENABLE_ONEDNN_OPTS", "1")
        settings.append(Setting(onednn="0" if current != "0" else "1"))
    return settings, measured


def start_processes(ctx, settings: list[Setting], modules: list[str], first_feed: str, noise: dict, helpers: dict,
                    failures: dict) -> Iterator:
    """A serving process per setting, in ``helpers`` once its model loaded; returns the defaults' first request (a cold start)."""
    cold: list[dict] = []
    opening: dict[Setting, Helper] = {}
    # The defaults' process loads alone (its first request is a cold start, timed), the others all at once.
    for position, setting in enumerate(settings):
        yield Progress(0.5 + 0.2 * position / len(settings), f"starting a process: {setting.label()}")
        try:
            helper = helper_process(env=None if setting.onednn is None else {"TF_ENABLE_ONEDNN_OPTS": setting.onednn})
            helper.deadline_for(time.monotonic(), ctx.budget)
            helper.send(f"loading the model ({setting.label()})", helper_open,
                        model=ctx.model.path, signature=ctx.model.signature, modules=modules, device="/CPU:0",
                        intra=setting.intra, inter=setting.inter, precision=setting.precision, first_feed=first_feed,
                        **(noise if setting.default else {}))
        except (HelperFailed, OSError) as exc:
            failures[setting.label()] = str(exc)
            continue
        opening[setting] = helper
        if setting.default:
            opened(helper, setting, helpers, failures, cold)
    for setting, helper in opening.items():
        if not setting.default:
            opened(helper, setting, helpers, failures, cold)
    return cold


def opened(helper: Helper, setting: Setting, helpers: dict, failures: dict, cold: list) -> None:
    """The helper's answer to helper_open: kept when the model loaded, its failure said otherwise."""
    try:
        reply = helper.receive()
    except (HelperFailed, OSError) as exc:
        failures[setting.label()] = str(exc)
        return
    if "error" in reply:
        failures[setting.label()] = reply["error"]
        helper.close()
        return
    helpers[setting] = helper
    if setting.default:
        cold.append(reply)


class Turn:
    """One side of a comparison in a serving process: ``calls`` calls there, timed there (``self_timed``: no pipe in the time),
    × ``scale`` (the combined run's best side: its time for as many rows as the defaults' turn serves)."""

    def __init__(self, helper: Helper, label: str, feed: str, calls: int, xla: bool = False, scale: float = 1.0):
        self.helper, self.label, self.feed, self.calls, self.xla, self.scale = helper, label, feed, calls, xla, scale
        self.calls_ms: list[float] = []
        self.failed = False

    def __call__(self) -> float:
        try:
            reply = self.helper.call(f"timing {self.label}", helper_turn, feed=self.feed, calls=self.calls, xla=self.xla)
            if "error" in reply:
                raise HelperFailed(reply["error"])
        except HelperFailed:
            self.failed = True
            raise
        self.calls_ms += reply["calls_ms"]
        return reply["ms"] * self.scale


def between_processes(cold: dict | None, batches: list[int]) -> dict[int, float]:
    """Per batch timed (``batches``, the noise timing's order), the sd of a process's log speed between the fresh processes
    (each against the host reference in turn); {} with fewer than two."""
    ratios = process_ratios(fresh_processes(cold))
    return {} if ratios is None else {b: one["spread_pct"] / 100.0 for b, one in zip(batches, ratios)}


def compare_settings(ctx, helpers: dict, feed: str, batch: int, calls: int, failures: dict, between_sd: float) -> Iterator:
    """Each setting's process against the defaults' at the serving batch, in ABBA turns of ``calls`` calls until decided past
    SETTING_MINIMUM and SETTING_HALVES, or the cap (the budget's timing time, shared by the settings left), allowing for
    ``between_sd`` between processes: per setting, the rounds and both sides' calls."""
    default = helpers.get(Setting())
    rows: list[dict[str, Any]] = []
    others = [setting for setting in helpers if not setting.default]
    deadline = time.monotonic() + ctx.budget.timing_seconds  # shared: what one setting decides early, the next may spend
    for position, setting in enumerate(others):
        if default is None:
            break
        yield Progress(0.75 + 0.1 * position / len(others), f"settings in turn with the defaults: {setting.label()}")
        base, candidate = Turn(default, "the defaults", feed, calls), Turn(helpers[setting], setting.label(), feed, calls)
        try:
            _, rounds = compare_in_turn(base, candidate, (text.SETTING_MINIMUM, text.SETTING_HALVES), warmup=ctx.budget.warmup,
                                        max_seconds=max(0.0, deadline - time.monotonic()) / (len(others) - position),
                                        confidence=ctx.budget.confidence, self_timed=True, between_sd=between_sd)
        except HelperFailed as exc:
            failed = Setting() if base.failed else setting
            failures[failed.label()] = str(exc)
            helpers.pop(failed).close()
            default = helpers.get(Setting())
            continue
        rows.append({"setting": setting.measured(), "batch": batch, "calls_per_turn": calls, "rounds": rounds.to_json(),
                     "confidence": ctx.budget.confidence, "default_ms": thinned(base.calls_ms), "ms": thinned(candidate.calls_ms)})
    return rows


def precision_fidelity(ctx, helpers: dict, rows: list[dict[str, Any]], tmp: str, failures: dict) -> dict[str, Any]:
    """Each compared precision's outputs against the defaults' process on the same inputs: {precision: fidelity}."""
    found: dict[str, Any] = {}
    reference = None
    for row in rows:
        setting = Setting(**row["setting"])
        if setting.precision == "float32":
            continue
        try:
            if reference is None:
                feeds_path = write_feeds(os.path.join(tmp, "eval.npz"), eval_feeds(ctx))
                reference = outputs_of(helpers[Setting()], "defaults", feeds_path, os.path.join(tmp, "reference.npz"))
            candidate = outputs_of(helpers[setting], setting.label(), feeds_path, os.path.join(tmp, "precision.npz"))
        except (HelperFailed, KeyError) as exc:  # a helper that died or was dropped: no fidelity, no claim
            failures[setting.label()] = f"outputs not compared: {exc}"
            continue
        found[setting.precision] = fidelity(reference, candidate)
    return found


def outputs_of(helper: Helper, label: str, feeds: str, out: str) -> list[dict]:
    """The helper's outputs on ``feeds``; HelperFailed when it cannot give them."""
    reply = helper.call(f"outputs ({label})", helper_outputs, feeds=feeds, out=out)
    if "error" in reply:
        raise HelperFailed(reply["error"])
    return read_feeds(out)


def combine(ctx, helpers: dict, best: Setting | None, xla_pays: bool, feeds: dict, first_batch: int, batch: int,
            first_calls: int, calls: int, between_sd: float) -> dict[str, Any]:
    """The best of each knob together against the defaults at the first batch, per row (each side's turn of about TURN_MS,
    the best side's time scaled to the defaults' rows), in ABBA turns until decided past SETTING_MINIMUM ({} when nothing is
    to combine)."""
    default = helpers.get(Setting())
    chosen = helpers.get(best) if best else default
    if default is None or chosen is None or (chosen is default and batch == first_batch and not xla_pays):
        return {}
    base = Turn(default, "the defaults", feeds[first_batch], first_calls)
    together = Turn(chosen, "the best configuration", feeds[batch], calls, xla=xla_pays, scale=first_calls * first_batch / (calls * batch))
    between = between_sd if chosen is not default else 0.0  # the defaults' own process on both sides: no second draw
    _, rounds = compare_in_turn(base, together, text.SETTING_MINIMUM, warmup=ctx.budget.warmup, max_seconds=ctx.budget.timing_seconds / 4,
                                confidence=ctx.budget.confidence, self_timed=True, between_sd=between)
    return {"first_batch": first_batch, "batch": batch, "setting": (best or Setting()).measured(), "xla": xla_pays,
            "default_ms": thinned(base.calls_ms), "best_ms": thinned(together.calls_ms), "rounds": rounds.to_json(),
            "confidence": ctx.budget.confidence}
