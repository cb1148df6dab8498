"""The real TUI on a real model in a real pseudo-terminal (tmux), with worker processes."""
import os
import shutil
import subprocess
import sys
import time

import psutil
import pytest

TESTS_DIR = os.path.dirname(os.path.abspath(__file__))
LAUNCHER = """
import sys
from tfaudit.engine.registry import discover_checks
from tfaudit.engine.runner import AuditJob
from tfaudit.tui import run_tui

model, report, *ids = sys.argv[1:]
specs = sorted((s for s in discover_checks() if s.id in ids), key=lambda s: ids.index(s.id))
sys.exit(run_tui(specs, AuditJob(model=model, budget="quick"), report=report))
"""


class Terminal:
    """A tmux session on its own server socket, so the test touches no other tmux."""

    def __init__(self, name: str) -> None:
        self.socket = f"tfaudit-test-{os.getpid()}-{name}"

    def tmux(self, *args: str) -> str:
        return subprocess.run(["tmux", "-L", self.socket, *args], capture_output=True, text=True, check=True).stdout

    def start(self, command: str, width: int = 100, height: int = 30) -> None:
        self.tmux("new-session", "-d", "-x", str(width), "-y", str(height), command)

    def screen(self) -> str:
        return self.tmux("capture-pane", "-p")

    def wait_for(self, text: str, timeout_s: float = 120) -> float:
        """Seconds until ``text`` is on screen."""
        started = time.monotonic()
        while text not in self.screen():
            assert time.monotonic() - started < timeout_s, f"{text!r} never appeared:\n{self.screen()}"
            time.sleep(0.005)
        return time.monotonic() - started

    def close(self) -> None:
        subprocess.run(["tmux", "-L", self.socket, "kill-server"], capture_output=True)


def worker_processes(check_id: str) -> list[psutil.Process]:
    """The worker running ``check_id``: forked from the zygote (named tfa:CHECK) or a fresh interpreter."""
    found = []
    for process in psutil.process_iter(["cmdline", "name"]):
        cmdline = process.info["cmdline"] or []
        fresh = "tfaudit.engine.worker" in cmdline and any(f'"check": "{check_id}"' in part for part in cmdline)
        if fresh or process.info["name"] == f"tfa:{check_id}"[:15]:
            found.append(process)
    return found


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux")
def test_tui_shows_the_report_live_stays_responsive_and_q_stops_the_worker(built_model, tmp_path):
    model = built_model("mlp")
    launcher, report, exit_file = tmp_path / "launch.py", tmp_path / "report.md", tmp_path / "exit"
    launcher.write_text(LAUNCHER)
    env = f"PYTHONPATH={TESTS_DIR} TFAUDIT_EXTRA_CHECKS=fake_checks:LowFinding,fake_checks:Hangs TERM=xterm-256color"
    command = f"cd {tmp_path} && env {env} {sys.executable} {launcher} {model} {report} fake-low fake-hang; echo $? > {exit_file}"
    terminal = Terminal("e2e")
    terminal.start(command)
    try:
        terminal.wait_for("Minor thing")  # the ranked table, live, while the audit goes on
        terminal.wait_for("sleeping")  # fake-hang is running in its worker
        workers = worker_processes("fake-hang")
        assert len(workers) == 1

        repaint_s = []
        for expected in ("severity ≥ critical", "severity ≥ high", "severity ≥ medium", "severity ≥ low", "all severities"):
            terminal.tmux("send-keys", "f")
            repaint_s.append(terminal.wait_for(expected, timeout_s=5))
        print(f"key press to repaint (f, through tmux): max {max(repaint_s) * 1000:.0f} ms, all {[round(s * 1000) for s in repaint_s]}")
        assert max(repaint_s) < 1.0  # 100 ms is the target; tmux polling and a loaded CI host add to it

        terminal.tmux("send-keys", "q")
        deadline = time.monotonic() + 30
        while not exit_file.exists() or not exit_file.read_text().strip():
            assert time.monotonic() < deadline, terminal.screen()
            time.sleep(0.1)
        assert exit_file.read_text().strip() == "130"  # quitting mid-audit is an interruption
        assert not any(w.is_running() and w.status() != psutil.STATUS_ZOMBIE for w in workers)
        text = report.read_text()
        assert "Minor thing" in text and "Interrupted" in text
    finally:
        terminal.close()
