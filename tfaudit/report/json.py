"""The JSON report: ``AuditState.report()`` written atomically."""
from __future__ import annotations

import json
import re

from tfaudit.report.audit import AuditState
from tfaudit.events import json_safe
from tfaudit.report import write_atomic


NUMBER_LIST = re.compile(r"\[\s*(?:(?:-?\d[\d.eE+-]*|null)\s*,\s*)*(?:-?\d[\d.eE+-]*|null)\s*\]")


def render_json(state: AuditState) -> str:
    """Indented for reading; a list of numbers stays on one line (measurements hold thousands of timings)."""
    text = json.dumps(json_safe(state.report()), indent=2, allow_nan=False)
    return NUMBER_LIST.sub(lambda m: re.sub(r"\s+", "", m.group(0)).replace(",", ", "), text) + "\n"


def write_json(state: AuditState, path: str) -> None:
    write_atomic(path, render_json(state))
