"""The zygote: one warm interpreter per audit that forks a worker for each job.

It imports TensorFlow, LiteRT, the audit's check modules and, for Keras models, tf_keras and
tfmot or Keras, once (~3.5 s), and then never runs an op, loads a model or lists a device: a
fork from such a process is safe, while a fork after any op hangs the child (TF #2448, #51832).
Before each fork it checks that this still holds (one thread, no eager context) and refuses
otherwise; the runner then starts fresh interpreters, as it does with ``--isolate fresh`` or
where ``os.fork`` is missing.

Each forked worker starts a session of its own (the runner kills its process group), writes
its output to the log and its events to the pipe the runner passed with the request, exactly
like a fresh worker (``tfaudit.engine.launch``'s import rule holds in both).

The zygote also forks the workers' helper processes (``tfaudit.engine.helpers``): a worker has
run ops by the time it needs one, and a fork from it would hang. Each worker gets a channel of
its own for that. A helper is the zygote's child in a session of its own, so the zygote relays
its exit status to the worker that asked for it (a crash's signal), tells the runner its pid
(whose memory limit and kill cover the worker's helpers too), and kills a worker's helpers
when that worker ends.

Protocol, over SOCK_SEQPACKET sockets (one JSON message a packet):
runner → zygote ``{"job": {...}}`` with two descriptors (event pipe, log);
zygote → runner ``{"ready": true}`` once, then per request ``{"pid": N}`` or
``{"refused": "why"}``, ``{"helper": N, "worker": W}`` as worker W's helpers start, and
``{"exited": N, "returncode": RC}`` as each worker ends.
worker → zygote ``{"helper": true}`` with three descriptors (requests, replies, log);
zygote → worker ``{"pid": N}`` or ``{"refused": "why"}``, and ``{"exited": N, "returncode": RC}``
as each of its helpers ends.
End of file on the runner's socket stops the zygote and every process it forked.
"""
from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import socket
import subprocess
import sys
import time
import traceback
from typing import Any

from tfaudit.engine.launch import python_command

PACKET_BYTES = 1 << 20
PRELOAD = ("tensorflow", "ai_edge_litert.interpreter", "tfaudit.engine.worker", "tfaudit.engine.input_probe", "tfaudit.api")
KERAS_PRELOAD = {  # by model format: what the checks import to open a Keras model (~0.4 s, wasted on others)
    "tf_keras_saved_model": ["tf_keras", "tensorflow_model_optimization"],
    "keras": ["keras"],
}
READY_TIMEOUT_S = 180.0


def kill_group(pid: int) -> None:
    """SIGKILL a worker's process group (its own session), or the worker alone before it made one."""
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


class ZygoteUnavailable(Exception):
    """The zygote cannot fork this job; the reason says why (run a fresh interpreter instead)."""


def platform_cannot_fork() -> str:
    """"" on Linux, else why workers cannot be forked here."""
    if not hasattr(os, "fork") or not sys.platform.startswith("linux"):
        return f"os.fork is not safe for TensorFlow on {sys.platform}"
    return ""


def fork_unsafe_reason() -> str:
    """"" when this process may fork a child that will run TensorFlow, else why not."""
    reason = platform_cannot_fork()
    if reason:
        return reason
    try:
        threads = len(os.listdir("/proc/self/task"))
    except OSError:
        return "cannot count this process's threads (/proc/self/task)"
    if threads != 1:
        return f"the process has {threads} threads (a fork copies none of them, and their locks)"
    context = sys.modules.get("tensorflow.python.eager.context")
    eager = getattr(context, "_context", None)
    if eager is not None and getattr(eager, "_initialized", True):
        return "TensorFlow's eager context is initialised (an op ran or a model was loaded)"
    return ""


def model_format_modules(path: str) -> list[str]:
    """What KERAS_PRELOAD adds for the model at ``path``, told from its files (no TensorFlow here)."""
    if path.endswith(".keras"):
        return KERAS_PRELOAD["keras"]
    if os.path.exists(os.path.join(path, "keras_metadata.pb")):
        return KERAS_PRELOAD["tf_keras_saved_model"]
    return []


def preload(modules: list[str]) -> None:
    """Import what every worker needs; a module that fails here fails again, with its error, in the worker."""
    import importlib

    for name in [*PRELOAD, *modules]:
        try:
            importlib.import_module(name)
        except Exception:
            pass
        if name == "tensorflow" and "tensorflow" in sys.modules:  # before any library the user names registers its ops
            from tfaudit.engine.trust import remember_core_ops

            remember_core_ops()


def name_process(name: str) -> None:
    """What ps, top and psutil's name() show for this process (Linux keeps 15 bytes), so forked workers are told apart."""
    import ctypes

    with contextlib.suppress(Exception):
        ctypes.CDLL(None).prctl(15, name.encode()[:15], 0, 0, 0)  # PR_SET_NAME


def run_forked_worker(job: dict[str, Any], event_fd: int, log_fd: int, helper_channel: socket.socket) -> None:
    """In the child: become a worker in a session of its own, and never return."""
    code = 1
    try:
        os.setsid()  # signal handlers are Python's defaults, as in a fresh interpreter: the zygote sets none
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(log_fd, 1)
        os.dup2(log_fd, 2)
        os.close(log_fd)
        os.environ["TFAUDIT_EVENT_FD"] = str(event_fd)
        name_process(f"tfa:{job.get('check') or job.get('mode')}")
        from tfaudit.engine import helpers, worker

        helpers.fork_helpers_from(helper_channel)
        code = worker.main([json.dumps(job)])
    except BaseException:
        traceback.print_exc()
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)


def run_forked_helper(requests_fd: int, replies_fd: int, log_fd: int) -> None:
    """In the child: serve a worker's calls in a session of its own, and never return."""
    try:
        os.setsid()
        os.dup2(log_fd, 1)
        os.dup2(log_fd, 2)
        os.close(log_fd)
        name_process("tfa:helper")
        from tfaudit.engine import helpers

        helpers.serve(os.fdopen(requests_fd), os.fdopen(replies_fd, "w", buffering=1))
    except BaseException:
        traceback.print_exc()
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(0)


def refusal(fds: list[int], expected: int, carried: str) -> str:
    """Why a request cannot be forked ("" when it can); a refused request's descriptors are closed here."""
    reason = fork_unsafe_reason() or ("" if len(fds) == expected else f"the request did not carry {carried}")
    if reason:
        for fd in fds:
            os.close(fd)
    return reason


class Forks:
    """What the zygote forked and still has to reap: workers (each with its helper channel) and their helpers."""

    def __init__(self, channel: socket.socket):
        self.channel = channel  # to the runner
        self.workers: dict[int, socket.socket | None] = {}  # pid → its helper channel (None once the worker closed it)
        self.helpers: dict[int, int] = {}  # helper pid → its worker's pid

    def tell(self, to: socket.socket | None, message: dict) -> None:
        if to is not None:
            with contextlib.suppress(OSError):
                to.send(json.dumps(message).encode())

    def fork(self, run, fds: list[int]) -> int:
        """Fork a child that runs ``run()`` (and never returns), holding none of the zygote's sockets; ``fds`` are the child's."""
        pid = os.fork()
        if pid == 0:
            self.channel.close()
            for other in self.workers.values():
                if other is not None:
                    other.close()
            run()
        for fd in fds:
            os.close(fd)
        return pid

    def fork_worker(self, job: dict[str, Any], fds: list[int]) -> int:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        pid = self.fork(lambda: (ours.close(), run_forked_worker(job, *fds, theirs)), fds)
        theirs.close()
        self.workers[pid] = ours
        return pid

    def fork_helper(self, worker: int) -> None:
        """Answer worker ``worker``'s request for a helper on its channel."""
        channel = self.workers[worker]
        try:
            data, fds, _, _ = socket.recv_fds(channel, PACKET_BYTES, 3)
        except ConnectionResetError:  # it exited with relayed exits unread (helpers it closed): as good as end of file
            data, fds = b"", []
        if not data:  # the worker closed its channel: it wants no more helpers
            self.end_helpers_of(worker)
            self.workers[worker] = None
            channel.close()
            return
        reason = refusal(fds, 3, "the helper's pipes and the log")
        if reason:
            self.tell(channel, {"refused": reason})
            return
        pid = self.fork(lambda: run_forked_helper(*fds), fds)
        self.helpers[pid] = worker
        self.tell(self.channel, {"helper": pid, "worker": worker})
        self.tell(channel, {"pid": pid})

    def end_helpers_of(self, worker: int) -> None:
        for helper, owner in self.helpers.items():
            if owner == worker:
                kill_group(helper)

    def reap(self) -> None:
        """Report each child that ended: a helper to its worker, a worker to the runner (its helpers end with it)."""
        for pid in [*self.helpers, *self.workers]:
            with contextlib.suppress(ChildProcessError):
                done, status = os.waitpid(pid, os.WNOHANG)
                if not done:
                    continue
                returncode = os.waitstatus_to_exitcode(status)
                if pid in self.helpers:
                    self.tell(self.workers.get(self.helpers.pop(pid)), {"exited": pid, "returncode": returncode})
                else:
                    self.end_helpers_of(pid)
                    channel = self.workers.pop(pid)
                    if channel is not None:
                        channel.close()
                    self.tell(self.channel, {"exited": pid, "returncode": returncode})

    def kill_all(self) -> None:
        for pid in [*self.workers, *self.helpers]:
            kill_group(pid)


def serve(channel: socket.socket) -> None:
    """The zygote's loop: fork a worker per request and a helper per worker's request, report each exit, stop at end of file."""
    forks = Forks(channel)
    try:
        while True:
            forks.reap()
            helper_channels = {c: pid for pid, c in forks.workers.items() if c is not None}
            ready = select.select([channel, *helper_channels], [], [], 0.05)[0]
            for asking in ready:
                if asking is not channel:
                    forks.fork_helper(helper_channels[asking])
                    continue
                data, fds, _, _ = socket.recv_fds(channel, PACKET_BYTES, 2)
                if not data:
                    return
                reason = refusal(fds, 2, "the event pipe and the log")
                if reason:
                    forks.tell(channel, {"refused": reason})
                    continue
                forks.tell(channel, {"pid": forks.fork_worker(json.loads(data)["job"], fds)})
    finally:
        forks.kill_all()


def main(argv: list[str]) -> int:
    channel = socket.socket(fileno=int(os.environ.pop("TFAUDIT_ZYGOTE_FD")))
    modules = json.loads(argv[0]) if argv else []
    preload(modules)
    reason = fork_unsafe_reason()
    channel.send(json.dumps({"ready": not reason, "reason": reason}).encode())
    if not reason:
        serve(channel)
    sys.stdout.flush()
    os._exit(0)  # TensorFlow's teardown at exit takes about a second and has nothing to save


class ForkedWorker:
    """A worker forked by the zygote: the parts of ``subprocess.Popen`` the runner uses."""

    def __init__(self, zygote: "Zygote", pid: int):
        self.zygote, self.pid = zygote, pid

    def poll(self) -> int | None:
        self.zygote.read(0)
        return self.zygote.returncodes.get(self.pid)

    def helper_pids(self) -> list[int]:
        """The helpers the zygote forked for this worker (each in a session of its own)."""
        self.zygote.read(0)
        return self.zygote.helpers.get(self.pid, [])

    def kill(self) -> None:
        """SIGKILL the worker's process group and its helpers'."""
        for pid in [self.pid, *self.helper_pids()]:
            kill_group(pid)

    def wait(self, timeout: float | None = None) -> int:
        end = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            if end is not None and time.monotonic() > end:
                raise subprocess.TimeoutExpired(f"worker {self.pid}", timeout)
            if not self.zygote.alive():  # and with it the only parent that could tell how the worker ended
                kill_group(self.pid)
                return -signal.SIGKILL
            self.zygote.read(0.05)
        return self.zygote.returncodes.pop(self.pid)


class Zygote:
    """The runner's handle on a zygote process (see the module docstring)."""

    def __init__(self, modules: list[str], env: dict[str, str], python: str = sys.executable):
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.channel = ours
        self.returncodes: dict[int, int] = {}
        self.helpers: dict[int, list[int]] = {}  # worker pid → its helpers' pids
        self.replies: list[dict] = []
        self.unavailable = ""
        self.ready = False
        self.process = subprocess.Popen(
            python_command("tfaudit.engine.zygote", json.dumps(modules), python=python),
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            pass_fds=(theirs.fileno(),),
            env={**env, "TFAUDIT_ZYGOTE_FD": str(theirs.fileno())},
            start_new_session=True,  # Ctrl-C reaches the runner, which stops the workers
        )
        theirs.close()

    def alive(self) -> bool:
        return self.process.poll() is None

    def read(self, seconds: float) -> None:
        """Take in the zygote's messages for up to ``seconds``: exits are kept, replies queued."""
        end = time.monotonic() + seconds
        while True:
            left = max(0.0, end - time.monotonic())
            if not select.select([self.channel], [], [], left)[0]:
                return
            data = self.channel.recv(PACKET_BYTES)
            if not data:
                self.unavailable = self.unavailable or f"the zygote exited ({self.process.poll()})"
                return
            message = json.loads(data)
            if "exited" in message:
                self.returncodes[message["exited"]] = message["returncode"]
                self.helpers.pop(message["exited"], None)
            elif "helper" in message:
                self.helpers.setdefault(message["worker"], []).append(message["helper"])
            else:
                self.replies.append(message)

    def reply(self, timeout_s: float) -> dict:
        end = time.monotonic() + timeout_s
        while not self.replies:
            if self.unavailable:
                raise ZygoteUnavailable(self.unavailable)
            if time.monotonic() > end:
                raise ZygoteUnavailable(f"the zygote did not answer within {timeout_s:g} s")
            self.read(min(0.1, max(0.0, end - time.monotonic())))
        return self.replies.pop(0)

    def wait_ready(self) -> None:
        if self.ready:
            return
        if self.unavailable:
            raise ZygoteUnavailable(self.unavailable)
        ready = self.reply(READY_TIMEOUT_S)
        if not ready.get("ready"):
            self.unavailable = ready.get("reason") or "the zygote is not ready"
            raise ZygoteUnavailable(self.unavailable)
        self.ready = True

    def fork(self, job: dict[str, Any], event_fd: int, log_fd: int) -> ForkedWorker:
        """A worker for ``job``; ZygoteUnavailable when the zygote cannot fork one safely."""
        self.wait_ready()
        try:
            socket.send_fds(self.channel, [json.dumps({"job": job}).encode()], [event_fd, log_fd])
        except OSError as exc:
            self.unavailable = f"the zygote is gone ({exc})"
            raise ZygoteUnavailable(self.unavailable) from exc
        reply = self.reply(30.0)
        if "pid" not in reply:
            self.unavailable = reply.get("refused") or "the zygote refused to fork"
            raise ZygoteUnavailable(self.unavailable)
        return ForkedWorker(self, reply["pid"])

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.channel.close()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

