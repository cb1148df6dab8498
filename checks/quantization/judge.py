"""Quantization's verdicts from what gather measured: the variant to ship, or why none (pure: no TensorFlow).

Every variant is compared with the float32 TFLite model (size, LiteRT latency timed call by call in
turn) and with the SavedModel (fidelity). The float32 model must reproduce the SavedModel first:
when it does not, ``quantization/float32-mismatch`` says so and nothing is recommended.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Any, Iterator

import numpy as np

from tfaudit.api import HOST_INDEX_METRIC, Finding, Metric, Yielded

from .._compression.agreement import mb, top1_text, within_bound
from .._compression.variants import Measured, pareto_frontier, saving_support, severity_for
from . import catalogue as text
from .catalogue import RULES, SELECTIVE
from .float64 import float64_finding
from .ranking import RESOURCE_OP_MARKERS, float32_broken, rank_variants, selective_savings
from .snippets import converter_code, crash_reproduction, float32_fix_code

Ran = Any  # a Measured that ran: its size, timing and fidelity are set, though their types allow None


def judge(m: dict[str, Any]) -> Iterator[Yielded]:
    """The float64 finding, the float32 metrics, then the recommendation (or why none) and full int8's fidelity."""
    if m["float64"] is not None:
        yield float64_finding(m)
    results = {name: Measured.from_data(row) for name, row in m["variants"].items()}
    base, bound = results["float32"], m["max_fidelity_loss"]
    yield from float32_metrics(base)
    common = common_evidence(m, results)
    if float32_broken(base, bound):
        yield float32_mismatch_finding(m, results, common)
        return
    if not base.ran:
        yield not_convertible_finding(m, results, common)
        return
    recommended, tied, ranking = rank_variants(base, results, bound)
    common["ranking"] = ranking
    crashed = [name for name, result in results.items() if result.extra.get("crash")]
    if crashed:
        common["converter_crashed_on"] = crashed
    if recommended is not None:
        chosen = recommended["name"]
        yield Metric("tflite_recommended_size_bytes", recommended["size_bytes"], "bytes", subject=chosen)
        yield Metric("tflite_recommended_fidelity_loss", recommended["fidelity_loss"], "relative L2", subject=chosen)
        yield recommendation_finding(m, results, recommended, tied, common)
    else:
        yield nothing_worth_it_finding(results, bound, common)
    int8 = results["full-int8"]
    if int8.ran and not within_bound(int8.fidelity, bound):
        yield int8_fidelity_finding(m, results, common)


def float32_metrics(result: Measured) -> Iterator[Metric]:
    if result.size_bytes:
        yield Metric("tflite_float32_size_bytes", result.size_bytes, "bytes")
    if result.timing is not None:
        latency = result.timing.median_interval()
        yield Metric("tflite_float32_latency_ms", latency.value, "ms", latency.low, latency.high)
    if result.reference_timing is not None:
        index = result.reference_timing.median_interval()
        yield Metric(HOST_INDEX_METRIC, index.value, "ms", index.low, index.high)


def common_evidence(m: dict[str, Any], results: dict[str, Measured]) -> dict[str, Any]:
    """What every finding but float64's carries: the variant table, the frontier, the bound and the baseline."""
    bound, reexported = m["max_fidelity_loss"], m["reexported"]
    common = {
        "variants": {name: result.summary() for name, result in results.items()},
        "pareto_frontier": pareto_frontier(list(results.values())),
        "max_fidelity_loss": bound,
        "fidelity_bound_means": text.FIDELITY_BOUND_MEANS.substitute(bound=bound, agreement=f"{1 - bound:.0%}"),
        "baseline": text.BASELINE_MEANS,
        "savedmodel_size_bytes": m["savedmodel"]["size_bytes"],
        "budget": m["budget"],
        "inputs": "synthetic" if m["inputs"]["synthetic"] else "--inputs",
    }
    if reexported and "reexport_failed" not in reexported:
        common["converted_from"] = {"what": text.CONVERTED_FROM, **reexported}
    return common


def notes(common: dict[str, Any]) -> dict[str, Any]:
    """The sentences a summary ends with: which variants crashed the converter, and a conversion from a re-export."""
    crashed = common.get("converter_crashed_on")
    return {
        "crash_note": text.CRASH_NOTE.substitute(crashed=", ".join(crashed)) if crashed else "",
        "reexport_note": text.REEXPORT_NOTE if "converted_from" in common else "",
    }


def speed_text(result: Ran, base: Ran, saved: dict, speed: dict) -> str:
    times = {"ms": f"{result.timing.median_ms:.3f}", "base_ms": f"{base.timing.median_ms:.3f}"}
    if "latency_ms" in saved:
        return text.SPEED_FASTER.substitute(times, speedup=f"{speed['speedup']:.2f}")
    if speed.get("verdict") == "slower":
        return text.SPEED_SLOWER.substitute(times, speedup=f"{speed['speedup']:.2f}")
    return text.SPEED_SAME.substitute(times)


def recommendation_finding(m: dict[str, Any], results: dict[str, Measured], recommended: dict, tied: list[str], common: dict) -> Finding:
    name, saved, latency = recommended["name"], recommended["saved"], recommended["latency"]
    result: Ran = results[name]
    base: Ran = results["float32"]
    fid, bound = result.fidelity, common["max_fidelity_loss"]
    others = [n for n in tied if n != name]
    denylisted = (common.get("debugger") or {}).get("denylisted") if name == SELECTIVE else None
    rule = RULES[f"quantization/{name}"]
    return rule.finding(
        {**common, "recommended": name, "tied_within_noise": tied, **latency, "size_pct_of": "float32 TFLite"},
        severity=severity_for(saved), savings=saved,
        risk=replace(rule.risk, level="low" if fid["relative_l2"] > 0 else "none", fidelity_loss=fid["relative_l2"]),
        support=saving_support(saved, text.COUNTED, result),
        size_pct=f"{saved['size_pct'].value:.0f}",
        size_text=text.SIZE_TEXT.substitute(size=f"{mb(result.size_bytes):.2f}", base_size=f"{mb(base.size_bytes):.2f}",
                                            size_pct=f"{saved['size_pct'].value:.0f}"),
        speed_text=speed_text(result, base, saved, latency.get("latency_vs_baseline", {})),
        loss=f"{fid['relative_l2']:.2g}", cosine=f"{fid['cosine']:.4f}", top1=f"; {top1_text(fid, bound)}" if fid.get("top1") else "",
        bound=bound, frontier=", ".join(common["pareto_frontier"]),
        tie=text.TIED.substitute(others=", ".join(others), points=f"{recommended['points']:.1f}") if others else "",
        code=converter_code(m["model"], m["inputs"]["specs"], name, denylisted, result.extra.get("select_tf_ops", False),
                            resave="converted_from" in common),
        **notes(common),
    )


def nothing_worth_it_finding(results: dict[str, Measured], bound: float, common: dict) -> Finding:
    candidates = [n for n in results if n != "float32"]
    failed = [n for n in candidates if not results[n].ran]
    out_of_bound = [n for n in candidates if results[n].ran and not within_bound(results[n].fidelity, bound)]
    return RULES["quantization/no-better-variant"].finding(
        common,
        beyond=text.BEYOND_BOUND.substitute(variants=", ".join(out_of_bound)) if out_of_bound else "",
        failed=text.DID_NOT_RUN.substitute(variants=", ".join(failed)) if failed else "",
        **notes(common),
    )


def not_convertible_finding(m: dict[str, Any], results: dict[str, Measured], common: dict) -> Finding:
    base = results["float32"]
    crash = base.extra.get("crash")
    if crash:
        suspects = crash["suspects"]
        return text.NOT_CONVERTIBLE_CRASH.finding(
            {**common, "crash": crash},
            signal=crash["signal"], stage="conversion" if crash["stage"] == "conversion" else "LiteRT",
            what=text.CRASHED_IN_CONVERTER if crash["stage"] == "conversion" else text.CRASHED_IN_LITERT,
            trigger=text.CRASH_TRIGGER.substitute(suspects="; ".join(suspects), why=crash["suspects_why"]) if suspects else text.CRASH_NO_TRIGGER,
            code=crash_reproduction(m["model"], m["inputs"]["specs"], crash),
        )
    select = base.extra.get("select_tf_ops")
    return RULES["quantization/not-convertible"].finding(
        common,
        outcome=text.CONVERSION_NEEDED_SELECT if select else text.CONVERSION_FAILED, reason=base.error or "unknown",
        sequence_note=text.SEQUENCE_NOTE if m["inputs"]["has_sequence_dims"] else "",
        code=converter_code(m["model"], m["inputs"]["specs"], "float32", select_ops=True),
    )


def mismatch_measured(base: Measured, bound: float) -> str:
    """What the float32 model's outputs measured against the SavedModel, in words."""
    fid = base.fidelity
    if fid is None:
        return text.LITERT_CANNOT_RUN.substitute(error=base.error)
    return text.MISMATCH_MEASURED.substitute(
        loss=f"{fid['relative_l2']:.3g}" if np.isfinite(fid["relative_l2"]) else text.NON_FINITE_LOSS, bound=bound,
        cosine=text.COSINE.substitute(cosine=f"{fid['cosine']:.3g}") if fid.get("cosine") is not None else "",
        top1=text.TOP1_AGREEMENT.substitute(agreement=f"{fid['top1_agreement']:.1%}") if fid.get("top1_agreement") is not None else "",
    )


def mismatch_size(base: Ran, saved_size: int, variables: int, weights_missing: bool, variable_ops: dict) -> str:
    size = text.FLATBUFFER_SIZE.substitute(kib=f"{base.size_bytes / 1024:,.0f}", saved_mb=f"{mb(saved_size):.2f}")
    size += text.VARIABLES_SIZE.substitute(variables_mb=f"{mb(variables):.2f}") if variables else ""
    if weights_missing:
        size += text.WEIGHTS_NOT_IN_IT
        if variable_ops.get("READ_VARIABLE"):
            size += text.READ_VARIABLE_KEPT.substitute(reads=variable_ops["READ_VARIABLE"])
    return size


def mismatch_reexport(reexported: dict | None, retried: dict | None) -> str:
    """What saving the loaded model again did: failed, did not help, or (tried after the mismatch) did not reproduce it either."""
    if reexported and "reexport_failed" in reexported:
        return text.REEXPORT_FAILED.substitute(error=reexported["reexport_failed"])
    if reexported:
        return text.REEXPORT_DID_NOT_HELP
    if retried:
        loss = text.RETRY_LOSS.substitute(loss=f"{retried['fidelity']['relative_l2']:.3g}") if retried.get("fidelity") else text.NOT_MEASURED
        return text.RETRY_DID_NOT_HELP.substitute(outcome=retried.get("error") or loss)
    return ""


def float32_mismatch_finding(m: dict[str, Any], results: dict[str, Measured], common: dict) -> Finding:
    """The float32 flatbuffer converted, but does not compute what the SavedModel computes."""
    base, bound = results["float32"], m["max_fidelity_loss"]
    fid = base.fidelity
    variables = m["savedmodel"]["variable_bytes"]
    saved_size = m["savedmodel"]["size_bytes"] or 0
    variable_ops = base.extra.get("resource_variable_ops") or {}
    diagnosis = m["diagnosis"]
    weights_missing = (bool(variable_ops.get("READ_VARIABLE")) and not variable_ops.get("CALL_ONCE")) or (
        variables >= 64 * 1024 and base.size_bytes < 0.25 * variables
    )
    gross = fid is None or not np.isfinite(fid["relative_l2"]) or fid["relative_l2"] >= 0.5 or (fid.get("cosine") is not None and fid["cosine"] < 0.9)
    calibration = {
        n: results[n].error for n in ("full-int8", "int16x8", SELECTIVE)
        if n in results and results[n].error and any(marker in results[n].error for marker in RESOURCE_OP_MARKERS)
    }
    retried = base.extra.get("reexport")
    evidence = {
        **common, "float32": base.summary(), "fidelity": fid, "flatbuffer_bytes": base.size_bytes, "savedmodel_size_bytes": saved_size,
        "variable_bytes": variables, "weights_in_flatbuffer": not weights_missing, "resource_variable_ops": variable_ops,
        "diagnosis": diagnosis,
    }
    if calibration:
        evidence["calibration_failures"] = calibration
        evidence["calibration_failures_why"] = text.CALIBRATION_FAILURES_WHY
    if retried:
        evidence["reexport"] = retried
    rule = RULES["quantization/float32-mismatch"]
    return rule.finding(
        evidence, severity="high" if gross else "medium",
        risk=replace(rule.risk, fidelity_loss=fid["relative_l2"] if fid and np.isfinite(fid["relative_l2"]) else None),
        weights_lost=text.WEIGHTS_LOST if weights_missing else "", measured=mismatch_measured(base, bound),
        size=mismatch_size(base, saved_size, variables, weights_missing, variable_ops),
        diagnosis=text.DIAGNOSIS.substitute(why=diagnosis["why"]) if diagnosis else "",
        calibration=text.CALIBRATION_FAILS_TOO.substitute(variants=", ".join(calibration)) if calibration else "",
        reexport=mismatch_reexport(m["reexported"], retried),
        code=float32_fix_code(m["model"], m["inputs"]["specs"]), path=m["model"]["path"],
    )


def debugger_text(debug: dict, int8: Ran, base: Ran, selective: Ran, bound: float) -> tuple[str, dict | None]:
    """(what the QuantizationDebugger found and the selective variant recovered, the selective variant's evidence)."""
    if "error" in debug:
        return text.DEBUGGER_ERROR.substitute(error=debug["error"]), None
    worst = debug["layers"][: len(debug["denylisted"])]
    layers = ", ".join(f"{layer['tensor']} ({layer['rmse_per_scale']:.2f})" for layer in worst)
    said = text.WORST_LAYERS.substitute(lead=text.CULPRITS_STAND_OUT if debug["culprits_stand_out"] else text.NO_CULPRIT, layers=layers)
    if selective is None:
        return said, None
    if not selective.ran:
        return said + text.SELECTIVE_DID_NOT_RUN.substitute(error=selective.error), None
    loss = int8.fidelity["relative_l2"]
    recovered = loss - selective.loss
    size_cost = selective.size_bytes - int8.size_bytes
    said += text.SELECTIVE_RECOVERS.substitute(
        loss=f"{selective.loss:.3g}", recovered=f"{recovered / loss:.0%}", size_cost=f"{size_cost / 1024:+,.0f}",
        selective_mb=f"{mb(selective.size_bytes):.2f}", int8_mb=f"{mb(int8.size_bytes):.2f}", float32_mb=f"{mb(base.size_bytes):.2f}",
        verdict=text.SELECTIVE_WITHIN if within_bound(selective.fidelity, bound) else text.SELECTIVE_BEYOND,
    )
    return said, {**selective.summary(), "error_recovered": round(recovered, 6), "size_cost_bytes": size_cost}


def int8_fidelity_finding(m: dict[str, Any], results: dict[str, Measured], common: dict) -> Finding:
    int8: Ran = results["full-int8"]
    base, bound = results["float32"], m["max_fidelity_loss"]
    debug = m["debugger"] or {}
    selective = results.get(SELECTIVE)  # measured when the debugger ran
    fid = int8.fidelity
    evidence = {**common, "full_int8": int8.summary(), "debugger": debug}
    said, selective_evidence = debugger_text(debug, int8, base, selective, bound)
    if selective_evidence is not None:
        evidence["selective"] = selective_evidence
    rule = RULES["quantization/full-int8-fidelity"]
    saved = selective_savings(base, selective, bound)  # what the selective variant (the fix) saves against float32
    return rule.finding(
        evidence, savings=saved, support=saving_support(saved, text.COUNTED),
        risk=replace(rule.risk, fidelity_loss=fid["relative_l2"]),
        loss=f"{fid['relative_l2']:.3g}", bound=bound, max_abs=f"{fid['max_abs']:.3g}",
        top1=text.TOP1_AGREEMENT.substitute(agreement=f"{fid['top1_agreement']:.1%}") if fid.get("top1_agreement") is not None else "",
        debugger=said, synthetic=text.SYNTHETIC_CALIBRATION if m["inputs"]["synthetic"] else "",
        code=converter_code(m["model"], m["inputs"]["specs"], SELECTIVE, debug.get("denylisted"), resave="converted_from" in common),
    )
