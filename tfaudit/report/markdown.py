"""The Markdown report: pasteable into a pull request."""
from __future__ import annotations

import os
from collections import Counter

from tfaudit import __version__
from tfaudit.api import REGRESSION_MINIMUM, SEVERITIES, Finding
from tfaudit.report.audit import AuditState
from tfaudit.report import write_atomic
from tfaudit.report.evidence import evidence_lines, markdown_table as table
from tfaudit.report.fixes import verified_lines
from tfaudit.report.format import (audited_text, pipeline_text, confidence_cell, confidence_text, effort_text, human_bytes, plural, risk_text, saving_text,
                                   shape_text, worth_cell)
from tfaudit.report.profiles import Worth, assumptions, worth_text
from tfaudit.report.gates import TAIL_MINIMUM_FACTOR

TOP_OPS = 15


def summary_line(state: AuditState, findings: list[Finding]) -> str:
    if state.load_error:
        return f"**The model could not be audited:** {state.load_error}"
    counts = Counter(f.severity for f in findings)
    by_severity = ", ".join(f"{counts[s]} {s}" for s in SEVERITIES if counts[s])
    statuses = Counter(c.status for c in state.checks.values())
    checks = ", ".join(f"{n} {status}" for status, n in sorted(statuses.items()))
    found = f"**{plural(len(findings), 'finding')}** ({by_severity}) · " if findings else ""  # the verdict above says the rest
    duration = (state.finished_at or state.started_at) - state.started_at
    return f"{found}checks: {checks or 'none run'} · budget `{state.budget}` · {duration:.1f} s"


def environment_lines(env: dict) -> list[str]:
    if not env:
        return []
    gpus = ", ".join(g["name"] for g in env.get("gpus", [])) or env.get("gpu_status", "no GPU")
    return [
        "## Environment",
        "",
        f"- Python {env.get('python')}, TensorFlow {env.get('tensorflow')}, tf_keras {env.get('tf_keras')}, Keras {env.get('keras')}",
        f"- CPU: {env.get('cpu')} ({env.get('cores_logical')} logical cores), memory {human_bytes(env.get('memory_bytes'))}",
        f"- GPU: {gpus}",
        f"- Platform: {env.get('platform')}",
        "",
    ]


def model_lines(inv: dict) -> list[str]:
    if inv.get("kind") == "pipeline":
        return pipeline_lines(inv)
    if not inv or "signatures" not in inv:
        return []
    variables = inv.get("variables", {})
    lines = [
        "## Model",
        "",
        f"- Path: `{inv['path']}` ({inv['format']}), audited {audited_text(inv, quote='`')}",
        f"- Size on disk: {human_bytes(inv.get('size_bytes'))}; parameters: {variables.get('parameters', 0):,} in {variables.get('count', 0)} variables ({human_bytes(variables.get('bytes'))})",
        f"- Saved with TensorFlow {inv.get('versions', {}).get('tensorflow') or 'unknown'}, Keras {inv.get('versions', {}).get('keras') or 'n/a'}",
        "",
    ]
    rows = []
    for name, sig in inv["signatures"].items():
        for direction in ("inputs", "outputs"):
            for spec in sig[direction]:
                rows.append([f"`{name}`", direction[:-1], f"`{spec['name']}`", shape_text(spec["shape"]), spec["dtype"]])
    lines += table(["Signature", "", "Tensor", "Shape", "Dtype"], rows)
    if inv.get("functions"):
        lines += table(
            ["Restored function", "Concrete functions"],
            [[f"`{fn['name']}`", fn["concrete_functions"]] for fn in inv["functions"]],
        )
    if inv.get("ops"):
        top = sorted(inv["ops"].items(), key=lambda kv: (-kv[1], kv[0]))[:TOP_OPS]
        lines.append("Ops in the serving graph (top %d of %d types): " % (len(top), len(inv["ops"])) + ", ".join(f"{op} ×{n}" for op, n in top))
        lines.append("")
    return lines


def pipeline_lines(inv: dict) -> list[str]:
    lines = ["## Pipeline", "", f"- {pipeline_text(inv)}", ""]
    rows = [[str(s["index"]), f"`{s['kind']}`", s["where"] or "a library call", f"`{s['code']}`" if s["code"] else "", s["node"]]
            for s in inv.get("stages", [])]
    lines += table(["#", "Stage", "Where", "Code", "Dataset"], rows)
    options = inv.get("options", {})
    lines.append("Options in effect: " + ", ".join(f"{k} {v}" for k, v in options.items()))
    lines.append("")
    return lines


def _metric_text(metric: dict | None) -> str:
    if not metric or metric.get("value") is None:
        return "—"
    interval = "" if metric.get("low") is None else f" [{metric['low']:.4g}–{metric['high']:.4g}]"
    return f"{metric['value']:.4g}{interval} {metric.get('unit', '')}".rstrip()


def baseline_rule(comparison) -> str:
    """What a timed metric must show to regress, with what the two runs' processes showed."""
    said: dict[str, list[str]] = {}  # one sentence per measurement: at one batch, latency and throughput share it
    for kind, whole in sorted(comparison.whole_runs.items()):
        said.setdefault(
            f"×{whole['ratios'][1] / whole['ratios'][0]:.3g} per unit of reference, at least ×{whole['slower']:.3g} "
            f"(spreads {whole['spreads_pct'][0]:.2g} % and {whole['spreads_pct'][1]:.2g} % over {whole['processes'][0]} and "
            f"{whole['processes'][1]} processes)", []).append(kind)
    shown = "; ".join(f"{' and '.join(kinds)}: {sentence}" for sentence, kinds in said.items()) or "a run lacks them"
    return (
        "A timed metric regresses only when its interval is past the baseline's (scaled by how much slower the host ran a "
        "reference workload timed alongside it), it is worse by its factor (Needs: "
        f"{REGRESSION_MINIMUM.relative:.0%} of a call, {TAIL_MINIMUM_FACTOR:g}× for a p99), and the serving check's fresh "
        f"processes, taken together, ran the model slower per unit of reference by {REGRESSION_MINIMUM.relative:.0%} at least "
        f"at {comparison.level:.2%} confidence ({shown}); one process reading slow alone is *not confirmed*, and so is a "
        "slowdown whose noise a run did not measure (no reference timed alongside it, or no processes' ratios)."
    )


def gate_lines(state: AuditState) -> list[str]:
    """Baseline regressions first, then budgets: what a CI reviewer reads before anything else."""
    lines: list[str] = []
    comparison = state.baseline
    if comparison is not None:
        lines += ["## Compared with the baseline", "", f"Baseline: `{comparison.path}`", ""]
        lines += [f"> **Warning:** {w}" for w in comparison.warnings] + ([""] if comparison.warnings else [])
        lines += [baseline_rule(comparison), ""]

        def baseline_text(row: dict) -> str:
            if "old_scaled" not in row:
                return _metric_text(row["old"])
            return f"{_metric_text(row['old'])} (host ×{row['host_scale']:.3g}: {_metric_text(row['old_scaled'])})"

        needs = lambda r: f"×{r['factor']:.3g}" if "factor" in r else "past the interval"  # noqa: E731
        rows = [["**regressed**", f"`{r['metric']}`", baseline_text(r), _metric_text(r["new"]), needs(r)] for r in comparison.regressions]
        rows += [["not confirmed", f"`{r['metric']}`", baseline_text(r), _metric_text(r["new"]), f"{needs(r)}: {r['why']}"]
                 for r in comparison.unconfirmed]
        rows += [["improved", f"`{r['metric']}`", baseline_text(r), _metric_text(r["new"]), needs(r)] for r in comparison.improvements]
        rows += [
            ["not comparable", f"`{r['metric']}`", f"{_metric_text(r['old'])} of {r['old'].get('subject')}", f"{_metric_text(r['new'])} of {r['new'].get('subject')}", ""]
            for r in comparison.not_comparable
        ]
        if rows:
            lines += table(["Verdict", "Metric", "Baseline", "Now", "Needs"], rows)
        if not comparison.regressions and not comparison.improvements:
            lines += ["No metric moved beyond its measured noise.", ""]
        lines += [f"New findings: {', '.join(f'`{i}`' for i in comparison.new_findings) or 'none'}. "
                  f"Resolved: {', '.join(f'`{i}`' for i in comparison.resolved_findings) or 'none'}.", ""]
    if state.budget_results:
        lines += ["## Budgets", ""]
        order = {"violated": 0, "not measured": 1, "ok": 2}
        results = sorted(state.budget_results, key=lambda r: (order[r.status], r.metric))
        lines += table(
            ["Metric", "Limit", "Measured", "Verdict"],
            [[f"`{r.metric}`", f"{r.limit:.4g}", _metric_text({"value": r.value, "low": r.low, "high": r.high, "unit": r.unit}), f"**{r.status}**" if r.status == "violated" else r.status] for r in results],
        )
    return lines


def verdict_lines(state: AuditState, findings: list[Finding]) -> list[str]:
    """Three lines a reviewer reads first, under the profile: what to do first, what it saves, how sure."""
    if state.load_error:
        return []
    if not findings:
        return [f"> **Verdict:** {state.verdict()}", ""]
    top, profile = findings[0], state.profile
    measured = [m for m in top.savings.values() if m.low is not None]
    certainty = ("; the saving's 95 % interval excludes zero" if any(m.low > 0 for m in measured) else
                 "; the saving's interval reaches zero" if measured else "; the saving is one measurement, without an interval" if top.savings else "")
    rest = f"; then {len(findings) - 1} more below" if len(findings) > 1 else ""
    first_sentence = top.summary.split(". ")[0].rstrip(".")
    physical = (top.worth or {}).get("physical")
    if top.priority > 0:
        saves = f"{worth_text(Worth.from_dict(top.worth))} as a {profile.label} ({physical}); measured: {saving_text(top)}"
    else:
        saves = f"nothing priced as a {profile.label}; first by its severity ({top.severity}): {first_sentence}"
    incomplete = [f"> **Incomplete:** {state.verdict()}", ""] if state.errored() else []
    return [
        f"> **Do first** (profile `{profile.name}`): {top.title} (`{top.id}`, effort {effort_text(top)}){rest}.  ",
        f"> **Saves:** {saves}.  ",
        f"> **How sure:** {confidence_text(top)}{certainty}; risk {risk_text(top)}.",
        "",
        *incomplete,
    ]


def section_lines(state: AuditState) -> list[str]:
    """Opportunities (ranked, in the profile's currency, with its assumptions), Diagnostics, Passed, Errored."""
    profile, lines = state.profile, []
    opportunities, diagnostics = state.opportunities(), state.diagnostics()
    title = lambda f: f"{f.title} (`{f.id}`)" + (f"; applies if {f.applies_if}" if f.applies_if else "")  # noqa: E731
    if opportunities or diagnostics:
        lines += ["## Recommendations", ""]
    if opportunities:
        lines += [f"### Opportunities: {profile.unit} saved as a {profile.label}", ""]
        lines += table(
            ["#", "Finding", profile.unit, "Measured saving", "Effort", "Confidence", "Risk"],
            [[i, title(f), worth_cell(f), saving_text(f), effort_text(f), confidence_cell(f), risk_text(f)]
             for i, f in enumerate(opportunities, 1)],
        )
        lines += ["Ranked by what each saves (the low end of its interval) × confidence ÷ effort × (1 − risk). Assumptions:", ""]
        lines += [f"- {a}" for a in assumptions(profile, state.basis())] + [""]
    if diagnostics:
        lines += ["### Diagnostics", "", "To act on, without a saving this profile prices.", ""]
        lines += table(
            ["#", "Severity", "Finding", "Measured", "Effort"],
            [[i, f.severity, title(f) + (f" — {f.worth['why_not']}" if (f.worth or {}).get("why_not") else ""), saving_text(f), effort_text(f)]
             for i, f in enumerate(diagnostics, len(opportunities) + 1)],
        )
    undecided = state.undecided()
    if undecided:
        lines += ["## Undecided", "", "Comparisons the budget could not decide: no saving is claimed; a larger `--budget` may decide them.", ""]
        lines += [f"- `{f.id}`: {f.title.removeprefix('Undecided: ')} — {f.evidence['decision']}" for f in undecided] + [""]
    passed = state.passed()
    if passed:
        notes = state.notes()
        lines += ["## Passed", ""]
        lines += [f"- `{c.id}` ({c.title}): nothing to fix" + "".join(f"; {f.title}" for f in notes if f.check == c.id) for c in passed] + [""]
    return lines


def serving_headline(findings: list[Finding]) -> list[str]:
    found = next((f for f in findings if f.id == "serving/configuration"), None)
    return [f"**Serving:** {found.title}", ""] if found else []


def worth_line(f: Finding) -> str:
    """What the finding is worth under the report's profile, in words."""
    worth = f.worth or {}
    if f.priority > 0:
        return f"worth {worth_text(Worth.from_dict(worth))}" + (f" ({worth['physical']})" if worth.get("physical") else "")
    return f"not priced here: {worth['why_not']}" if worth.get("why_not") else "a diagnostic"


def finding_lines(position: int, f: Finding) -> list[str]:
    lines = [
        f"### {position}. {f.title}",
        "",
        f"`{f.id}` · severity **{f.severity}** · {worth_line(f)} · {confidence_text(f)} · effort {effort_text(f)} · risk {risk_text(f)}",
        "",
        f.summary,
        "",
        "**What was measured**",
        "",
    ]
    lines += evidence_lines(f.evidence)
    lines.append(f"**Saving:** {saving_text(f)}. {f.effort.note}")
    lines.append("")
    if f.basis:
        lines += [f"**How sure:** {confidence_text(f)}, from {f.basis}.", ""]
    if f.applies_if:
        lines += [f"**Applies if** {f.applies_if}: ranked after the findings that apply as they are.", ""]
    if f.risk.note:
        lines += [f"**Risk:** {f.risk.note}", ""]
    if f.why:
        lines += ["**Why it matters**", "", f.why, ""]
    lines += ["**Fix**", "", f.fix.text, ""]
    if f.fix.code:
        lines += [f"```{f.fix.language}", f.fix.code.rstrip(), "```", ""]
    if f.verify:
        lines += ["**How to verify**", "", f.verify, ""]
    return lines


def model_name(path: str) -> str:
    """A readable name: SavedModels often sit in .../NAME/saved_model or .../NAME/1."""
    parts = os.path.normpath(path).split(os.sep)
    if len(parts) > 1 and (parts[-1] == "saved_model" or parts[-1].isdigit()):
        return f"{parts[-2]}/{parts[-1]}"
    return parts[-1] or path


def image_lines(images: list[tuple[str, str]]) -> list[str]:
    if not images:
        return []
    return ["## Charts", ""] + [line for title, link in images for line in (f"![{title}]({link})", "")]


def render_markdown(state: AuditState, images: list[tuple[str, str]] | None = None) -> str:
    """The report; ``images`` are (title, link) pairs shown under Charts."""
    findings = state.recommendations()
    name = model_name(state.model_path)
    lines = [f"# tfaudit report: {name}", "", *verdict_lines(state, findings), summary_line(state, findings), ""]
    lines += serving_headline(state.notes())
    if state.interrupted:
        lines += ["> **Interrupted:** the audit was stopped; this report holds what finished.", ""]
    for check in state.errored():
        lines += [f"> **Check `{check.id}` errored:** {check.error}", ""]
    lines += gate_lines(state)
    lines += section_lines(state)
    lines += verified_lines(state.findings)
    lines += image_lines(images or [])
    if state.checks:
        lines += ["## Checks", ""]
        lines += table(
            ["Check", "Status", "Duration", "Note"],
            [[f"`{c.id}`", c.status, "" if c.duration_s is None else f"{c.duration_s:.1f} s", c.error] for c in state.checks.values()],
        )
    lines += environment_lines(state.environment or {})
    lines += model_lines(state.inventory or {})
    if findings:
        lines += ["## Findings", ""]
        for i, f in enumerate(findings, 1):
            lines += finding_lines(i, f)
    notes = state.notes()
    if notes:
        lines += ["## Measured, nothing to fix", ""]
        for i, f in enumerate(notes, len(findings) + 1):
            lines += finding_lines(i, f)
    lines.append(f"<sub>Generated by tfaudit {__version__}; every number above was measured in this run.</sub>")
    return "\n".join(lines) + "\n"


def images_directory(path: str) -> str:
    """``out/report.md`` keeps its pictures in ``out/report_files/``."""
    return os.path.splitext(os.path.abspath(path))[0] + "_files"


def write_markdown(state: AuditState, path: str) -> list[str]:
    """Write the report and its charts; returns the image paths."""
    from tfaudit.report.images import write_images

    directory = images_directory(path)
    images = write_images(state, directory)
    links = [(title, f"{os.path.basename(directory)}/{os.path.basename(image)}") for title, image in images]
    write_atomic(path, render_markdown(state, links))
    return [image for _, image in images]
