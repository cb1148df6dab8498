"""Helper processes a check calls functions in, one call at a time, that outlive the native crashes of what they run.

A check asks ``tfaudit.api.helper_process()`` for a process and calls module-level functions
by reference (``helper.call("what it does", function, **kwargs)``); keyword arguments and
replies travel as JSON, so they are paths, numbers and strings. A native crash kills the helper
only: the call raises ``HelperCrashed`` naming the signal and what was running, and the next call
starts a new process.

In a worker forked from the zygote, every helper is forked by the zygote too
(``tfaudit.engine.zygote``): TensorFlow is imported there and no op has run, so the helper needs
no import of its own (~3 s) and may still set what takes effect only before the first op (thread
pools, Grappler options). Elsewhere (``--isolate fresh``, no ``os.fork``, the zygote refused) and
for a helper with an environment of its own, a helper is a fresh interpreter under
``tfaudit.engine.launch``'s import rule.
"""
from __future__ import annotations

import contextlib
import json
import os
import select
import socket
import subprocess
import sys
import threading
import time
from typing import Any, Callable, Union

from tfaudit.api import HelperCrashed, HelperTimeout
from tfaudit.engine.launch import child_environment, python_command

DEADLINE_SHARE = 0.85  # of the budget's check time limit, for the work in the other process
MAX_REASON = 300
PACKET_BYTES = 1 << 16
EXIT_RELAY_S = 10.0  # how long a crashed helper's exit status may take to come back from the zygote

Target = Union[str, Callable[..., Any]]


def target_name(target: Target) -> str:
    """"module:function" for a module-level function (or that string itself)."""
    if isinstance(target, str):
        return target
    if target.__qualname__ != target.__name__:
        raise ValueError(f"{target.__qualname__}: a helper calls module-level functions only")
    return f"{target.__module__}:{target.__name__}"


def one_line(exc: BaseException) -> str:
    """The converter's first real error (its messages run to pages of MLIR locations)."""
    for error in getattr(exc, "errors", None) or []:
        message = str(getattr(error, "error_message", "")).strip().splitlines()
        if message:
            return _clip(message[0])
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    noise = ("loc(", "<unknown>", "error: loc", "Graph execution error:", "Detected at node", "<stack traces unavailable>", "[[")
    useful = [line for line in lines if not line.startswith(noise)]
    text = (useful or lines or [type(exc).__name__])[0]
    select = next((line for line in lines if line.startswith("TF Select ops:")), "")
    return _clip(f"{text} ({select})" if select and select not in text else text)


def _clip(text: str) -> str:
    return text if len(text) <= MAX_REASON else text[: MAX_REASON - 3] + "..."


def exit_cause(returncode: int | None) -> str:
    import signal

    if returncode is not None and returncode < 0:
        try:
            return signal.Signals(-returncode).name
        except ValueError:
            pass
    return f"exit status {returncode}"


class Helper:
    """Calls functions of the checks in another process, one at a time, in order.

    A native crash kills that process only: the call raises HelperCrashed naming the signal
    and what was running, and the next call starts a new process (see the module docstring for
    where it comes from). Replies travel as JSON lines on a pipe of their own; the converter's
    prints go to the worker's log. ``send`` queues a call without waiting (to load the model while
    the check computes its references, or in several processes at once); ``receive`` waits for
    its reply.
    """

    def __init__(self, env: dict[str, str] | None = None):
        self.env = env  # a fresh interpreter's environment on top of this one's (what TensorFlow reads at import)
        self.pid: int | None = None
        self.popen: subprocess.Popen | None = None
        self.to_child = self.from_child = None
        self.pending: list[str] = []  # what each unanswered call does, oldest first
        self.starts = 0
        self.deadline: float | None = None  # time.monotonic() by which every call must have answered
        self.unread = b""
        self.setup: tuple | None = None  # (what, target, kwargs) every new process runs first

    def start(self) -> "Helper":
        """Start the process now, so that its start overlaps with the caller's own work."""
        if self.pid is not None:
            return self
        forked = _zygote.fork() if _zygote is not None and self.env is None else None
        if forked is not None:
            self.pid, self.to_child, self.from_child = forked
        else:
            self.popen = subprocess.Popen(
                python_command("tfaudit.engine.helpers"), stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                env=child_environment(self.env),
            )
            self.pid, self.to_child, self.from_child = self.popen.pid, self.popen.stdin, self.popen.stdout.fileno()
        self.pending, self.unread, self.starts = [], b"", self.starts + 1
        if self.setup is not None:
            what, target, kwargs = self.setup
            self.send(what, target, **kwargs)
        return self

    def prepare(self, what: str, target: Target, **kwargs) -> None:
        """A call every process runs first (this one now, and any restarted after a crash); its reply is not awaited."""
        self.setup = (what, target, kwargs)
        if self.pid is None:
            self.start()
        else:
            self.send(what, target, **kwargs)

    def send(self, what: str, target: Target, **kwargs) -> None:
        if self.deadline is not None and time.monotonic() >= self.deadline:
            raise HelperTimeout(f"not started: the check's time limit is near ({what})")
        self.start()
        self.pending.append(what)
        try:
            self.to_child.write(json.dumps({"target": target_name(target), "kwargs": kwargs}) + "\n")
            self.to_child.flush()
        except BrokenPipeError:
            pass  # it died: the reply loop below reports why

    def call(self, what: str, target: Target, **kwargs) -> dict[str, Any]:
        """The call's JSON reply; HelperCrashed when the process dies, HelperTimeout at the deadline."""
        self.send(what, target, **kwargs)
        return self.receive()

    def receive(self) -> dict[str, Any]:
        """Wait for every call sent: the last one's reply (call() is send() and receive())."""
        reply: dict[str, Any] = {}
        while self.pending:
            left = None if self.deadline is None else self.deadline - time.monotonic()
            line = self._readline(left)
            if line is None:
                running = self.pending[0]
                self.close()
                raise HelperTimeout(f"stopped at the check's time limit while {running}")
            if not line:
                cause = exit_cause(self._wait())
                crashed = self.pending[0]
                self.close(reaped=True)
                raise HelperCrashed(f"the process died with {cause} while {crashed}", cause)
            self.pending.pop(0)
            reply = json.loads(line)
        return reply

    def _readline(self, seconds: float | None) -> bytes | None:
        """One reply line; b"" at end of file (the process died), None when ``seconds`` ran out."""
        end = None if seconds is None else time.monotonic() + seconds
        while b"\n" not in self.unread:
            left = None if end is None else end - time.monotonic()
            if left is not None and left <= 0:
                return None
            ready, _, _ = select.select([self.from_child], [], [], left)
            if not ready:
                return None
            chunk = os.read(self.from_child, 1 << 16)
            if not chunk:
                return b""
            self.unread += chunk
        line, self.unread = self.unread.split(b"\n", 1)
        return line

    def _wait(self) -> int | None:
        if self.popen is not None:
            return self.popen.wait()
        return _zygote.exit_status(self.pid) if _zygote is not None else None

    def close(self, reaped: bool = False) -> None:
        """Stop the process (``reaped``: it ended and its status was read): every reply this check needs has been read."""
        if self.pid is None:
            return
        if not reaped:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, 9)
            if self.popen is None and _zygote is not None:
                _zygote.forget(self.pid)  # the zygote reaps it; nothing waits for a process that was told to die
        if self.popen is not None:
            self.popen.wait()
        with contextlib.suppress(OSError):
            self.to_child.close()
        if self.popen is not None:
            self.popen.stdout.close()
        else:
            with contextlib.suppress(OSError):
                os.close(self.from_child)
        self.pid = self.popen = self.to_child = self.from_child = None

    def __enter__(self) -> "Helper":
        return self.start()

    def deadline_for(self, started: float, budget) -> None:
        """Calls must answer by DEADLINE_SHARE of the check's time limit, counted from ``started``."""
        self.deadline = started + DEADLINE_SHARE * budget.check_timeout_s

    def __exit__(self, *exc) -> None:
        self.close()


class ZygoteLine:
    """A forked worker's channel to the zygote, which forks its helpers and relays how each ended."""

    def __init__(self, channel: socket.socket):
        self.channel = channel
        self.exits: dict[int, int] = {}  # helper pid → its exit status, as relayed
        self.forgotten: set[int] = set()  # helpers killed on purpose: their exit is not kept
        self.lock = threading.Lock()

    def fork(self) -> tuple[int, Any, int] | None:
        """A new helper's (pid, requests' writer, replies' descriptor); None when the zygote cannot fork one."""
        down_read, down_write = os.pipe()
        up_read, up_write = os.pipe()
        reply: dict = {}
        try:
            with self.lock:
                socket.send_fds(self.channel, [b'{"helper": true}'], [down_read, up_write, sys.stdout.fileno()])
                reply = self._next_reply(30.0) or {}
        except OSError:
            pass
        finally:
            os.close(down_read)
            os.close(up_write)
        if "pid" not in reply:
            os.close(down_write)
            os.close(up_read)
            return None
        return reply["pid"], os.fdopen(down_write, "w"), up_read

    def exit_status(self, pid: int) -> int | None:
        """How helper ``pid`` ended, once the zygote has reaped it (None if that takes over EXIT_RELAY_S)."""
        end = time.monotonic() + EXIT_RELAY_S
        with self.lock:
            while pid not in self.exits and time.monotonic() < end:
                try:
                    self._next_reply(min(0.1, end - time.monotonic()))
                except OSError:
                    break
            return self.exits.pop(pid, None)

    def forget(self, pid: int) -> None:
        with self.lock:
            if self.exits.pop(pid, None) is None:
                self.forgotten.add(pid)

    def _next_reply(self, seconds: float) -> dict | None:
        """The zygote's next answer to a request, keeping the exits it relays meanwhile; None after ``seconds``."""
        end = time.monotonic() + seconds
        while True:
            left = end - time.monotonic()
            if left <= 0 or not select.select([self.channel], [], [], left)[0]:
                return None
            data = self.channel.recv(PACKET_BYTES)
            if not data:
                raise OSError("the zygote is gone")
            message = json.loads(data)
            if "exited" not in message:
                return message
            if message["exited"] in self.forgotten:
                self.forgotten.discard(message["exited"])
            else:
                self.exits[message["exited"]] = message["returncode"]


_zygote: ZygoteLine | None = None


def fork_helpers_from(channel: socket.socket) -> None:
    """In a worker the zygote forked: ask it for every helper from now on."""
    global _zygote
    _zygote = ZygoteLine(channel)


def serve(requests, replies) -> None:
    """The child: run each requested call, answer with its JSON result (errors as {"error"})."""
    import importlib

    for line in requests:
        job = json.loads(line)
        module, name = job["target"].split(":")
        try:
            result = getattr(importlib.import_module(module), name)(**job["kwargs"])
        except Exception as exc:  # anything raised is an answer, only a crash is not
            result = {"error": one_line(exc)}
        replies.write(json.dumps(result) + "\n")


def main(argv: list[str]) -> int:
    """A fresh helper (``tfaudit.engine.launch``): serve calls from stdin until it closes."""
    replies = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # the converter's prints go to stderr, never into the replies
    serve(sys.stdin, replies)
    return 0
