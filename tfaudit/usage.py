"""What every command line shares (the audit's, watch's, the TUI's `x`): one-line usage errors, and the --fix-dir rule."""
from __future__ import annotations

import argparse
import os
import sys


class UsageError(Exception):
    pass


def check_outputs(args: argparse.Namespace) -> None:
    """Every report file the command line names can be written (its missing folders made), or one usage error, before any work."""
    from tfaudit.report import check_writable

    for option in ("report", "json", "junit", "html", "record"):
        path = getattr(args, option)
        problem = path and check_writable(path)
        if problem:
            raise UsageError(f"--{option}: cannot write {path}: {problem}")


class Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, not argparse's usage block
        raise UsageError(message)


def checked_fix_dir(path: str, model: str) -> str:
    """The --fix-dir folder, made if missing; never the model's own folder or one inside it (the model is never written)."""
    fix, model = os.path.realpath(path), os.path.realpath(model)
    own = model if os.path.isdir(model) else os.path.dirname(model)
    if fix == own or fix.startswith(own + os.sep):
        raise UsageError(f"--fix-dir {path} is the model's own directory (or inside it); give another folder: the model is never written")
    if os.path.exists(fix) and not os.path.isdir(fix):
        raise UsageError(f"--fix-dir {path} is not a directory")
    try:
        os.makedirs(fix, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"--fix-dir: cannot create {path}: {exc.strerror}") from None
    if not os.access(fix, os.W_OK):
        raise UsageError(f"--fix-dir {path} is not writable")
    return fix


def loaded_baseline(path: str | None) -> tuple[str, dict] | None:
    """``--baseline OLD.json``, read now: a report that cannot be used is one usage error, before any work."""
    if not path:
        return None
    from tfaudit.report.gates import BaselineError, load_baseline

    try:
        return path, load_baseline(path)
    except BaselineError as exc:
        raise UsageError(str(exc)) from None


def run_front_end(specs, job, headless: bool, **outputs) -> int:
    """The TUI in a terminal, else headless; either writes the reports and returns the exit code."""
    if not headless and sys.stdout.isatty() and sys.stdin.isatty():
        from tfaudit.tui import run_tui

        return run_tui(specs, job, **outputs)
    from tfaudit.headless import run_headless

    return run_headless(specs, job, **outputs)

