"""Which variant to recommend, and whether the float32 baseline can be trusted (pure: no TensorFlow).

The recommendation is the variant within the fidelity bound with the largest benefit as
tfaudit.report.priority counts it (latency % when the ms saved reach 0.05, + ½ size %, against
the float32 TFLite model); variants whose benefit intervals overlap the best's low end are tied
within noise, and the tie goes to the lower measured fidelity loss, then the smaller file.
"""
from __future__ import annotations

from typing import Any

from .._compression.agreement import within_bound
from .._compression.variants import Measured, benefit_points, savings

VARIANTS = ("float32", "float16", "dynamic-range-int8", "full-int8", "int16x8")
RESOURCE_OP_MARKERS = ("READ_VARIABLE", "VAR_HANDLE", "ASSIGN_VARIABLE")


def float32_broken(result: Measured, bound: float) -> bool:
    """The float32 flatbuffer converted but does not reproduce the SavedModel: outputs beyond the bound, or resource variables LiteRT cannot read."""
    if result.extra.get("crash") or not result.size_bytes:
        return False
    if result.fidelity is not None:
        return not within_bound(result.fidelity, bound)
    return any(op in result.error for op in RESOURCE_OP_MARKERS)


def rank_variants(base: Measured, results: dict[str, Measured], bound: float):
    """(the recommended variant, the variants tied with the best within noise, the ranking table).

    Each variant within the bound scores benefit points (latency % when its ms are practical,
    plus ½ size %) at both ends of its measured interval. The best is the highest low end;
    variants whose high end reaches it are tied within noise, and the tie goes to the lower
    measured fidelity loss, then the smaller file, then the name: never to the run's noise.
    """
    scored: list[dict[str, Any]] = []
    for name, result in results.items():
        if name == "float32" or not result.ran or not within_bound(result.fidelity, bound):
            continue
        saved, latency = savings(base, result)
        scored.append({
            "name": name, "points": round(benefit_points(saved), 3), "points_high": round(benefit_points(saved, "high"), 3),
            "fidelity_loss": result.loss, "size_bytes": result.size_bytes, "saved": saved, "latency": latency,
        })
    ranking = [{k: c[k] for k in ("name", "points", "points_high", "fidelity_loss", "size_bytes")} for c in scored]
    if not scored or max(c["points"] for c in scored) <= 0:
        return None, [], ranking
    best = max(c["points"] for c in scored)
    tied = sorted((c for c in scored if c["points_high"] >= best), key=lambda c: (c["fidelity_loss"], c["size_bytes"], c["name"]))
    return tied[0], [c["name"] for c in tied], ranking


def selective_savings(base: Measured, selective: Measured | None, bound: float) -> dict:
    """What the selective variant saves against float32 when it is within the bound and smaller (keeping
    every layer in float, as on the demo at the standard budget, saves nothing)."""
    if selective is None or not selective.ran or not within_bound(selective.fidelity, bound):
        return {}
    saved = savings(base, selective)[0]
    return saved if saved.get("size_bytes") and saved["size_bytes"].value > 0 else {}


def top1_candidates(results: dict[str, Measured], bound: float) -> list[str]:
    """The variants whose unresolved top-1 verdict could change the recommendation, the most promising first:
    within the L2 bound, with top-1 statistics, saving something at the high end of their interval."""
    base = results["float32"]
    candidates = []
    for name, result in results.items():
        if name == "float32" or not result.ran or not result.fidelity.get("top1") or result.loss > bound or not base.ran:
            continue
        points = benefit_points(savings(base, result)[0], "high")
        if points > 0:
            candidates.append((-points, name))
    return [name for _, name in sorted(candidates)]
