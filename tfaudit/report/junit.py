"""JUnit XML for CI report readers.

One testcase per check (errored → <error>, skipped → <skipped>), and one
failing testcase per finding at or above the gate severity, named by the
finding id under its check's class name.
"""
from __future__ import annotations

import xml.etree.ElementTree as ET

from tfaudit.report.audit import AuditState
from tfaudit.report import write_atomic
from tfaudit.report.format import saving_text


def render_junit(state: AuditState, gate: str) -> str:
    gating = state.findings_at_or_above(gate)
    suite = ET.Element("testsuite", name="tfaudit", timestamp=state.started_iso)
    ET.SubElement(ET.SubElement(suite, "properties"), "property", name="verdict", value=state.verdict())
    counts = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    for check in state.checks.values():
        case = ET.SubElement(suite, "testcase", classname=f"tfaudit.{check.id}", name=check.id, time=f"{check.duration_s or 0:.3f}")
        counts["tests"] += 1
        if check.status == "errored":
            ET.SubElement(case, "error", message=check.error).text = check.stderr_tail or check.error
            counts["errors"] += 1
        elif check.status == "skipped":
            ET.SubElement(case, "skipped", message=check.error)
            counts["skipped"] += 1
    for finding in sorted(gating, key=lambda f: f.id):
        case = ET.SubElement(suite, "testcase", classname=f"tfaudit.{finding.check}", name=finding.id, time="0")
        message = f"[{finding.severity}] {finding.title}: {finding.summary}"
        failure = ET.SubElement(case, "failure", message=message, type=finding.severity)
        failure.text = f"{message}\nsaving: {saving_text(finding)}\nfix: {finding.fix.text}\n{finding.fix.code}".rstrip()
        counts["tests"] += 1
        counts["failures"] += 1
    for key, value in counts.items():
        suite.set(key, str(value))
    suite.set("time", str(round((state.finished_at or state.started_at) - state.started_at, 3)))
    ET.indent(suite)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(suite, encoding="unicode") + "\n"


def write_junit(state: AuditState, path: str, gate: str) -> None:
    write_atomic(path, render_junit(state, gate))
