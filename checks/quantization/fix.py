"""--fix-dir: the recommended flatbuffer (and the selective int8 one, full int8's fix), written and measured again.

Each goes to FIX_DIR/quantization-VARIANT/model.tflite and is re-measured from there against the
float32 flatbuffer (a fresh LiteRT interpreter for each, timed call by call in turn); the finding
it fixes gets the artifact and the savings the artifact measured.
"""
from __future__ import annotations

import os
from typing import Any

from tfaudit.api import Finding, publish_fix, with_artifact

from .._compression.litert import remeasure
from . import catalogue as text
from .catalogue import SELECTIVE
from .gather import Conversions


def fix(ctx, run: Conversions, findings: list[Any]) -> list[Any]:
    """``findings`` (and whatever else the judge yielded), the fixed ones with their artifacts; others as they are."""
    written = []
    for item in findings:
        if isinstance(item, Finding):
            item = fixed(ctx, run, item)
        written.append(item)
    return written


def fixed(ctx, run: Conversions, finding: Finding) -> Finding:
    """The recommendation with its flatbuffer, full int8's fidelity finding with the selective flatbuffer when it saves something."""
    recommended = finding.evidence.get("recommended")
    if finding.id == f"quantization/{recommended}" and recommended in run.paths:  # never the selective variant: the debugger wrote it
        artifact = published_variant(ctx, run, recommended, run.paths[recommended], text.ARTIFACT_RECOMMENDED.substitute(variant=recommended))
    elif finding.id == "quantization/full-int8-fidelity" and finding.savings and os.path.isfile(selective_flatbuffer(run)):
        artifact = published_variant(ctx, run, SELECTIVE, selective_flatbuffer(run), text.ARTIFACT_SELECTIVE)
    else:
        return finding
    return with_artifact(finding, artifact["folder"], artifact["what"], finding.fix.code, artifact["verified"], artifact["measured"])


def selective_flatbuffer(run: Conversions) -> str:
    return os.path.join(run.tmpdir, SELECTIVE + ".tflite")


def published_variant(ctx, run: Conversions, name: str, flatbuffer: str, what: str) -> dict[str, Any]:
    """``flatbuffer`` copied to FIX_DIR/quantization-NAME/model.tflite and re-measured from there against float32."""
    folder = publish_fix(ctx, f"quantization-{name}", {"model.tflite": flatbuffer})
    verified, measured = remeasure(run.litert, run.paths["float32"], os.path.join(folder, "model.tflite"))
    return {"folder": folder, "verified": verified, "measured": measured, "what": what}
