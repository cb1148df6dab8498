"""``tfaudit watch [options] -- COMMAND ARGS…`` (or ``-m MODULE ARGS…``): run a program unchanged, watching its traces.

The program runs as a child with this package's inject/ folder first on PYTHONPATH; its
sitecustomize hooks TensorFlow when the program imports it and writes events to a folder this
process reads live. This process imports no TensorFlow. The program keeps its stdin, stdout,
stderr and exit code; tfaudit's lines go to stderr, its summary to stdout after the program ends.
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time

from tfaudit.api import SEVERITIES
from tfaudit.exit_codes import EXIT_INTERRUPTED, exit_code

INJECT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "inject")
PACKAGE_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
POLL_S = 0.2
MAX_TRACES_BUDGET = "watch.max_traces_per_function"

EPILOG = """exit codes:
  the program's own exit code when it is not 0; otherwise
  0    nothing at or above --fail-on, budgets hold
  1    a finding at or above --fail-on, or a budget (e.g. --max-traces-per-function) exceeded
  2    usage error (no command, a command that cannot start)
  3    tfaudit could not hook this TensorFlow (its tracing internals moved)
  130  interrupted with Ctrl-C (reports hold what was seen)
"""


def build_parser():
    from tfaudit.usage import Parser

    parser = Parser(
        prog="tfaudit watch",
        usage="tfaudit watch [options] -- COMMAND ARGS…  |  tfaudit watch [options] -m MODULE ARGS…",
        description="Run a program unchanged and name every tf.function retrace in it: which function, which call site, which argument changed and how.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--headless", action="store_true", help="no TUI: trace lines on stderr, the summary on stdout")
    parser.add_argument("--report", metavar="FILE.md", help="write the Markdown report")
    parser.add_argument("--json", metavar="FILE.json", help="write the JSON report")
    parser.add_argument("--html", metavar="FILE.html", help="one self-contained HTML report (charts inlined)")
    parser.add_argument("--junit", metavar="FILE.xml", help="JUnit XML: a failure per finding at or above --fail-on (default high)")
    parser.add_argument("--record", metavar="FILE.jsonl", help="keep the raw trace events")
    parser.add_argument("--fail-on", choices=[*SEVERITIES[:-1], "never"], help="exit 1 when a finding is at or above this severity (default never)")
    parser.add_argument("--max-traces-per-function", type=int, metavar="N", help=f"exit 1 when a function is traced more than N times (the budget {MAX_TRACES_BUDGET})")
    parser.add_argument("--config", metavar="FILE.toml", help="options and budgets (default: [tool.tfaudit] in ./pyproject.toml)")
    return parser


def split_command(argv: list[str]) -> tuple[list[str], list[str]]:
    """(tfaudit's options, the command): the command follows ``--``, or is ``python -m MODULE …`` after ``-m``."""
    from tfaudit.usage import UsageError

    for i, token in enumerate(argv):
        if token == "--":
            return argv[:i], argv[i + 1:]
        if token == "-m":
            if i + 1 >= len(argv):
                raise UsageError("-m needs a module name")
            return argv[:i], [sys.executable, "-m", *argv[i + 1:]]
    raise UsageError("give the program to watch after --, e.g. tfaudit watch -- python serve.py, or -m MODULE")


def read_events(directory: str, offsets: dict[str, int]) -> list[dict]:
    """Complete new lines of every event file since the last read."""
    events = []
    for path in sorted(glob.glob(os.path.join(directory, "events-*.jsonl"))):
        with open(path, "rb") as f:
            f.seek(offsets.get(path, 0))
            data = f.read()
        end = data.rfind(b"\n") + 1
        offsets[path] = offsets.get(path, 0) + end
        for line in data[:end].splitlines():
            try:
                events.append(json.loads(line))
            except ValueError:
                continue
    return events


def trace_line(event: dict) -> str:
    from tfaudit.watch.analysis import change_text, site_text

    function = event["function"]
    changed = "; ".join(change_text(c) for c in event["changes"]) or ("new tf.function object" if event.get("new_object") else "first trace")
    failed = f" FAILED: {event['error']['message']}" if event.get("error") else ""
    return f"tfaudit watch: trace {event['trace_of_instance']} of {function['qualname']} from {site_text(event['call_site'])}: {changed} ({event['trace_ms']:.1f} ms){failed}"


def run(argv: list[str]) -> int:
    from tfaudit.usage import UsageError, check_outputs
    from tfaudit.config import ConfigError, load_config

    options, command = split_command(argv)
    args = build_parser().parse_args(options)
    if not command:
        raise UsageError("no command after --")
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        raise UsageError(str(exc)) from None
    fail_on = args.fail_on or config.options.get("fail_on") or "never"
    budgets = dict(config.budgets)
    if args.max_traces_per_function is not None:
        if args.max_traces_per_function < 1:
            raise UsageError("--max-traces-per-function must be at least 1")
        budgets[MAX_TRACES_BUDGET] = args.max_traces_per_function
    check_outputs(args)
    with tempfile.TemporaryDirectory(prefix="tfaudit-watch-") as directory:
        env = {**os.environ, "TFAUDIT_WATCH_DIR": directory, "TFAUDIT_WATCH_ROOT": PACKAGE_ROOT,
               "PYTHONPATH": os.pathsep.join(p for p in (INJECT, os.environ.get("PYTHONPATH", "")) if p)}
        interactive = not args.headless and sys.stdout.isatty() and sys.stdin.isatty()
        if interactive:
            from tfaudit.watch.tui import run_watch_tui

            events, status, wall_s, interrupted = run_watch_tui(command, env, directory)
        else:
            events, status, wall_s, interrupted = run_headless(command, env, directory)
    return conclude(command, events, status, wall_s, interrupted, fail_on, budgets, args)


def start(command: list[str], env: dict, **streams) -> subprocess.Popen:
    from tfaudit.usage import UsageError

    try:
        return subprocess.Popen(command, env=env, **streams)
    except OSError as exc:
        raise UsageError(f"cannot run {command[0]}: {exc.strerror or exc}") from None


def run_headless(command: list[str], env: dict, directory: str) -> tuple[list[dict], int | None, float, bool]:
    started = time.monotonic()
    process = start(command, env)
    events: list[dict] = []
    offsets: dict[str, int] = {}
    interrupted = False
    while True:
        try:
            status = process.wait(timeout=POLL_S)
            break
        except subprocess.TimeoutExpired:
            pass
        except KeyboardInterrupt:  # the terminal sent SIGINT to the program too; let it finish
            interrupted = True
        events += report_new(read_events(directory, offsets))
    events += report_new(read_events(directory, offsets))
    return events, status, time.monotonic() - started, interrupted


def report_new(events: list[dict]) -> list[dict]:
    """A stderr line per retrace of the user's functions (not their first trace, not TensorFlow's own functions)."""
    for event in events:
        if event["event"] == "trace" and not event["function"].get("library") and not event.get("initialization") \
                and (event["trace_of_instance"] > 1 or event.get("new_object") or event.get("error")):
            print(trace_line(event), file=sys.stderr, flush=True)
    return events


def conclude(command, events, status, wall_s, interrupted, fail_on, budgets, args) -> int:
    from rich.console import Console

    from tfaudit.headless import print_summary
    from tfaudit.report.outputs import finish_audit
    from tfaudit.watch.analysis import analyse
    from tfaudit.watch.session import summary_text, watch_state

    if args.record:
        with open(args.record, "w", encoding="utf-8") as out:
            out.writelines(json.dumps(e) + "\n" for e in events)
    errors = sorted({e["message"] for e in events if e["event"] in ("hook_error", "recorder_error")})
    dispatch = [e["ms"] for e in events if e["event"] == "dispatch"]
    versions = [e["tensorflow"] for e in events if e["event"] == "exit" and e.get("tensorflow")]
    hooked = any(e["event"] == "hooked" for e in events)
    if not any(e["event"] == "started" for e in events) and not errors:  # python -E / -I, a cleared environment, or not Python
        errors = ["tfaudit's watch was not loaded into the program (it is not Python, or runs with -E/-I or a cleared environment, "
                  "which ignore PYTHONPATH): nothing was watched"]
    analysis = analyse(events, wall_s, min(dispatch) if dispatch else None)
    text = shlex.join(command)
    state = watch_state(analysis, text, wall_s, exit_status=status, hook_error="; ".join(errors), tensorflow=versions[0] if versions else "",
                        interrupted=interrupted)
    written = finish_audit(state, budgets=budgets, report=args.report, json_path=args.json, junit=args.junit, html=args.html, fail_on=fail_on)
    out = Console(width=None if sys.stdout.isatty() else 120, highlight=False)
    if errors:
        print(f"tfaudit watch: {errors[0]}", file=sys.stderr)
    elif not hooked:
        out.print("tfaudit watch: the program never imported TensorFlow's tracing; nothing to watch.")
    out.print(summary_text(analysis, findings=False))
    print_summary(state, out)
    for path in written:
        print(f"tfaudit: wrote {path}", file=sys.stderr)
    if status:
        print(f"tfaudit watch: the program exited {status}", file=sys.stderr)
        return status if status > 0 else 128 - status
    return EXIT_INTERRUPTED if interrupted else exit_code(state, fail_on)
