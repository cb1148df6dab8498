"""``tfaudit rejudge REPORT.json``: decide again from a report's stored measurements, without TensorFlow.

Each check that kept its ``measurements`` and has a ``judge`` is judged again; its findings,
metrics and chart samples are replaced by the judge's. What no judge can redo is carried over:
checks that stored no measurements, the statuses and errors, and the artifacts ``--fix-dir``
wrote and measured (attached again to the finding they belonged to). Then the reports asked for
are written, as after an audit.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import replace

from tfaudit.api import SEVERITIES, Finding, Measurements, Progress, Sample
from tfaudit.events import event_of
from tfaudit.exit_codes import EXIT_USAGE, exit_code
from tfaudit.report.profiles import PROFILES, Profile
from tfaudit.usage import Parser, UsageError


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="tfaudit rejudge", description="Judge a JSON report's stored measurements again and write its reports, without TensorFlow.")
    parser.add_argument("source", metavar="REPORT.json", help="a JSON report written by tfaudit --json")
    parser.add_argument("--report", metavar="FILE.md", help="write the Markdown report")
    parser.add_argument("--json", metavar="FILE.json", help="write the JSON report")
    parser.add_argument("--html", metavar="FILE.html", help="one self-contained HTML report")
    parser.add_argument("--junit", metavar="FILE.xml", help="JUnit XML")
    parser.add_argument("--fail-on", choices=[*SEVERITIES[:-1], "never"], default="never", help="exit 1 when a finding is at or above this severity")
    parser.add_argument("--profile", choices=PROFILES, help="rank in another deployment profile than the report's")
    parser.add_argument("--traffic", type=float, metavar="RPS", help="server profile: requests a second (default: the report's)")
    return parser


def read_report(path: str) -> dict:
    try:
        with open(path, encoding="utf-8") as f:
            report = json.load(f)
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}") from None
    except ValueError as exc:
        raise UsageError(f"{path} is not JSON: {exc}") from None
    if not isinstance(report, dict) or (report.get("tool") or {}).get("name") != "tfaudit":
        raise UsageError(f"{path} is not a tfaudit JSON report")
    if "measurements" not in report:
        raise UsageError(f"{path} holds no measurements (its tfaudit wrote none into reports): audit the model again to judge it again")
    if not report["measurements"]:
        raise UsageError(f"{path}: no check stored measurements (none finished), so there is nothing to judge again")
    return report


def judges() -> dict[str, object]:
    """Each installed check's judge, by check id (None for a check that has none)."""
    from tfaudit.engine.registry import discover_checks, load_target

    found = {}
    for spec in discover_checks():
        if not spec.load_error:
            found[spec.id] = getattr(load_target(spec.target), "judge", None)
    return found


def stored_state(report: dict):
    """The audit as the report recorded it (everything but what is judged again)."""
    from tfaudit.report.audit import AuditState, CheckState

    model = report.get("model") or {}
    state = AuditState(model_path=model.get("path", "?"), budget=report.get("budget", "?"))
    state.inventory, state.environment = model if "format" in model else None, report.get("environment") or {}
    state.started_at = time.mktime(time.strptime(report["started_at"], "%Y-%m-%dT%H:%M:%SZ")) - time.timezone
    state.finished_at = state.started_at + (report.get("duration_s") or 0.0)
    state.interrupted = bool(report.get("interrupted"))
    state.profile = Profile.from_dict(report.get("profile"))
    for check in report.get("checks") or []:
        state.checks[check["id"]] = CheckState(check["id"], check["title"], status=check["status"], fraction=1.0,
                                               duration_s=check.get("duration_s"), error=check.get("error") or "",
                                               charts=tuple(check.get("charts") or ()))
    state.metrics = dict(report.get("metrics") or {})
    state.measurements = dict(report["measurements"])
    state.findings = [Finding.from_dict(f) for f in report.get("findings") or []]
    for series in report.get("samples") or []:
        state.samples[(series["check"], series["series"])] = [(point[0], point[1], point[2] if len(point) > 2 else "") for point in series["points"]]
    return state


def with_stored_artifact(finding: Finding, stored: Finding | None) -> Finding:
    """The re-judged finding with the artifact --fix-dir wrote for it in the audit, if any."""
    if stored is None or not stored.artifact:
        return finding
    from tfaudit.engine.artifacts import attach

    artifact = stored.artifact
    return attach(finding, artifact["path"], artifact["what"], artifact["made_by"], stored.verified, artifact.get("measured") or {},
                  remeasured=bool(stored.verified))


def rejudge(state, judge_of: dict[str, object]) -> list[str]:
    """Judge every check with measurements again, in place; returns the ids judged."""
    judged = []
    for check, data in state.measurements.items():
        judge = judge_of.get(check)
        if judge is None:
            continue
        stored = {f.id: f for f in state.findings if f.check == check}
        items = list(judge(data))  # type: ignore[operator]
        state.findings = [f for f in state.findings if f.check != check]
        for series in {item.series for item in items if isinstance(item, Sample)}:
            state.samples[(check, series)] = []  # the judge's samples replace the stored ones, in place; gather's stay
        for item in items:
            if isinstance(item, Finding):
                item = with_stored_artifact(item, stored.get(item.id))
            if not isinstance(item, (Measurements, Progress)):
                state.apply(event_of(check, item))  # a metric replaces the stored one of its name
        if check in state.checks and state.checks[check].status in ("passed", "findings"):
            state.checks[check].status = "findings" if any(f.severity != "info" for f in state.findings if f.check == check) else "passed"
        judged.append(check)
    return judged


def run(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    from tfaudit.report import check_writable

    for option, path in (("--report", args.report), ("--json", args.json), ("--junit", args.junit), ("--html", args.html)):
        problem = path and check_writable(path)
        if problem:
            raise UsageError(f"{option}: cannot write {path}: {problem}")
    if args.traffic is not None and args.traffic <= 0:
        raise UsageError("--traffic must be a positive number of requests a second")
    state = stored_state(read_report(args.source))
    if args.profile or args.traffic:
        state.profile = replace(state.profile, name=args.profile or state.profile.name, traffic_rps=args.traffic or state.profile.traffic_rps)
    judged = rejudge(state, judges())
    from rich.console import Console

    from tfaudit.headless import print_summary
    from tfaudit.report.outputs import write_outputs

    written = write_outputs(state, report=args.report, json_path=args.json, junit=args.junit, html=args.html, fail_on=args.fail_on)
    print(f"tfaudit: judged again from {os.path.basename(args.source)}'s measurements: {', '.join(judged) or 'no check'}", file=sys.stderr)
    print_summary(state, Console(width=None if sys.stdout.isatty() else 120, highlight=False))
    for path in written:
        print(f"tfaudit: wrote {path}", file=sys.stderr)
    return exit_code(state, args.fail_on)


def main(argv: list[str]) -> int:
    try:
        return run(argv)
    except UsageError as exc:
        print(f"tfaudit rejudge: error: {exc}", file=sys.stderr)
        return EXIT_USAGE

