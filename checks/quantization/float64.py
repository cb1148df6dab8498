"""float64 weights or signature tensors: what they cost, measured on the graph re-typed to float32 (pure: no TensorFlow).

``retyped`` (the TensorFlow side) times the serving graph frozen as it is and with every float64
re-typed to float32 in ABBA rounds until decided; a latency saving is claimed only when float32 is
decided faster past ``catalogue.FLOAT32_MINIMUM`` (a record from before the rounds is judged on
rounds of its calls).
"""
from __future__ import annotations

from typing import Any

from tfaudit.api import Finding, Measure, Support, Timing, compare, decide, record_confidence, rounds_of_calls

from . import catalogue as text
from .catalogue import RULES
from .snippets import float64_fix_code

MIB = 1024 * 1024


def twin_latency(twin: dict[str, Any], budget: str) -> dict[str, Any]:
    """The float64 graph against its float32 twin: medians, speed-up, verdict, and ``saved`` (ms, %, the decision's support)
    when float32 is faster."""
    if "error" in twin:
        return {"reason": text.FLOAT64_NOT_MEASURABLE.substitute(error=twin["error"])}
    t64, t32 = (Timing(tuple(twin[dtype]["samples_ms"]), twin[dtype]["warmup"]) for dtype in ("float64", "float32"))
    comparison = compare(t64, t32)
    rounds = twin.get("rounds") or rounds_of_calls(t64.samples_ms, t32.samples_ms)
    decision = decide(rounds, text.FLOAT32_MINIMUM, record_confidence(twin, budget))
    faster = decision.outcome == "faster"
    if faster:
        verdict = text.FLOAT32_FASTER
    elif decision.outcome == "slower":
        verdict = text.FLOAT32_SLOWER
    elif decision.outcome == "same":
        verdict = text.NO_DIFFERENCE_WORTH_CLAIMING.substitute(minimum=f"{100 * text.FLOAT32_MINIMUM.relative:g}")
    else:
        verdict = text.UNDECIDED
    result: dict[str, Any] = {
        "median_ms": {"float64": round(t64.median_ms, 4), "float32": round(t32.median_ms, 4)},
        "float64": t64.summary(),
        "float32": t32.summary(),
        "speedup": round(comparison.speedup.value, 3),
        "saved_pct": [round(comparison.saved_pct.value, 1), round(comparison.saved_pct.low, 1), round(comparison.saved_pct.high, 1)],
        "verdict": verdict,
        "decision": decision.describe("float32", "float64"),
        "support": round(decision.support, 4),
        "method": text.TWIN_METHOD,
        "decided_by": decision.method,
    }
    if faster:
        result["saved"] = (comparison.saved_ms, comparison.saved_pct, Support.decided(decision))
    return result


def float64_finding(m: dict[str, Any]) -> Finding:
    """float64 variables, inputs or outputs: double the bytes of float32, and slow or unsupported kernels."""
    measured = m["float64"]
    f64, tensors = measured["variables"], measured["signature_tensors"]
    evidence: dict[str, Any] = {
        "float64_variables": f64,
        "float64_signature_tensors": tensors,
        "variable_bytes_by_dtype": measured["variable_bytes_by_dtype"],
        "bytes_saved_as_float32": f64["bytes"] // 2,
    }
    saved = {}
    if f64["bytes"]:
        saved["size_bytes"] = Measure(float(f64["bytes"] // 2), projected=True)
        total = m["savedmodel"]["size_bytes"] or 0
        if total:
            saved["size_pct"] = Measure(round(100.0 * (f64["bytes"] // 2) / total, 2), projected=True)
            evidence["size_pct_of"] = text.SIZE_PCT_OF_SAVEDMODEL
    latency = twin_latency(measured["twin"], m["budget"])
    evidence["latency"] = latency
    support = Support.exact(f64["bytes"] // 2, 1, text.FLOAT64_COUNTED) if f64["bytes"] else None
    if latency.get("saved") is not None:
        saved["latency_ms"], saved["latency_pct"], support = latency.pop("saved")
    if "median_ms" in latency:
        said = text.FLOAT64_MEASURED.substitute(float64_ms=f"{latency['median_ms']['float64']:.3f}",
                                                float32_ms=f"{latency['median_ms']['float32']:.3f}", verdict=latency["verdict"])
    else:
        said = text.FLOAT64_LATENCY_REASON.substitute(reason=latency.get("reason", "not measured"))
    return RULES["quantization/float64"].finding(
        evidence, severity="medium" if f64["bytes"] >= MIB else "low", savings=saved, support=support,
        what=text.FLOAT64_WEIGHTS if f64["count"] else text.FLOAT64_TENSORS, count=f64["count"], parameters=f"{f64['parameters']:,}",
        nbytes=f"{f64['bytes']:,}", half=f"{f64['bytes'] // 2:,}",
        tensors=text.FLOAT64_SIGNATURE_TENSORS.substitute(tensors=", ".join(tensors)) if tensors else "", latency=said,
        code=float64_fix_code(m["model"], m["inputs"]["specs"]),
    )
