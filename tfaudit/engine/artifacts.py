"""--fix-dir: a fixed artifact put in place at once, and attached to its finding."""
from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import asdict, replace
from typing import Any

from tfaudit.api import Finding, Measure


def publish(root: str, name: str, files: dict[str, str]) -> str:
    """Copy ``files`` ({name in the folder: source file or folder}) into root/name at once (a folder renamed into place)."""
    from tfaudit.report import umask

    staging = tempfile.mkdtemp(prefix=f".tfaudit-{name}-", dir=root)
    try:
        for relative, source in files.items():
            target = os.path.join(staging, relative)
            if os.path.isdir(source):
                shutil.copytree(source, target)
            else:
                os.makedirs(os.path.dirname(target), exist_ok=True)
                shutil.copyfile(source, target)
        os.chmod(staging, 0o777 & ~umask())
        final = os.path.join(root, name)
        if os.path.exists(final):
            stale = tempfile.mkdtemp(prefix=f".tfaudit-stale-{name}-", dir=root)
            os.replace(final, os.path.join(stale, name))
            shutil.rmtree(stale)
        os.replace(staging, final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return final


def attach(finding: Finding, folder: str, what: str, made_by: str, verified: dict[str, Measure], measured: dict[str, Any],
           remeasured: bool = True) -> Finding:
    """The finding with its artifact, its savings corrected to the artifact's measurement (see tfaudit.report.fixes)."""
    from tfaudit.report.fixes import corrected_savings, gap_text

    savings, changed = corrected_savings(finding.savings, verified) if remeasured else (finding.savings, [])
    predicted = {k: asdict(m) for k, m in finding.savings.items()}
    summary = finding.summary
    if changed:
        summary += f" Measured again from the written file ({gap_text(predicted, verified)}), the saving is corrected to that measurement."
    return replace(finding, savings=savings, verified=verified, summary=summary,
                   artifact={"path": folder, "what": what, "made_by": made_by, "measured": measured, "predicted": predicted, "corrected": changed})
