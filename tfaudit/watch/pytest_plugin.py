"""pytest plugin: fail a test on retracing, as pytest-memray does on memory.

- ``@pytest.mark.tfaudit_max_traces(n)``: the test fails when one tf.function definition is
  traced more than ``n`` times while it runs; the failure names the function, the call site and
  what changed in each retrace.
- ``pytest --tfaudit-max-traces N``: the same limit for every test.
- ``pytest --tfaudit-watch``: watch the whole session and print its retracing findings at the end.

Registered through the ``pytest11`` entry point; importing it imports no TensorFlow.
"""
from __future__ import annotations

from collections import defaultdict

import pytest

MARKER = "tfaudit_max_traces"


def pytest_addoption(parser) -> None:
    group = parser.getgroup("tfaudit", "tf.function retracing (tfaudit watch)")
    group.addoption("--tfaudit-watch", action="store_true", help="watch tf.function traces through the session; print the findings at the end")
    group.addoption("--tfaudit-max-traces", type=int, metavar="N", help="fail a test in which one tf.function is traced more than N times")


def pytest_configure(config) -> None:
    config.addinivalue_line("markers", f"{MARKER}(n): fail the test when one tf.function is traced more than n times during it")
    config.pluginmanager.register(WatchPlugin(config), "tfaudit-watch-plugin")


def over_limit(events: list[dict], limit: int) -> list[str]:
    """One line per function definition traced more than ``limit`` times in ``events``."""
    from tfaudit.watch.analysis import change_text, site_text

    by_function = defaultdict(list)
    for event in events:
        if event.get("event") == "trace" and not event.get("error") and not event.get("initialization") and not event["function"].get("library"):
            by_function[event["key"]].append(event)
    lines = []
    for traces in by_function.values():
        if len(traces) > limit:
            first = traces[0]["function"]
            why = "; ".join(
                f"trace {i}: " + ("; ".join(change_text(c) for c in t["changes"]) or "new tf.function object") + f" (from {site_text(t['call_site'])})"
                for i, t in enumerate(traces[1:], 2)
            )
            lines.append(f"{first['qualname']} ({site_text({'file': first['file'], 'line': first['line']})}) was traced {len(traces)} times (limit {limit}): {why}")
    return lines


class WatchPlugin:
    def __init__(self, config) -> None:
        self.config = config
        self.session_watch = None

    def pytest_sessionstart(self, session) -> None:
        if self.config.getoption("tfaudit_watch"):
            from tfaudit.watch import Watch

            self.session_watch = Watch().start()

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_call(self, item):
        marker = item.get_closest_marker(MARKER)
        limit = marker.args[0] if marker and marker.args else self.config.getoption("tfaudit_max_traces")
        if limit is None:
            return (yield)
        watch = self.session_watch
        own = watch is None
        if own:
            from tfaudit.watch import Watch

            watch = Watch().start()
        begin = len(watch.events)
        try:
            result = yield
        finally:
            if own:
                watch.stop()
        problems = over_limit(watch.events[begin:], int(limit))
        if problems:
            pytest.fail("tfaudit: retracing over the limit: " + " | ".join(problems), pytrace=False)
        return result

    def pytest_terminal_summary(self, terminalreporter) -> None:
        if self.session_watch is None:
            return
        from tfaudit.watch.session import summary_text

        self.session_watch.stop()
        terminalreporter.write_sep("=", "tfaudit watch: tf.function traces")
        terminalreporter.write_line(summary_text(self.session_watch.analysis()))
