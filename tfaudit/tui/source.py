"""Event sources for the TUI: the live audit (worker processes) or a recorded stream.

A source runs in a Textual thread worker and hands each event to ``emit``. It
must return soon after ``stop`` is set. The UI only ever sees events, so a
recorded stream drives the same app without TensorFlow (the tests do that).
"""
from __future__ import annotations

import threading
import time
from typing import Callable, Iterable, Protocol

from tfaudit.events import CheckFinished, CheckStarted, Event, from_json

Emit = Callable[[Event], None]


class EventSource(Protocol):
    model_path: str

    def planned_checks(self) -> list[tuple[str, str]]:
        """(id, title) of the checks the audit will run, in order."""

    def run(self, emit: Emit, stop: threading.Event) -> None:
        """The whole audit. Raises KeyboardInterrupt when stopped mid-way."""

    def rerun(self, check_id: str, emit: Emit, stop: threading.Event, fix_dir: str | None = None) -> None:
        """One check again; with ``fix_dir``, as with ``--fix-dir`` (it writes and re-measures its fixes there)."""


class AuditSource:
    """The real audit: tfaudit.engine.runner spawning one worker process per check."""

    def __init__(self, specs, job) -> None:
        self.specs = list(specs)
        self.job = job
        self.model_path = job.model

    def planned_checks(self) -> list[tuple[str, str]]:
        return [(spec.id, spec.title) for spec in self.specs]

    def run(self, emit: Emit, stop: threading.Event) -> None:
        from tfaudit.engine.runner import run_audit

        run_audit(self.specs, self.job, emit, stop=stop)

    def rerun(self, check_id: str, emit: Emit, stop: threading.Event, fix_dir: str | None = None) -> None:
        from dataclasses import replace

        from tfaudit.engine.runner import run_check

        spec = next(s for s in self.specs if s.id == check_id)
        job = replace(self.job, options={**self.job.options, "fix_dir": fix_dir}) if fix_dir else self.job
        run_check(spec, job, emit, stop=stop)


class ReplaySource:
    """A recorded ``--record`` stream, replayed with ``delay_s`` between events.

    ``gate``, when given, is waited on before each event: tests use it to hold
    the stream at a chosen point (e.g. with a check still running).
    """

    def __init__(self, events: Iterable[Event], model_path: str = "recorded", delay_s: float = 0.0,
                 gate: threading.Semaphore | None = None) -> None:
        self.events = list(events)
        self.model_path = model_path
        self.delay_s = delay_s
        self.gate = gate

    @classmethod
    def from_file(cls, path: str, **options) -> "ReplaySource":
        with open(path, encoding="utf-8") as stream:
            events = [from_json(line) for line in stream if line.strip()]
        inventory = next((getattr(e, "inventory") for e in events if hasattr(e, "inventory")), {})
        options.setdefault("model_path", inventory.get("path", path))
        return cls(events, **options)

    def planned_checks(self) -> list[tuple[str, str]]:
        return list({e.check: (e.check, e.title) for e in self.events if isinstance(e, CheckStarted)}.values())

    def run(self, emit: Emit, stop: threading.Event) -> None:
        self._replay(self.events, emit, stop)

    def rerun(self, check_id: str, emit: Emit, stop: threading.Event, fix_dir: str | None = None) -> None:
        self._replay([e for e in self.events if getattr(e, "check", None) == check_id], emit, stop)

    def _replay(self, events: list[Event], emit: Emit, stop: threading.Event) -> None:
        for position, event in enumerate(events):
            while self.gate is not None and not self.gate.acquire(timeout=0.05):
                if stop.is_set():
                    break
            if stop.is_set():
                self._interrupt(events[position:], emit)
                raise KeyboardInterrupt
            emit(event)
            if self.delay_s:
                time.sleep(self.delay_s)

    @staticmethod
    def _interrupt(rest: list[Event], emit: Emit) -> None:
        """What the runner reports on interruption: the running check errored, the others skipped."""
        started = [e.check for e in rest if isinstance(e, CheckStarted)]
        running = next((e.check for e in rest if isinstance(e, CheckFinished) and e.check not in started), None)
        if running:
            emit(CheckFinished(running, "errored", 0.0, "interrupted by the user"))
        for check in started:
            emit(CheckFinished(check, "skipped", 0.0, "not run: the audit was interrupted"))
