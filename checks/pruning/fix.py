"""--fix-dir: the pruned SavedModel and its flatbuffers, and the pruned + quantized flatbuffer, written and measured again.

Runs in the worker after the judge, from the files the gather left in the scratch folder; each
artifact is attached to the finding it fixes, its savings corrected to what was measured from it.
"""
from __future__ import annotations

import os
from string import Template

from tfaudit.api import Finding, publish_fix, with_artifact

from .._compression import remeasure
from . import catalogue as text
from .gather import Workspace, combined_path
from .sweep import slug


def write_fixes(ctx, workspace: Workspace, decided: list) -> list:
    """``decided`` (what the judge yielded) with the recommendation and the combined finding carrying their artifacts."""
    written = {"recommended": write_pruned(ctx, workspace), "combined": write_combined(ctx, workspace)}

    def attached(item):
        if not isinstance(item, Finding):
            return item
        key = "combined" if item.id == "pruning/combined" else "recommended" if item.id.startswith("pruning/magnitude-") else None
        fix = written.get(key) if key else None
        return with_artifact(item, fix["folder"], fix["what"], item.fix.code, fix["verified"], fix["measured"]) if fix else item

    return [attached(item) for item in decided]


def write_pruned(ctx, workspace: Workspace) -> dict | None:
    """The recommended sparsity: its SavedModel, float32 flatbuffer and (what the latency was measured on) the sparse-encoded one."""
    pruned, baseline = workspace.recommended, workspace.baseline
    if pruned is None or baseline is None or not pruned.saved_model_dir or not os.path.exists(pruned.saved_model_dir + ".tflite"):
        return None
    directory = pruned.saved_model_dir
    files = {"saved_model": directory, "model.tflite": directory + ".tflite"}
    sparse = directory + ".tflite.sparse"
    if os.path.exists(sparse):
        files["model_sparse.tflite"] = sparse
    folder = publish_fix(ctx, f"pruning-{slug(pruned.name)}", files)
    verified, measured = remeasure(workspace.litert, baseline, os.path.join(folder, "model.tflite"), size_key="zipped_bytes")
    verified = {k: v for k, v in verified.items() if k.startswith("size")}
    if "model_sparse.tflite" in files:
        timed, measured["sparse_encoded"] = remeasure(workspace.litert, baseline, os.path.join(folder, "model_sparse.tflite"))
        verified.update({k: v for k, v in timed.items() if k.startswith("latency")})
    what = Template(text.PRUNED_ARTIFACT).substitute(name=pruned.name, sparse=text.SPARSE_ARTIFACT if "model_sparse.tflite" in files else "")
    return {"folder": folder, "verified": verified, "measured": measured, "what": what}


def write_combined(ctx, workspace: Workspace) -> dict | None:
    """The recommended sparsity with weight quantization, when that model ran."""
    pruned, combined, baseline = workspace.recommended, workspace.combined, workspace.baseline
    if pruned is None or combined is None or not combined.ran or not pruned.saved_model_dir or baseline is None:
        return None
    kind = combined.extra["quantization"]
    folder = publish_fix(ctx, f"pruning-{slug(pruned.name)}-{kind}", {"model.tflite": combined_path(pruned.saved_model_dir, kind)})
    verified, measured = remeasure(workspace.litert, baseline, os.path.join(folder, "model.tflite"), size_key="zipped_bytes")
    what = Template(text.COMBINED_ARTIFACT).substitute(name=pruned.name, kind=kind)
    return {"folder": folder, "verified": verified, "measured": measured, "what": what}
