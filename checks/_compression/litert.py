"""Running flatbuffers with LiteRT in the helper process: outputs on the fidelity feeds, and latency.

A LiteRT crash (it segfaults on a state variable of unknown shape) ends one measurement, not the
check. A candidate is timed call by call in turn with its baseline when one is given, so their
comparison sees the same moments of a shared host. ``remeasure`` does the same for a --fix-dir artifact.
"""
from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from tfaudit.api import HelperCrashed as ConversionCrashed
from tfaudit.api import HelperFailed as ConversionFailed
from tfaudit.api import INTERVAL_LEVEL, Timing, compare_in_turn, host_reference, one_line, time_in_turn

from .feeds import latency_feed, read_feeds, write_feeds
from .agreement import fidelity
from .savedmodel import crash_evidence
from .variants import LATENCY_MINIMUM, Measured, savings, zipped_size

if TYPE_CHECKING:  # pragma: no cover
    from tfaudit.api import Helper

IN_TURN_SHARE = 0.5  # of the budget's measurement time, for a candidate and its baseline timed call by call in turn


def interpreter_runner(content: bytes, signature: str, num_threads: int | None = os.cpu_count() or 1):
    """A signature runner; ``num_threads`` None is LiteRT's own default."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=content, num_threads=num_threads)
    signatures = interpreter.get_signature_list()
    return interpreter.get_signature_runner(signature if signature in signatures else next(iter(signatures)))


def litert_job(model: str, signature: str, feeds: str, out: str, latency: str | None = None, warmup: int = 0,
               repeats: int = 0, max_seconds: float = 0.0, baseline: str | None = None, confidence: float = INTERVAL_LEVEL) -> dict[str, Any]:
    """In the child: time ``model`` on the ``latency`` feed, and write its outputs on ``feeds``.

    With ``baseline`` (another flatbuffer), the two are compared in ABBA rounds until decided past
    ``variants.LATENCY_MINIMUM`` or ``max_seconds`` (tfaudit.api.compare_in_turn): the same moments of the host for both,
    and a decision the judge replays from ``rounds``. Without, the model is timed call by call in turn with the host
    reference (this process converts with TensorFlow, so it has it), whose median is the check's host index: a baseline
    then scales this latency by how fast the host ran, as it does TensorFlow's.
    """
    with open(model, "rb") as f:
        runner = interpreter_runner(f.read(), signature)
    reply: dict[str, Any] = {}
    try:
        if latency:
            request = read_feeds(latency)[0]
            if baseline:
                with open(baseline, "rb") as f:
                    base = interpreter_runner(f.read(), signature)
                _, rounds = compare_in_turn(lambda: base(**request), lambda: runner(**request), LATENCY_MINIMUM, warmup=warmup,
                                            max_seconds=max_seconds, confidence=confidence)
                timing = Timing(tuple(rounds.calls_b), warmup)
                reply.update(baseline_samples_ms=list(rounds.calls_a), rounds=rounds.to_json(), confidence=confidence)
            else:
                timing, reference = time_in_turn(lambda: runner(**request), host_reference(), warmup=warmup, max_seconds=max_seconds,
                                                 max_rounds=repeats)
                reply["reference_samples_ms"] = list(reference.samples_ms)
            reply["samples_ms"] = list(timing.samples_ms)
            reply["warmup"] = warmup
        write_feeds(out, [runner(**feed) for feed in read_feeds(feeds)])
    except Exception as exc:  # LiteRT raises RuntimeError/ValueError with the failing node
        if "Flex delegate" in str(exc):
            return {"error": "converted only with SELECT_TF_OPS, and this LiteRT build has no Flex delegate to run those ops"}
        return {"error": f"converted, but the LiteRT interpreter cannot run it: {one_line(exc)}"}
    return reply


class LiteRT:
    """Runs flatbuffers in the isolated process: a LiteRT crash ends one measurement, not the check."""

    def __init__(self, ctx, isolated: Helper, tmpdir: str, feeds: list[dict], reference: list[dict]):
        self.ctx, self.isolated, self.tmpdir = ctx, isolated, tmpdir
        self.feeds, self.reference = feeds, reference
        self.feeds_path = write_feeds(os.path.join(tmpdir, "feeds.npz"), feeds)
        self.latency_path = write_feeds(os.path.join(tmpdir, "latency.npz"), [latency_feed(ctx)])

    def outputs(self, model: str, feeds_path: str, latency: bool = False, what: str = "",
                baseline: str | None = None) -> tuple[list[dict], Any, Any, dict, Any]:
        """(outputs on the feeds, Timing or None, the baseline's Timing timed in turn or None, the comparison's rounds and
        confidence or {}, the host reference's Timing timed in turn or None); raises ConversionFailed / ConversionCrashed."""
        out = os.path.join(self.tmpdir, "outputs.npz")
        budget = self.ctx.budget
        timing = {"latency": self.latency_path, "warmup": budget.warmup, "repeats": budget.repeats, "max_seconds": budget.timing_seconds} if latency else {}
        if latency and baseline:
            timing.update(baseline=baseline, max_seconds=budget.timing_seconds * IN_TURN_SHARE, confidence=budget.confidence)
        reply = self.isolated.call(f"running {what or os.path.basename(model)} in LiteRT", litert_job,
                                   model=model, signature=self.ctx.model.signature, feeds=feeds_path, out=out, **timing)
        if "error" in reply:
            raise ConversionFailed(reply["error"])
        made = lambda key: Timing(tuple(reply[key]), reply["warmup"]) if key in reply else None  # noqa: E731
        compared = {"rounds": reply["rounds"], "confidence": reply["confidence"]} if "rounds" in reply else {}
        return read_feeds(out), made("samples_ms"), made("baseline_samples_ms"), compared, made("reference_samples_ms")

    def measure(self, result: Measured, model: str, baseline: str | None = None) -> Measured:
        """Size, latency (LiteRT, threads = host cores) and fidelity of the flatbuffer at ``model``; errors land in ``result.error``.

        With ``baseline``, the latency is timed call by call in turn with that flatbuffer (``result.baseline_timing``).
        """
        result.size_bytes = os.path.getsize(model)
        try:
            result.outputs, result.timing, result.baseline_timing, result.compared, result.reference_timing = self.outputs(
                model, self.feeds_path, latency=True, what=result.name, baseline=baseline)
            result.fidelity = fidelity(self.reference, result.outputs)
        except ConversionCrashed as exc:
            result.timing = None
            result.error = f"converted, but LiteRT crashed running it: {exc}"
            result.extra["crash"] = {"stage": "LiteRT run", **crash_evidence(self.ctx, exc)}
        except ConversionFailed as exc:
            result.timing = None
            result.error = str(exc)
        return result


def remeasure(litert: "LiteRT", baseline: str, artifact: str, size_key: str = "size_bytes") -> tuple[dict, dict]:
    """(verified savings, evidence) of the flatbuffer at ``artifact`` against ``baseline``, both read from disk now.

    A fresh LiteRT interpreter runs each, timed call by call in turn; sizes and zipped sizes are of
    the files; fidelity is against the SavedModel.
    """
    made = litert.measure(Measured("artifact"), artifact, baseline=baseline)
    base = Measured("baseline", size_bytes=os.path.getsize(baseline), timing=made.baseline_timing)
    for measured, path in ((made, artifact), (base, baseline)):
        with open(path, "rb") as f:
            measured.zipped_bytes = zipped_size(f.read())
    verified, comparison = savings(base, made, size_key)
    evidence = {
        "artifact_bytes": made.size_bytes, "baseline_bytes": base.size_bytes,
        "artifact_zipped_bytes": made.zipped_bytes, "baseline_zipped_bytes": base.zipped_bytes,
        "fidelity": made.fidelity, "error": made.error or None, **comparison,
    }
    return verified, evidence
