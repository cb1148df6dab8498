"""The JSON report: ``AuditState.report()`` written atomically."""
from __future__ import annotations

import json

from tfaudit.report.audit import AuditState
from tfaudit.events import json_safe
from tfaudit.report import write_atomic


def render_json(state: AuditState) -> str:
    return json.dumps(json_safe(state.report()), indent=2, allow_nan=False) + "\n"


def write_json(state: AuditState, path: str) -> None:
    write_atomic(path, render_json(state))
