"""Pruning's verdicts from what gather measured: the largest sparsity within the bound, and what it saves (pure: no TensorFlow)."""
from __future__ import annotations

from dataclasses import replace
from string import Template
from typing import Any, Iterator

from tfaudit.api import Finding, Measure, Metric, Support, Yielded

from .._compression import Measured, mb, saving_support, savings, severity_for, top1_text, within_bound
from . import catalogue as text
from .catalogue import RULES
from .sweep import pick


def judge(m: dict[str, Any]) -> Iterator[Yielded]:
    """The metrics of the recommended sparsity, and its finding (or that pruning needs fine-tuning), then the combined one."""
    bound = m["max_fidelity_loss"]
    base = Measured.from_data(m["unpruned"])
    results = [(row["sparsity"], Measured.from_data(row)) for row in m["sweep"]]
    recommended = pick(results, bound)
    common = common_evidence(m, base, results)
    if recommended is None:
        yield fine_tuning_finding(m, results, common)
        return
    sparsity, pruned = recommended
    yield Metric("recommended_sparsity_pct", round(sparsity * 100, 1), "%", better="higher")
    if pruned.zipped_bytes is not None:
        yield Metric("pruned_zipped_size_bytes", pruned.zipped_bytes, "bytes")
    yield recommendation_finding(m, base, sparsity, pruned, common)
    if m["combined"] is not None:
        yield combined_finding(m, base, sparsity, pruned, Measured.from_data(m["combined"]), common)


def common_evidence(m: dict[str, Any], base: Measured, results: list[tuple[float | str, Measured]]) -> dict[str, Any]:
    sweep = {"unpruned": base.summary(), **{result.name: result.summary() for _, result in results}}
    return {
        **m["pruning"], "sweep": sweep, "max_fidelity_loss": m["max_fidelity_loss"], **text.MEASURED_HOW, "budget": m["budget"],
    }


def not_pruned(common: dict[str, Any]) -> str:
    skipped = common["skipped_tensors"]
    return Template(text.NOT_PRUNED).substitute(count=len(skipped), tensors="; ".join(skipped)) if skipped else ""


def recommendation_finding(m: dict[str, Any], base: Measured, sparsity: float, result: Measured, common: dict[str, Any]) -> Finding:
    percent = round(sparsity * 100)
    saved, latency = savings(base, result, "zipped_bytes") if base.zipped_bytes and result.zipped_bytes else ({}, {})
    fid = result.fidelity or {}
    top1 = f"; {top1_text(fid, m['max_fidelity_loss'])}" if fid.get("top1") else ""
    smaller = zipped = ""
    if "size_pct" in saved:
        size_pct = f"{saved['size_pct'].value:.0f}"
        smaller = Template(text.SMALLER_ZIPPED).substitute(size_pct=size_pct)
        zipped = Template(text.ZIPPED).substitute(pruned_mb=zipped_mb(result), base_mb=zipped_mb(base), size_pct=size_pct)
    verdict = latency.get("latency_vs_baseline", {}).get("verdict")
    if verdict:
        timed = Template(text.SPARSE_LATENCY).substitute(ms=f"{result.timing.median_ms:.3f}", base_ms=f"{base.timing.median_ms:.3f}", verdict=verdict)
    else:
        timed = Template(text.NO_LATENCY).substitute(reason=result.extra.get("latency_error") or result.error or text.NO_SPARSE_PATH)
    rule = RULES[f"pruning/magnitude-{percent}"]
    loss = fid["relative_l2"]
    return rule.finding(
        {**common, "recommended_sparsity": sparsity, **latency, "size_pct_of": text.SIZE_PCT_OF},
        severity=severity_for(saved), savings=saved, support=saving_support(saved, text.COUNTED, result),
        risk=replace(rule.risk, level="low" if loss > 0 else "none", fidelity_loss=loss),
        percent=percent, smaller=smaller, method=common["method"].split(" (")[0], loss=f"{loss:.3g}", top1=top1,
        zipped=zipped, latency=timed, not_pruned=not_pruned(common), code=one_shot_code(m["model"], sparsity),
    )


def fine_tuning_finding(m: dict[str, Any], results: list[tuple[float | str, Measured]], common: dict[str, Any]) -> Finding:
    measured = [(s, r) for s, r in results if r.fidelity is not None and not isinstance(s, str)]
    losses = ", ".join(f"{round(s * 100)}%: {r.loss:.3g}" for s, r in measured)
    return RULES["pruning/needs-fine-tuning"].finding(
        common, severity="low" if measured else "info",
        bound=m["max_fidelity_loss"], losses=losses or "none", not_pruned=not_pruned(common), code=fine_tuning_code(m["model"]),
    )


def combined_finding(m: dict[str, Any], base: Measured, sparsity: float, pruned: Measured, combined: Measured,
                     common: dict[str, Any]) -> Finding:
    percent, bound = round(sparsity * 100), m["max_fidelity_loss"]
    kind = combined.extra.get("quantization", "")
    if not combined.ran:
        return text.COMBINED_UNMEASURED.finding({**common, "combined": combined.summary()}, percent=percent, kind=kind, error=combined.error)
    saved_bytes = zipped_bytes(base) - zipped_bytes(combined)
    saved = {"size_bytes": Measure(float(saved_bytes)), "size_pct": Measure(round(100.0 * saved_bytes / zipped_bytes(base), 2))}
    within = within_bound(combined.fidelity, bound)
    return RULES["pruning/combined"].finding(
        {**common, "combined": combined.summary(), "quantization": kind, "size_pct_of": text.SIZE_PCT_OF},
        severity=severity_for(saved) if within else "info", savings=saved if within else {},
        support=Support.exact(saved["size_pct"].value, 0.0, text.COUNTED) if within else None,
        risk=replace(RULES["pruning/combined"].risk, fidelity_loss=combined.loss),
        percent=percent, kind=kind, size_pct=f"{saved['size_pct'].value:.0f}", combined_mb=zipped_mb(combined),
        base_mb=zipped_mb(base), pruned_mb=zipped_mb(pruned), loss=f"{combined.loss:.3g}",
        verdict=text.COMBINED_WITHIN if within else Template(text.COMBINED_BEYOND).substitute(bound=bound),
        code=one_shot_code(m["model"], sparsity) + "\n\n" + quantize_code(kind),
    )


def zipped_bytes(measured: Measured) -> int:
    """The zipped size of a model that converted (a recommended or combined one always did)."""
    assert measured.zipped_bytes is not None, f"{measured.name} has no zipped size"
    return measured.zipped_bytes


def zipped_mb(measured: Measured) -> str:
    return f"{mb(zipped_bytes(measured)):.2f}"


def one_shot_code(model: dict[str, str], sparsity: float) -> str:
    """Pruning to ``sparsity`` once, as this model's format allows: tfmot for tf_keras, the variables directly otherwise."""
    if model["format"] == "tf_keras_saved_model":
        return Template(text.ONE_SHOT_TFMOT).substitute(path=model["path"], sparsity=sparsity)
    keras = model["format"] == "keras"
    load = Template(text.LOAD_KERAS if keras else text.LOAD_SAVED_MODEL).substitute(path=model["path"], signature=model["signature"])
    save = text.SAVE_KERAS if keras else Template(text.SAVE_SAVED_MODEL).substitute(signature=model["signature"])
    return Template(text.ONE_SHOT_DIRECT).substitute(keras_import=text.IMPORT_KERAS if keras else "", load=load, sparsity=sparsity, save=save)


def quantize_code(kind: str) -> str:
    return Template(text.QUANTIZE_PRUNED).substitute(float16=text.FLOAT16_WEIGHTS if kind == "float16" else "")


def fine_tuning_code(model: dict[str, str]) -> str:
    load = Template(text.LOAD_TF_KERAS).substitute(path=model["path"]) if model["format"] == "tf_keras_saved_model" else text.BUILD_TF_KERAS
    return Template(text.FINE_TUNING).substitute(load=load)
