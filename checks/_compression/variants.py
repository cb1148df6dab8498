"""Measured variants and what switching to one saves, as the rankings count it (pure: no TensorFlow).

A ``Measured`` is one converted model's size, LiteRT latency and fidelity; ``to_data`` and
``from_data`` carry it through a check's measurements, so a judge decides from the per-call
latencies, not only their summaries.
"""
from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tfaudit.api import MIN_PRACTICAL_LATENCY_MS, Measure, PracticalMinimum, Sample, Support, compare, decide

from .agreement import MIB, mb

# A variant's LiteRT latency against its baseline's, timed in ABBA rounds until decided past this (litert_job)
SAMPLE_DECIMALS = 6  # milliseconds to the nanosecond: perf_counter's resolution, so rounding loses nothing measured
LATENCY_MINIMUM = PracticalMinimum(0.10, absolute_ms=MIN_PRACTICAL_LATENCY_MS,
                                   why="10 % of a call and 0.05 ms, the least latency saving worth claiming beside the bytes")


@dataclass
class Measured:
    """One TFLite model measured: size, latency and fidelity (None when not measurable, with why)."""

    name: str
    size_bytes: int | None = None
    zipped_bytes: int | None = None
    timing: Any = None  # tfaudit.api.Timing
    fidelity: dict[str, Any] | None = None
    error: str = ""  # why it did not convert or run
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    saved_model_dir: str = ""  # where a pruned model was written, for reuse; not evidence
    baseline_timing: Any = None  # the baseline timed in turn with this model, when it was; not evidence
    reference_timing: Any = None  # the host reference (tfaudit.api.host_reference) timed in turn with it, when it was
    compared: dict[str, Any] = field(default_factory=dict)  # those turns' rounds and confidence (compare_in_turn), when timed so
    outputs: list[dict] | None = None  # LiteRT outputs on the fidelity feeds; not evidence

    @property
    def ran(self) -> bool:
        return self.timing is not None and self.fidelity is not None

    @property
    def loss(self) -> float | None:
        return self.fidelity["relative_l2"] if self.fidelity else None

    def summary(self) -> dict[str, Any]:
        row: dict[str, Any] = {"size_bytes": self.size_bytes, "size_mb": mb(self.size_bytes) if self.size_bytes else None}
        if self.zipped_bytes is not None:
            row["zipped_bytes"] = self.zipped_bytes
        row["latency"] = self.timing.summary() if self.timing is not None else None
        row["fidelity"] = self.fidelity
        if self.error:
            row["error"] = self.error
        if self.note:
            row["note"] = self.note
        row.update(self.extra)
        return row

    def to_data(self) -> dict[str, Any]:
        """What a check's measurements keep of it: plain data, the per-call latencies included."""
        data: dict[str, Any] = {"name": self.name, "size_bytes": self.size_bytes}
        if self.zipped_bytes is not None:
            data["zipped_bytes"] = self.zipped_bytes
        for key, timing in (("latency", self.timing), ("baseline_latency", self.baseline_timing), ("reference_latency", self.reference_timing)):
            if timing is not None:
                data[key] = {"samples_ms": [round(ms, SAMPLE_DECIMALS) for ms in timing.samples_ms], "warmup": timing.warmup}
        data.update(fidelity=self.fidelity, error=self.error, note=self.note, extra=self.extra)
        if self.compared:
            data["latency_compared"] = self.compared
        return data

    @classmethod
    def from_data(cls, data: dict[str, Any]) -> "Measured":
        """The inverse of ``to_data``; a loss JSON could not spell (None: NaN or infinite outputs) reads as infinite again."""
        from tfaudit.api import Timing

        def timing(key: str) -> Any:
            stored = data.get(key)
            return Timing(tuple(stored["samples_ms"]), stored["warmup"]) if stored else None

        fid = data.get("fidelity")
        if fid is not None and fid.get("relative_l2") is None:
            fid = {**fid, "relative_l2": float("inf"), "max_abs": float("inf") if fid.get("max_abs") is None else fid["max_abs"]}
        return cls(data["name"], size_bytes=data.get("size_bytes"), zipped_bytes=data.get("zipped_bytes"), timing=timing("latency"),
                   fidelity=fid, error=data.get("error", ""), note=data.get("note", ""), extra=dict(data.get("extra") or {}),
                   baseline_timing=timing("baseline_latency"), reference_timing=timing("reference_latency"),
                   compared=dict(data.get("latency_compared") or {}))


def zipped_size(content: bytes) -> int:
    """Size after zip at deflate's default level, as tfmot's pruning guide measures a model's compressibility.

    Level 9 took 8× as long (1.9 vs 0.23 s on 5 MB of 50 %-sparse float32) for 1–3 % less.
    """
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("model.tflite", content)
    return len(buffer.getvalue())


def savings(base: Measured, candidate: Measured, size_key: str = "size_bytes") -> tuple[dict, dict]:
    """(Finding.savings, evidence): size always; latency only when the candidate is decided faster past LATENCY_MINIMUM in
    the rounds it was timed in with its baseline (a record from before the rounds: measurably faster, by 0.05 ms)."""
    before, after = getattr(base, size_key), getattr(candidate, size_key)
    result, evidence = {}, {}
    if before and after:
        result["size_bytes"] = Measure(float(before - after))
        result["size_pct"] = Measure(round(100.0 * (before - after) / before, 2))
    base_timing = candidate.baseline_timing or base.timing  # timed in turn with the candidate when it was
    if base_timing is not None and candidate.timing is not None:
        comparison = compare(base_timing, candidate.timing)
        evidence["latency_vs_baseline"] = {
            "speedup": round(comparison.speedup.value, 3),
            "speedup_ci95": [round(comparison.speedup.low, 3), round(comparison.speedup.high, 3)],
        }
        if candidate.compared:
            decision = decide(candidate.compared["rounds"], LATENCY_MINIMUM, candidate.compared["confidence"])
            faster, slower = decision.outcome == "faster", decision.outcome == "slower"
            claimed = faster
            ratio = decision.ratio  # the candidate's time over the baseline's, per round: its inverse is the speed-up
            evidence["latency_vs_baseline"].update(speedup=round(1 / ratio.value, 3), speedup_ci95=[round(1 / ratio.high, 3), round(1 / ratio.low, 3)],
                                                   decision=decision.describe(candidate.name, "the baseline"),
                                                   support=round(decision.support, 4), decided_by=decision.method)
        else:
            faster = comparison.significant and comparison.saved_ms.value > 0
            slower = comparison.significant and comparison.saved_ms.value < 0
            claimed = faster and comparison.saved_ms.value >= MIN_PRACTICAL_LATENCY_MS  # a significant 0.1 µs is not a saving anyone serves
        evidence["latency_vs_baseline"]["verdict"] = "faster" if faster else "slower" if slower else "no significant difference"
        if claimed:
            result["latency_ms"] = comparison.saved_ms
            result["latency_pct"] = comparison.saved_pct
    return result, evidence


def benefit_points(saved: dict, end: str = "low") -> float:
    """What tfaudit.report.priority counts: latency % (when its ms reach MIN_PRACTICAL_LATENCY_MS) + ½ size %.

    ``end`` "low" (conservative, as the ranking counts) or "high": the ends of its interval.
    """
    def at(key: str) -> float:
        m = saved.get(key)
        if m is None:
            return 0.0
        bound = m.low if end == "low" else m.high
        return m.value if bound is None else bound

    latency = 0.0
    if "latency_pct" in saved and at("latency_ms") >= MIN_PRACTICAL_LATENCY_MS:
        latency = max(0.0, at("latency_pct"))
    return latency + 0.5 * max(0.0, at("size_pct"))


def saving_support(saved: dict, counted: str, candidate: Measured | None = None) -> Support | None:
    """The evidence for "a benefit above zero": a size saving is ``counted`` bytes; a latency-only one rests on the
    decision of the rounds ``candidate`` was timed in, or for a record from before the rounds on its interval."""
    if "size_pct" in saved and saved["size_pct"].value > 0:
        return Support.exact(saved["size_pct"].value, 0.0, counted)
    if "latency_ms" in saved:
        if candidate is not None and candidate.compared:
            return Support.decided(decide(candidate.compared["rounds"], LATENCY_MINIMUM, candidate.compared["confidence"]))
        return Support.interval(saved["latency_ms"], MIN_PRACTICAL_LATENCY_MS, "bootstrap")
    return None


def severity_for(saved: dict) -> str:
    """medium: a quarter of the size and at least 1 MiB, or 20 % faster; low: any real saving; else info."""
    size_bytes = saved["size_bytes"].value if "size_bytes" in saved else 0.0
    size_pct = saved["size_pct"].value if "size_pct" in saved else 0.0
    # A latency saving counts only when it is worth a user's notice: at least MIN_PRACTICAL_LATENCY_MS at the low end.
    latency_pct = saved["latency_pct"].low if "latency_pct" in saved and saved["latency_ms"].low >= MIN_PRACTICAL_LATENCY_MS else 0.0
    if (size_pct >= 25 and size_bytes >= MIB) or latency_pct >= 20:
        return "medium"
    if size_bytes >= 100 * 1024 or latency_pct >= 5:
        return "low"
    return "info"


def pareto_frontier(results: list[Measured]) -> list[str]:
    """Variants no other variant beats on size, median latency and fidelity loss at once."""
    points = [(r.name, (r.size_bytes, r.timing.median_ms, r.loss)) for r in results if r.ran and r.size_bytes]
    frontier = []
    for name, p in points:
        dominated = any(all(a <= b for a, b in zip(q, p)) and any(a < b for a, b in zip(q, p)) for _, q in points)
        if not dominated:
            frontier.append(name)
    return frontier


def samples_for(result: Measured, size_bytes: int | None = None):
    """The scatter points of one finished variant."""
    size = size_bytes if size_bytes is not None else result.size_bytes
    if not size:
        return
    if result.timing is not None:
        yield Sample("variant_latency_vs_size", round(result.timing.median_ms, 4), mb(size), result.name)
    if result.fidelity is not None and np.isfinite(result.loss):
        yield Sample("variant_fidelity_vs_size", result.loss, mb(size), result.name)


def shape_text(shape: list | None) -> str:
    """An input's shape as the code snippets print it: [None, 32], () for a scalar, None for an unknown rank."""
    if shape is None:
        return "None"
    return str(list(shape)) if len(shape) else "()"


def representative_code_for(specs: list[dict[str, Any]]) -> str:
    """A representative_dataset function for the converter, for inputs given as {"name", "dtype", "shape"}."""
    shapes = ", ".join(f'"{spec["name"]}": {spec["dtype"]} {shape_text(spec["shape"])}' for spec in specs)
    rows = ", ".join(f'"{spec["name"]}": row["{spec["name"]}"]' for spec in specs)
    return (
        "def representative_dataset():\n"
        f"    # ~100-500 real requests, one row each: {{{shapes}}}\n"
        "    for row in real_rows:\n"
        f"        yield {{{rows}}}\n"
    )
