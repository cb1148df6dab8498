"""The live view of ``tfaudit watch``: traces per function as they happen, the argument that changed, the program's output.

The program runs as a child (stdin closed, stdout and stderr shown in the log pane); its events
are read from the watch folder on a timer, so the screen never waits on the program. Never
imports TensorFlow.
"""
from __future__ import annotations

import os
import signal
import subprocess
import time

from rich.text import Text
from textual import work
from textual.app import App, ComposeResult
from textual.containers import Vertical
from textual.widgets import DataTable, Footer, Log, Static
from textual_plotext import PlotextPlot

from tfaudit.watch.analysis import change_text
from tfaudit.watch.cli import POLL_S, read_events, start

MAX_CHART_FUNCTIONS = 8
STOP_WAIT_S = 5.0


def change_markup(changes: list[dict]) -> Text:
    """What changed, with each argument's name highlighted."""
    text = Text()
    for i, change in enumerate(changes):
        if i:
            text.append("; ")
        described = change_text(change)
        name = change["argument"]
        text.append(name, style="bold yellow")
        text.append(described[len(name):])
    return text


class TraceChart(PlotextPlot):
    """Cumulative traces of each of the user's functions over the program's time."""

    def show(self, traces: list[dict]) -> None:
        plt = self.plt
        plt.clear_data()
        plt.clear_figure()
        plt.title("tf.function traces over time (your functions)")
        plt.xlabel("seconds since the program started")
        by_function: dict[str, list[float]] = {}
        for trace in traces:
            if not trace["function"].get("library"):
                by_function.setdefault(trace["function"]["qualname"], []).append(trace["t"])
        for name, times in sorted(by_function.items(), key=lambda kv: -len(kv[1]))[:MAX_CHART_FUNCTIONS]:
            plt.plot(times, list(range(1, len(times) + 1)), marker="o", label=f"{name} ({len(times)})")
        self.refresh()


class WatchApp(App):
    TITLE = "tfaudit watch"
    BINDINGS = [("q", "quit", "quit (stops the program if it still runs)")]
    CSS = """
    #status { height: 1; padding: 0 1; }
    #functions { height: 1fr; }
    TraceChart { height: 1fr; }
    #output { height: 1fr; border-top: solid $accent; }
    """

    def __init__(self, command: list[str], env: dict, directory: str) -> None:
        super().__init__()
        self.command, self.env, self.directory = command, env, directory
        self.events: list[dict] = []
        self.offsets: dict[str, int] = {}
        self.process: subprocess.Popen | None = None
        self.status: int | None = None
        self.interrupted = False
        self.started = time.monotonic()
        self.ended: float | None = None
        self.status_line = ""

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(id="status")
            yield DataTable(id="functions", cursor_type="row", zebra_stripes=True)
            yield TraceChart()
            yield Log(id="output", max_lines=2000)
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one("#functions", DataTable)
        table.add_columns("function", "defined at", "traces", "calls", "objects", "last change")
        self.process = start(self.command, {**self.env, "PYTHONUNBUFFERED": "1"}, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1)
        self.read_output()
        self.set_interval(POLL_S, self.poll)
        self.show_status()

    @work(thread=True, exclusive=True)
    def read_output(self) -> None:
        for line in self.process.stdout:
            self.call_from_thread(self.query_one("#output", Log).write_line, line.rstrip("\n"))

    def poll(self) -> None:
        new = read_events(self.directory, self.offsets)
        if new:
            self.events += new
            if any(e["event"] == "trace" for e in new):
                self.show_traces()
        if self.status is None and self.process is not None and self.process.poll() is not None:
            self.status, self.ended = self.process.returncode, time.monotonic()
            self.events += read_events(self.directory, self.offsets)
            self.show_traces()
        self.show_status()

    def traces(self) -> list[dict]:
        return [e for e in self.events if e["event"] == "trace"]

    def show_traces(self) -> None:
        from tfaudit.watch.analysis import analyse

        analysis = analyse(self.events, self.wall_s)
        table = self.query_one("#functions", DataTable)
        table.clear()
        last_changes = {}
        for trace in analysis.traces:
            if trace["changes"]:
                last_changes[trace["key"]] = trace["changes"]
        for row in analysis.functions:
            style = "dim" if row["library"] else ""  # TensorFlow's and Keras' own functions
            table.add_row(Text(row["function"], style=style), Text(os.path.basename(row["defined_at"]), style=style),
                          row["traces"], row["calls"], row["objects"], change_markup(last_changes.get(row["key"], [])))
        self.query_one(TraceChart).show(analysis.traces)

    @property
    def wall_s(self) -> float:
        return (self.ended or time.monotonic()) - self.started

    def show_status(self) -> None:
        traces = self.traces()
        state = "running" if self.status is None else f"exited {self.status} — press q for the summary"
        hooked = any(e["event"] == "hooked" for e in self.events)
        errors = [e["message"] for e in self.events if e["event"] in ("hook_error", "recorder_error")]
        note = f" · [red]{errors[0]}[/]" if errors else "" if hooked else " · TensorFlow not imported yet"
        self.status_line = f"[b]{' '.join(self.command)}[/] · {state} · {len(traces)} traces · {self.wall_s:.1f} s{note}"
        self.query_one("#status", Static).update(self.status_line)

    def action_quit(self) -> None:
        if self.status is None and self.process is not None:
            self.interrupted = True
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=STOP_WAIT_S)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            self.status, self.ended = self.process.returncode, time.monotonic()
            self.events += read_events(self.directory, self.offsets)
        self.exit()


def run_watch_tui(command: list[str], env: dict, directory: str) -> tuple[list[dict], int | None, float, bool]:
    app = WatchApp(command, env, directory)
    app.run()
    return app.events, app.status, app.wall_s, app.interrupted
