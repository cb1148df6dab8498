"""Fidelity of a converted model against the SavedModel, and the top-1 statistics (pure: NumPy only).

Fidelity is always measured against the original SavedModel on the same inputs:

- ``relative_l2``: ‖candidate − reference‖ / ‖reference‖ over every float output, flattened;
  this is the "fidelity loss" the findings, the bound and the charts use;
- ``max_abs``, ``cosine``;
- ``top1_agreement`` (all samples) and ``top1`` (the statistics below) when an output looks
  like class scores ([batch, classes], classes ≥ 2).

Top-1 flips are judged with statistics, not one flip. A flip counts as a fidelity loss only
when the reference's top-1 margin (best minus second-best score) is more than
``NEAR_TIE_FACTOR`` × the variant's typical per-sample output error (the median over samples of
the largest absolute output change): a swap within that margin is what an error of the measured
size produces on a near tie, and the relative L2 bound already judges that error. The counted
disagreement rate gets a 95 % Wilson interval: the top-1 bound (agreement ≥ 1 − bound) is
"within" when the interval's upper end is at most the bound, "beyond" when its lower end is
above it, else "unresolved" (too few samples: the quantization check then measures more, up to
its budget) and judged on the point estimate.

A variant is within the bound ``max_fidelity_loss`` (option, default 0.01) when its relative L2
error is at most the bound and, for class scores, the top-1 bound is not broken.
"""
from __future__ import annotations

from string import Template
from typing import Any

import numpy as np

DEFAULT_MAX_FIDELITY_LOSS = 0.01
MIB = 1024 * 1024
NEAR_TIE_FACTOR = 2.0  # a swap of two scores needs a change of at most twice the largest one
Z95 = 1.959964

TOP1_UNCHANGED = Template("top-1 class: $unchanged/$samples samples unchanged")
TOP1_NEAR_TIES = Template(" ($flips flip(s) on near ties — reference margin ≤ $margin, ${factor}× the variant's typical output error — not counted)")
TOP1_AGREEMENT = Template("; counted agreement $agreement, 95 % interval [$low, $high] vs ≥ $wanted: ")
TOP1_UNRESOLVED = Template("not resolved with $samples samples (about $needed flip-free ones would), judged on the point estimate")
TOP1_RESOLVED = Template("$verdict the bound")


def mb(nbytes: float) -> float:
    return round(nbytes / MIB, 4)


def _float_outputs(outputs: list[dict[str, np.ndarray]], names: list[str]) -> list[np.ndarray]:
    return [np.asarray(out[name], dtype=np.float64) for out in outputs for name in names]


def fidelity(reference: list[dict[str, np.ndarray]], candidate: list[dict[str, np.ndarray]]) -> dict[str, Any]:
    """The metrics above, over every float output of every feed."""
    names = sorted(k for k, v in reference[0].items() if np.issubdtype(np.asarray(v).dtype, np.floating))
    if not names:  # integer or string outputs: exact agreement is the only measure
        same = all(np.array_equal(r[k], c[k]) for r, c in zip(reference, candidate) for k in r)
        return {"relative_l2": 0.0 if same else 1.0, "max_abs": None, "cosine": None, "top1_agreement": None}
    ref = np.concatenate([x.ravel() for x in _float_outputs(reference, names)])
    got = np.concatenate([x.ravel() for x in _float_outputs(candidate, names)])
    if not (np.all(np.isfinite(got)) and ref.shape == got.shape):
        return {"relative_l2": float("inf"), "max_abs": float("inf"), "cosine": 0.0, "top1_agreement": 0.0 if _classes(reference, names) else None}
    ref_norm, got_norm = np.linalg.norm(ref), np.linalg.norm(got)
    diff = np.linalg.norm(got - ref)
    result = {
        "relative_l2": float(diff / ref_norm) if ref_norm > 0 else float(diff > 0),
        "max_abs": float(np.max(np.abs(got - ref))),
        "cosine": float(ref @ got / (ref_norm * got_norm)) if ref_norm > 0 and got_norm > 0 else float(ref_norm == got_norm),
        "top1_agreement": None,
    }
    scores = _classes(reference, names)
    if scores:
        result["top1"] = top1_statistics(reference, candidate, scores)
        result["top1_agreement"] = 1.0 - result["top1"]["flips"] / result["top1"]["samples"]
    return {k: (round(v, 6) if isinstance(v, float) else v) for k, v in result.items()}


def _classes(reference: list[dict], names: list[str]) -> str | None:
    """The first output shaped like class scores: [batch, classes] with classes >= 2."""
    return next((n for n in names if reference[0][n].ndim == 2 and reference[0][n].shape[-1] >= 2), None)


def top1_statistics(reference: list[dict], candidate: list[dict], scores: str) -> dict[str, Any]:
    """Top-1 flips per sample, with near ties (see the module docstring) set apart."""
    ref = np.concatenate([np.asarray(r[scores], np.float64) for r in reference])
    got = np.concatenate([np.asarray(c[scores], np.float64) for c in candidate])
    ordered = np.sort(ref, axis=-1)
    margin = ordered[:, -1] - ordered[:, -2]
    near_tie = NEAR_TIE_FACTOR * float(np.median(np.max(np.abs(got - ref), axis=-1)))
    flipped = ref.argmax(-1) != got.argmax(-1)
    ties = flipped & (margin <= near_tie)
    return {
        "compared": f"top-1 class of output {scores!r} per sample, candidate vs SavedModel",
        "samples": int(len(ref)),
        "flips": int(flipped.sum()),
        "near_tie_flips": int(ties.sum()),
        "near_tie_margin": round(near_tie, 8),
        "counted_flips": int(flipped.sum() - ties.sum()),
        "flipped_margins": [round(float(m), 8) for m in margin[flipped][:10]],
    }


def wilson(count: int, n: int) -> tuple[float, float]:
    """95 % Wilson score interval of a proportion count/n."""
    if n <= 0:
        return 0.0, 1.0
    p = count / n
    centre = (p + Z95**2 / (2 * n)) / (1 + Z95**2 / n)
    half = Z95 * np.sqrt(p * (1 - p) / n + Z95**2 / (4 * n * n)) / (1 + Z95**2 / n)
    return max(0.0, float(centre - half)), min(1.0, float(centre + half))


def top1_verdict(top1: dict[str, Any], bound: float) -> dict[str, Any]:
    """The counted disagreement against the bound: within / beyond / unresolved, and how sure."""
    n, k = top1["samples"], top1["counted_flips"]
    low, high = wilson(k, n)
    verdict = "within" if high <= bound else "beyond" if low > bound else "unresolved"
    # Flip-free samples the upper end needs to reach the bound: z²(1 − b)/b.
    needed = int(np.ceil(Z95**2 * (1 - bound) / bound)) if bound > 0 else None
    return {
        "agreement": round(1 - k / n, 6),
        "agreement_ci95": [round(1 - high, 6), round(1 - low, 6)],
        "verdict": verdict,
        "passes": verdict == "within" or (verdict == "unresolved" and k / n <= bound),
        "flip_free_samples_to_resolve": needed,
    }


def top1_text(fid: dict[str, Any], bound: float) -> str:
    """One sentence: what was compared, what flipped, and how sure the verdict is."""
    top1 = fid.get("top1")
    if not top1:
        return ""
    judged = top1_verdict(top1, bound)
    low, high = judged["agreement_ci95"]
    text = TOP1_UNCHANGED.substitute(unchanged=top1["samples"] - top1["flips"], samples=top1["samples"])
    if top1["near_tie_flips"]:
        text += TOP1_NEAR_TIES.substitute(flips=top1["near_tie_flips"], margin=f"{top1['near_tie_margin']:.2g}", factor=f"{NEAR_TIE_FACTOR:g}")
    text += TOP1_AGREEMENT.substitute(agreement=f"{judged['agreement']:.1%}", low=f"{low:.1%}", high=f"{high:.1%}", wanted=f"{1 - bound:.0%}")
    if judged["verdict"] == "unresolved":
        return text + TOP1_UNRESOLVED.substitute(samples=top1["samples"], needed=judged["flip_free_samples_to_resolve"])
    return text + TOP1_RESOLVED.substitute(verdict=judged["verdict"])


def within_bound(fid: dict[str, Any] | None, bound: float) -> bool:
    if not fid:
        return False
    if fid.get("top1"):
        return fid["relative_l2"] <= bound and top1_verdict(fid["top1"], bound)["passes"]
    top1 = fid.get("top1_agreement")
    return fid["relative_l2"] <= bound and (top1 is None or top1 >= 1 - bound)
