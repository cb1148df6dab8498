"""--fix-dir: predicted against verified savings, and the README that describes each artifact.

A finding whose check wrote its fixed artifact carries ``verified`` (the savings measured again on
the artifact, read back from the fix folder) beside ``savings`` (what the audit predicted). A
verified value agrees when it is within ``AGREEMENT`` (±25 %) of the predicted one.
"""
from __future__ import annotations

import os
import time

from tfaudit.api import Finding, Measure
from tfaudit.report import write_atomic
from tfaudit.report.format import human_bytes

AGREEMENT = 0.25
COMPOSED = "pruning/combined"  # the pruned and quantized model: the compression fixes applied together


def measure_text(key: str, measure: Measure | None) -> str:
    if measure is None:
        return "—"
    if key == "size_bytes" or key == "memory_bytes":
        return human_bytes(measure.value)
    unit = {"latency_ms": " ms", "latency_pct": " %", "size_pct": " %"}.get(key, "")
    interval = "" if measure.low is None else f" [{measure.low:.3g}–{measure.high:.3g}]"
    return f"{measure.value:.3g}{unit}{interval}"


def agrees(predicted: Measure, verified: Measure | None) -> bool:
    return verified is not None and abs(verified.value - predicted.value) <= AGREEMENT * abs(predicted.value)


def corrected_savings(predicted: dict[str, Measure], verified: dict[str, Measure]) -> tuple[dict[str, Measure], list[str]]:
    """(savings, keys changed): a prediction the artifact confirms within ±25 % stands; any other saving is what the artifact measured."""
    savings, changed = {}, []
    for key in dict.fromkeys([*predicted, *verified]):
        if key in predicted and agrees(predicted[key], verified.get(key)):
            savings[key] = predicted[key]
            continue
        changed.append(key)
        if key in verified:
            savings[key] = verified[key]
    return savings, changed


def gap_text(predicted: dict[str, dict], verified: dict[str, Measure]) -> str:
    """Per saving: within ±25 %, or the gap and why."""
    parts = []
    for key in dict.fromkeys([*predicted, *verified]):
        before, after = predicted.get(key), verified.get(key)
        if before is None:
            parts.append(f"{key}: {measure_text(key, after)} found when timed in turn, not predicted")
        elif after is None:
            why = "no significant difference when timed in turn with the baseline" if key.startswith("latency") else "not measured again"
            parts.append(f"{key}: predicted {measure_text(key, Measure(**before))}, {why}")
        elif agrees(Measure(**before), after):
            parts.append(f"{key}: within ±25 %")
        else:
            overlap = before.get("low") is not None and after.low is not None and before["low"] <= after.high and after.low <= before["high"]
            parts.append(f"{key}: off by {(after.value - before['value']) / abs(before['value']):+.0%}"
                         + (" (the two intervals overlap: the same within the noise)" if overlap else ""))
    return "; ".join(parts) or "nothing predicted"


def agreement(finding: Finding) -> str:
    if not finding.verified and not finding.artifact.get("corrected"):
        return f"not measured again: {finding.artifact.get('measured', {}).get('note', 'nothing here can run this file')}"
    return gap_text(finding.artifact.get("predicted", {}), finding.verified)


def with_artifacts(findings: list[Finding]) -> list[Finding]:
    return [f for f in findings if f.artifact]


def verified_lines(findings: list[Finding]) -> list[str]:
    """The report's table: one row per artifact, the composed fixes last."""
    from tfaudit.report.evidence import markdown_table

    fixed = sorted(with_artifacts(findings), key=lambda f: f.id == COMPOSED)
    if not fixed:
        return []
    rows = []
    for f in fixed:
        predicted = {k: Measure(**m) for k, m in f.artifact.get("predicted", {}).items()}
        keys = list(dict.fromkeys([*predicted, *f.verified]))
        name = "**all fixes applied** (pruned + quantized)" if f.id == COMPOSED else f"`{f.id}`"
        rows.append([name, f"`{os.path.basename(f.artifact['path'])}/`", "; ".join(f"{k} {measure_text(k, predicted.get(k))}" for k in keys),
                     "; ".join(f"{k} {measure_text(k, f.verified.get(k))}" for k in keys), agreement(f)])
    return ["## Predicted and verified", "",
            "Each fix below was written to `--fix-dir`, read back and measured again in this run, against the same baseline, timed in turn.", ""] + \
        markdown_table(["Finding", "Artifact", "Predicted", "Verified", "Agreement"], rows)


def write_fix_readme(findings: list[Finding], fix_dir: str, model: str) -> str | None:
    fixed = with_artifacts(findings)
    if not fixed:
        return None
    lines = ["# Fixed artifacts", "", f"Written by tfaudit for `{model}` on {time.strftime('%Y-%m-%d %H:%M')}; every number was measured in that run.", ""]
    folders: dict[str, list[Finding]] = {}
    for f in fixed:  # one artifact can fix several findings (one re-export relaxes every signature)
        folders.setdefault(f.artifact["path"], []).append(f)
    for folder, found in folders.items():
        artifact = found[0].artifact
        lines += [f"## `{os.path.basename(folder)}/`", "", f"- **What:** {artifact['what']}."]
        for f in found:
            lines += [
                f"- **Finding:** `{f.id}`: {f.title}. **Measured:** predicted "
                f"{', '.join(f'{k} {measure_text(k, Measure(**m))}' for k, m in f.artifact.get('predicted', {}).items()) or 'nothing'}; "
                f"verified on this file {', '.join(f'{k} {measure_text(k, m)}' for k, m in f.verified.items()) or 'nothing'} ({agreement(f)}).",
            ]
        lines += ["- **Made by** (runnable):", "", "```python", artifact["made_by"].rstrip(), "```", ""]
    path = os.path.join(fix_dir, "README.md")
    write_atomic(path, "\n".join(lines))
    return path
