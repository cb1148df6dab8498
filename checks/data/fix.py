"""--fix-dir: ``pipeline_options.py``, the options and code changes measured to pay, and the pipeline with all of them
timed again against the pipeline as returned.

Runs in the worker after the judge: every fix the judge claimed is applied at once (the options set together, the
sequential maps rebuilt parallel, a final prefetch), timed in turn against the returned dataset, and the file says
what that measured beside each fix's own saving.
"""
from __future__ import annotations

import os
import tempfile
from typing import Any

from tfaudit.api import Finding, decide, fix_dir, publish_fix, with_artifact

from .gather import option_changes, timed_against

FILE = "pipeline_options.py"


def write_fixes(ctx, measured: dict[str, Any], decided: list) -> list:
    """``decided`` with each claimed fix carrying the written file, when --fix-dir asked for it and something was claimed."""
    claims = [item for item in decided if isinstance(item, Finding) and item.kind == "opportunity"]
    if not claims or fix_dir(ctx) is None:
        return decided
    together, changes = all_together(ctx, claims)
    verdict = timed_against(ctx.pipeline.dataset, together, ctx.budget, ctx.pipeline.consume) if together is not None else None
    text = file_text(measured, claims, changes, verdict)
    with tempfile.TemporaryDirectory() as scratch:
        path = os.path.join(scratch, FILE)
        with open(path, "w", encoding="utf-8") as out:
            out.write(text)
        folder = publish_fix(ctx, "data-pipeline", {FILE: path})
    together_text = together_description(verdict, measured) if verdict else "not timed (a stage could not be made again)"
    done = {"all_fixes_together": verdict and {k: verdict[k] for k in ("chunk", "rounds", "decided")},
            "note": f"on its own (its saving stands as timed alone); all of the file's fixes together: {together_text}"}

    def attached(item):
        if item in claims:
            return with_artifact(item, folder, f"{FILE}: every fix measured to pay, ready to paste", item.fix.code, {}, done,
                                 remeasured=False)
        return item

    return [attached(item) for item in decided]


def together_description(verdict: dict[str, Any], measured: dict[str, Any]) -> str:
    from .catalogue import PIPELINE_MINIMUM

    return decide(verdict["rounds"], PIPELINE_MINIMUM, measured["confidence"]).describe("the pipeline with them", "the pipeline as returned")


def all_together(ctx, claims: list[Finding]) -> tuple[Any, list[str]]:
    """The returned pipeline with every claimed fix applied, and the lines that apply them."""
    import tensorflow as tf

    pipeline, ids = ctx.pipeline, {f.id for f in claims}
    lines: list[str] = []
    dataset = pipeline.dataset
    if "data/parallel-map" in ids:
        stages = [s["index"] for f in claims if f.id == "data/parallel-map" for s in f.evidence["stages"]]
        rebuilt = pipeline.rebuild({i: {"num_parallel_calls": tf.data.AUTOTUNE} for i in stages})
        if rebuilt is not None:
            dataset = rebuilt
    options = tf.data.Options()
    for slug, setting, change in option_changes(pipeline.dataset.options(), pipeline.stages, pipeline.consumer is not None):
        if f"data/{slug}" in ids:
            change(options)
            lines.append(setting)
    dataset = dataset.with_options(options)
    if "data/prefetch" in ids:
        dataset = dataset.prefetch(tf.data.AUTOTUNE)
    return dataset, lines


def file_text(measured: dict[str, Any], claims: list[Finding], option_lines: list[str], verdict: dict[str, Any] | None) -> str:
    together = together_description(verdict, measured) if verdict is not None else "not timed (a stage could not be made again)"
    head = [
        f'"""What `tfaudit data {measured["target"]}` measured to pay ({measured["budget"]} budget), ready to paste.',
        "",
        "Each fix was timed on its own against the pipeline as returned; all of them together:",
        f"{together}.",
        '"""',
        "import tensorflow as tf",
        "",
    ]
    body = ["", "def tuned_options() -> tf.data.Options:", "    options = tf.data.Options()"]
    body += [f"    {line}" for line in option_lines] or ["    # no option was measured to pay"]
    body += ["    return options", "", "", "# Where the pipeline is made:", "#     dataset = dataset.with_options(tuned_options())"]
    for claim in claims:
        if claim.id in ("data/parallel-map", "data/prefetch", "data/cache"):
            body += ["#", f"# {claim.title} ({claim.id}):"] + [f"#     {line}" for line in claim.fix.code.splitlines()]
    if any(claim.id == "data/cache" for claim in claims):
        body += ["#", "# (The cache is not in the timing of all the fixes together: it pays from the second pass on.)"]
    return "\n".join(head + body) + "\n"
