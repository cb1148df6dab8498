"""Helper processes a check calls functions in, one call at a time, that outlive the native crashes of what they run.

A check asks ``tfaudit.api.helper_process()`` for one process, or ``tfaudit.api.helper_pool()``
for a fork server that gives it several. It calls module-level functions by reference
(``helper.call("what it does", function, **kwargs)``); keyword arguments and replies travel as
JSON, so they are paths, numbers and strings. A native crash kills the helper only: the call
raises ``HelperCrashed`` naming the signal and what was running, and the next call starts a new
process.
"""
from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from typing import Any, Callable, Union

from tfaudit.api import HelperCrashed, HelperTimeout
from tfaudit.engine.launch import child_environment, python_command

DEADLINE_SHARE = 0.85  # of the budget's check time limit, for the work in the other process
MAX_REASON = 300

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
    and what was running, and the next call starts a new process. The first process is forked
    after ``import tensorflow`` while no op has run here (the worker, when it makes the check):
    such a fork is safe (``tfaudit.engine.zygote.fork_unsafe_reason``), and the child needs no
    import of its own (~3 s). Any later one, or one started where TensorFlow already ran (a
    fork then would hang), is a fresh interpreter (``main`` below, under ``tfaudit.engine.launch``'s import rule).
    Replies travel as JSON lines on a pipe of their own; the converter's prints go to the log.
    ``send`` queues a call without waiting (to load the model while the check computes its
    references, or in several processes at once); ``receive`` waits for its reply.
    """

    def __init__(self, env: dict[str, str] | None = None):
        self.env = env  # a fresh interpreter's environment on top of this one's (what TensorFlow reads at import)
        self.pid: int | None = None
        self.popen: subprocess.Popen | None = None
        self.to_child = self.from_child = None
        self.pending: list[str] = []  # what each unanswered call does, oldest first
        self.starts = 0
        self.forked = False
        self.deadline: float | None = None  # time.monotonic() by which every call must have answered
        self.unread = b""
        self.setup: tuple | None = None  # (what, target, kwargs) every new process runs first

    def start(self) -> "Helper":
        """Start the process now, so that its start overlaps with the caller's own work."""
        if self.pid is not None:
            return self
        from tfaudit.engine.zygote import fork_unsafe_reason, platform_cannot_fork

        if self.starts == 0 and not platform_cannot_fork():
            import tensorflow  # noqa: F401 - before the fork, and before any op: the child inherits it
        if self.starts == 0 and self.env is None and not fork_unsafe_reason():
            self._fork()
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

    def _fork(self) -> None:
        down_read, down_write = os.pipe()
        up_read, up_write = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: serve, and never return into the caller's code
            try:
                os.close(down_write)
                os.close(up_read)
                event_fd = os.environ.get("TFAUDIT_EVENT_FD")
                if event_fd:  # the worker's event pipe: the runner waits for its end of file
                    with contextlib.suppress(OSError):
                        os.close(int(event_fd))
                _serve(os.fdopen(down_read), os.fdopen(up_write, "w", buffering=1))
            finally:
                os._exit(0)
        os.close(down_read)
        os.close(up_write)
        self.pid, self.forked = pid, True
        self.to_child, self.from_child = os.fdopen(down_write, "w"), up_read

    def send(self, what: str, target: Target, **kwargs) -> None:
        import time

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
        import time

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
                self.close()
                raise HelperCrashed(f"the process died with {cause} while {crashed}", cause)
            self.pending.pop(0)
            reply = json.loads(line)
        return reply

    def _readline(self, seconds: float | None) -> bytes | None:
        """One reply line; b"" at end of file (the process died), None when ``seconds`` ran out."""
        import select
        import time

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
        try:
            return os.waitstatus_to_exitcode(os.waitpid(self.pid, 0)[1])
        except ChildProcessError:  # already reaped
            return None

    def close(self) -> None:
        """Stop the process: every reply this check needs has been read."""
        if self.pid is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, 9)
        self._wait()
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


class HelperPool:
    """Forks helper processes on request, from a process that forked while no op had run.

    A check that needs several helpers, each set up before its first op (thread pools, Grappler
    options), forks this server when it is made (see Helper) and asks it for a helper when it
    needs one; each is a Helper process serving the same calls. The helper's pipes are made
    here and handed over with SCM_RIGHTS. Where no fork is safe, every helper is a fresh
    interpreter instead. Helpers are the server's children, so their exit status is not seen
    here: a crash reads as "the process died".
    """

    def __init__(self):
        from tfaudit.engine.zygote import fork_unsafe_reason, platform_cannot_fork

        self.pid: int | None = None
        self.socket = None
        self.fresh_reason = platform_cannot_fork()
        if not self.fresh_reason:
            import tensorflow  # noqa: F401 - before the fork, and before any op: the server inherits it
            self.fresh_reason = fork_unsafe_reason()
        if self.fresh_reason:
            return
        import socket

        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        pid = os.fork()
        if pid == 0:
            try:
                ours.close()
                event_fd = os.environ.get("TFAUDIT_EVENT_FD")
                if event_fd:
                    with contextlib.suppress(OSError):
                        os.close(int(event_fd))
                _fork_helpers(theirs)
            finally:
                os._exit(0)
        theirs.close()
        self.pid, self.socket = pid, ours

    def spawn(self) -> Helper:
        """A started helper."""
        import socket

        if self.socket is None:  # no fork is safe here: Helper starts a fresh interpreter
            return Helper().start()
        down_read, down_write = os.pipe()
        up_read, up_write = os.pipe()
        socket.send_fds(self.socket, [b"spawn"], [down_read, up_write])
        os.close(down_read)
        os.close(up_write)
        reply = self.socket.recv(64)
        helper = Helper()
        helper.pid, helper.forked, helper.starts = int(reply or 0) or None, True, 1
        helper.to_child, helper.from_child = os.fdopen(down_write, "w"), up_read
        return helper

    def close(self) -> None:
        if self.socket is not None:
            self.socket.close()  # the server exits at end of file; its helpers were closed by their owners
            with contextlib.suppress(ChildProcessError):
                os.waitpid(self.pid, 0)
        self.socket = self.pid = None


def _fork_helpers(channel) -> None:
    """In the fork server: one helper per message, until the owner closes the socket."""
    import signal
    import socket

    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # helpers are reaped by the kernel
    while True:
        try:
            _, fds, _, _ = socket.recv_fds(channel, 16, 2)
        except OSError:
            return
        if len(fds) != 2:
            return
        pid = os.fork()
        if pid == 0:
            try:
                signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                channel.close()
                _serve(os.fdopen(fds[0]), os.fdopen(fds[1], "w", buffering=1))
            finally:
                os._exit(0)
        for fd in fds:
            os.close(fd)
        channel.send(str(pid).encode())


def _serve(requests, replies) -> None:
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
    _serve(sys.stdin, replies)
    return 0
