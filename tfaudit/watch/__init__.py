"""tfaudit watch: the retracing in a running program, named argument by argument.

In a notebook or a test::

    import tfaudit.watch
    with tfaudit.watch.watch() as session:
        serve()                      # any code that calls tf.function
    print(session.summary())         # or session.write(report="watch.md", json_path="watch.json")

or ``tfaudit.watch.start()`` … ``tfaudit.watch.report()``. From the shell,
``tfaudit watch -- python serve.py`` (tfaudit/watch/cli.py). Importing this module imports no
TensorFlow; ``start`` hooks it (tfaudit/watch/hook.py).
"""
from __future__ import annotations

import time
from typing import Any

from tfaudit.watch.analysis import MIN_LOOP_CALLS, Analysis, analyse


class Watch:
    """One watched stretch of this process: start, run code, stop, then read or write its findings."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.recorder = None
        self.tensorflow = ""
        self.started = self.stopped = None
        self.dispatch_ms: float | None = None

    def start(self) -> "Watch":
        from tfaudit.watch import hook
        from tfaudit.watch.recorder import Recorder

        self.recorder = Recorder(self.events.append)
        hook.install(self.recorder)
        self.tensorflow = hook.tensorflow_version()
        self.started = time.monotonic()
        return self

    def stop(self) -> "Watch":
        from tfaudit.watch import hook

        if self.recorder is not None and self.stopped is None:
            self.recorder.flush()
            hook.uninstall(self.recorder)
            self.stopped = time.monotonic()
            if any(f.get("calls", 0) >= MIN_LOOP_CALLS for e in self.events if e["event"] == "calls" for f in e["functions"]):
                self.dispatch_ms = hook.dispatch_ms()
        return self

    def __enter__(self) -> "Watch":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def wall_s(self) -> float:
        end = self.stopped if self.stopped is not None else time.monotonic()
        return end - (self.started or end)

    def analysis(self) -> Analysis:
        if self.recorder is not None and self.stopped is None:
            self.recorder.flush()
        return analyse(self.events, self.wall_s, self.dispatch_ms)

    def state(self, command: str = "in-process watch"):
        from tfaudit.watch.session import watch_state

        return watch_state(self.analysis(), command, self.wall_s, tensorflow=self.tensorflow)

    def summary(self) -> str:
        from tfaudit.watch.session import summary_text

        return summary_text(self.analysis())

    def write(self, *, report: str | None = None, json_path: str | None = None, junit: str | None = None, html: str | None = None,
              fail_on: str = "never") -> list[str]:
        from tfaudit.report.outputs import finish_audit

        return finish_audit(self.state(), report=report, json_path=json_path, junit=junit, html=html, fail_on=fail_on)


_current: Watch | None = None


def watch() -> Watch:
    """A context manager: ``with tfaudit.watch.watch() as session: …``."""
    return Watch()


def start() -> Watch:
    global _current
    if _current is not None:
        _current.stop()
    _current = Watch().start()
    return _current


def report() -> Analysis:
    """Stop the watch ``start()`` began and return its analysis (findings, functions, traces)."""
    if _current is None:
        raise RuntimeError("tfaudit.watch.report() needs tfaudit.watch.start() first")
    return _current.stop().analysis()
