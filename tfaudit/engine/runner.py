"""Runs the audit: one isolated worker process per job, events streamed back.

Each worker is forked from the audit's zygote (``tfaudit.engine.zygote``: TensorFlow imported
once, ~0.35 s a worker instead of ~2.5 s), or, with ``isolate="fresh"`` or where the zygote
cannot fork safely, a fresh interpreter (``tfaudit.engine.launch``, whose import rule both follow). Either way a
worker is a process in its own session, run one at a time so timings do not fight over the
cores. A worker that raises, crashes, is killed or runs past its time limit becomes an
``errored`` check with the cause and the tail of its output; the audit goes on.
"""
from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Iterable

from tfaudit.events import CheckFinished, CheckStarted, Event, LoadFailed, ModelLoaded, from_json
from tfaudit.engine.launch import WRONG_INSTALLATION, child_environment, python_command
from tfaudit.engine.registry import CheckSpec
from tfaudit.engine.worker import WORKER_ENVIRONMENT
from tfaudit.engine.zygote import ForkedWorker, Zygote, ZygoteUnavailable, kill_group, model_format_modules, platform_cannot_fork

STDERR_TAIL_LINES = 20
INVENTORY_TIMEOUT_S = 300.0
MEMORY_POLL_S = 0.25
DEFAULT_MEMORY_SHARE = 0.75  # of physical RAM: a leaking model must not take the machine down
MIB = 1024 * 1024


def default_memory_limit_mb() -> int:
    import psutil

    return int(psutil.virtual_memory().total * DEFAULT_MEMORY_SHARE / MIB)


def tree_rss(pid: int) -> int:
    """Resident memory of a process and its children (0 once it is gone)."""
    import psutil

    try:
        process = psutil.Process(pid)
        return sum(p.memory_info().rss for p in [process, *process.children(recursive=True)])
    except psutil.Error:
        return 0


@dataclass
class WorkerOutcome:
    events: list[Event] = field(default_factory=list)
    returncode: int | None = None
    timed_out: bool = False
    interrupted: bool = False
    over_memory: tuple[int, int] | None = None  # (rss, limit) in MiB when the limit killed it
    output_tail: str = ""

    def death_cause(self, timeout_s: float) -> str:
        if self.interrupted:
            return "interrupted by the user"
        if self.timed_out:
            return f"timed out after {timeout_s:g} s (the budget's check time limit)"
        if self.over_memory:
            rss, limit = self.over_memory
            return f"killed at {rss} MiB: over the worker memory limit of {limit} MiB (--memory-limit)"
        rc = self.returncode
        if rc == WRONG_INSTALLATION and self.output_tail:
            return self.output_tail.splitlines()[-1].removeprefix("tfaudit: ")
        if rc is not None and rc < 0:
            name = signal.Signals(-rc).name
            if name == "SIGKILL":
                return "worker killed by SIGKILL (out of memory? the kernel's OOM killer sends it)"
            if name == "SIGSEGV":
                return "worker crashed with SIGSEGV (segmentation fault in native code)"
            return f"worker died from signal {name}"
        return f"worker exited with code {rc} before finishing"


def _tail(path: str) -> str:
    with open(path, "rb") as log:
        log.seek(0, os.SEEK_END)
        log.seek(max(0, log.tell() - 16384))
        lines = log.read().decode("utf-8", "replace").splitlines()
    return "\n".join(lines[-STDERR_TAIL_LINES:])


def run_worker(
    job: dict[str, Any],
    on_event: Callable[[Event], None],
    timeout_s: float,
    python: str = sys.executable,
    stop: threading.Event | None = None,
    memory_limit_mb: int | None = None,
    zygote: Zygote | None = None,
) -> WorkerOutcome:
    """Start one worker, forward its events as they arrive, and reap it.

    A worker whose process tree holds more than ``memory_limit_mb`` resident is
    killed, as the kernel's OOM killer would, but with a cause we can name.

    Setting ``stop`` (from another thread, e.g. a UI's quit) acts like Ctrl-C:
    the worker is killed and KeyboardInterrupt is raised here.

    With a ``zygote`` the worker is forked from it; when it cannot fork, a fresh interpreter runs.
    """
    read_fd, write_fd = os.pipe()
    env = child_environment({**WORKER_ENVIRONMENT, "TFAUDIT_EVENT_FD": str(write_fd)})
    outcome = WorkerOutcome()
    with tempfile.NamedTemporaryFile(prefix="tfaudit-worker-", suffix=".log", delete=False) as log:
        log_path = log.name
    try:
        with open(log_path, "wb") as log:
            process = None
            if zygote is not None:
                try:
                    process = zygote.fork(job, write_fd, log.fileno())
                except ZygoteUnavailable:
                    pass
            if process is None:
                process = subprocess.Popen(
                    python_command("tfaudit.engine.worker", json.dumps(job), python=python),
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    pass_fds=(write_fd,),
                    env=env,
                    start_new_session=True,  # Ctrl-C reaches us, and we stop the worker
                )
        os.close(write_fd)
        lines: queue.Queue[str | None] = queue.Queue()

        def read_events() -> None:
            with os.fdopen(read_fd, "r", encoding="utf-8", errors="replace") as stream:
                for line in stream:
                    lines.put(line)
            lines.put(None)

        reader = threading.Thread(target=read_events, daemon=True)
        reader.start()
        deadline = time.monotonic() + timeout_s
        next_memory_poll = 0.0
        try:
            # Stop, deadline and memory are checked on every turn: a worker that streams
            # events without pause must still be stoppable.
            while True:
                if stop is not None and stop.is_set():
                    outcome.interrupted = True
                    break
                if time.monotonic() > deadline:
                    outcome.timed_out = True
                    break
                if memory_limit_mb and time.monotonic() >= next_memory_poll:
                    next_memory_poll = time.monotonic() + MEMORY_POLL_S
                    rss_mb = sum(tree_rss(pid) for pid in [process.pid, *helper_pids(process)]) // MIB
                    if rss_mb > memory_limit_mb:
                        outcome.over_memory = (rss_mb, memory_limit_mb)
                        break
                try:
                    line = lines.get(timeout=0.1)
                except queue.Empty:
                    continue
                if line is None:
                    break
                if line.strip():
                    event = from_json(line)
                    outcome.events.append(event)
                    on_event(event)
        except KeyboardInterrupt:
            outcome.interrupted = True
        finally:
            stopped_early = outcome.timed_out or outcome.interrupted or outcome.over_memory
            if process.poll() is None and stopped_early:
                _kill_group(process)
            outcome.returncode = _reap(process)
            if not stopped_early:
                reader.join(timeout=5)
        outcome.output_tail = _tail(log_path)
    finally:
        os.unlink(log_path)
    if outcome.interrupted:
        raise KeyboardInterrupt
    return outcome


def helper_pids(process) -> list[int]:
    """A forked worker's helpers, which the zygote forked; a fresh worker's are its own children."""
    return process.helper_pids() if isinstance(process, ForkedWorker) else []


def _kill_group(process) -> None:
    if isinstance(process, ForkedWorker):
        process.kill()
    else:
        kill_group(process.pid)


def _reap(process) -> int:
    try:
        return process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        _kill_group(process)
        return process.wait()


@dataclass
class AuditJob:
    model: str
    budget: str = "standard"
    signature: str | None = None
    inputs: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    check_timeout_s: float | None = None  # default: the budget's
    memory_limit_mb: int | None = None  # per worker; None: no limit
    scratch_dir: str | None = None  # set by run_audit for the audit's duration
    imports: list[str] = field(default_factory=list)  # --import: modules that register custom ops
    input_constraints: dict[str, Any] | None = None  # learned by the inventory, set by run_audit
    isolate: str = "fork"  # "fork": workers forked from a zygote; "fresh": a new interpreter each
    preload: list[str] = field(default_factory=list)  # modules every worker imports first, set by run_audit
    function: str | None = None  # --function: a restored function audited as if it were the serving signature

    def worker_job(self, **extra: Any) -> dict[str, Any]:
        return {
            "model": self.model,
            "signature": self.signature,
            "inputs": self.inputs,
            "budget": self.budget,
            "options": self.options,
            "scratch_dir": self.scratch_dir,
            "imports": self.imports,
            "input_constraints": self.input_constraints,
            "preload": self.preload,
            "function": self.function,
            **extra,
        }


def isolation_text(job: AuditJob, zygote: Zygote | None, forked: bool) -> str:
    if forked:
        return "fork (workers forked from one warm interpreter)"
    if job.isolate == "fresh":
        return "fresh (--isolate fresh)"
    reason = zygote.unavailable if zygote is not None else platform_cannot_fork()
    return f"fresh (cannot fork: {reason or 'the zygote did not start'})"


def load_inventory(
    job: AuditJob, on_event: Callable[[Event], None], stop: threading.Event | None = None, zygote: Zygote | None = None
) -> ModelLoaded | LoadFailed:
    """Load and inventory the model in a worker; a worker that dies is a load failure.

    The environment the worker describes gains ``isolation``: how this audit's check workers start.
    """
    def forward(event: Event) -> None:
        if not isinstance(event, ModelLoaded):  # sent below, with the isolation added
            on_event(event)

    outcome = run_worker(
        job.worker_job(mode="inventory"), forward, INVENTORY_TIMEOUT_S, stop=stop, memory_limit_mb=job.memory_limit_mb, zygote=zygote
    )
    for event in outcome.events:
        if isinstance(event, ModelLoaded):
            forked = zygote is not None and not zygote.unavailable  # how the checks' workers will start
            event = replace(event, environment={**event.environment, "isolation": isolation_text(job, zygote, forked)})
            on_event(event)
            return event
        if isinstance(event, LoadFailed):
            return event
    cause = outcome.death_cause(INVENTORY_TIMEOUT_S)
    if outcome.returncode == WRONG_INSTALLATION:  # not the model's fault: the line says what is
        failure = LoadFailed(message=cause)
    else:
        failure = LoadFailed(
            message=f"cannot load {job.model}: {cause}" + (f" — {outcome.output_tail.splitlines()[-1]}" if outcome.output_tail else "")
        )
    on_event(failure)
    return failure


def run_check(
    spec: CheckSpec,
    job: AuditJob,
    on_event: Callable[[Event], None],
    stop: threading.Event | None = None,
    zygote: Zygote | None = None,
) -> CheckFinished:
    from tfaudit.budget import BUDGETS

    timeout_s = job.check_timeout_s or BUDGETS[job.budget].check_timeout_s
    on_event(CheckStarted(spec.id, spec.title, spec.charts))
    if spec.load_error:
        finished = CheckFinished(spec.id, "errored", 0.0, f"cannot import check {spec.target}: {spec.load_error}")
        on_event(finished)
        return finished
    started = time.monotonic()

    def forward(event: Event) -> None:
        if not isinstance(event, CheckFinished):  # the runner sends the one final verdict
            on_event(event)

    try:
        outcome = run_worker(
            job.worker_job(mode="check", check=spec.id, target=spec.target), forward, timeout_s,
            stop=stop, memory_limit_mb=job.memory_limit_mb, zygote=zygote,
        )
    except KeyboardInterrupt:
        on_event(CheckFinished(spec.id, "errored", round(time.monotonic() - started, 3), "interrupted by the user"))
        raise
    reported = next((e for e in outcome.events if isinstance(e, CheckFinished)), None)
    if reported is None or outcome.timed_out or outcome.over_memory:
        finished = CheckFinished(
            spec.id, "errored", round(time.monotonic() - started, 3), outcome.death_cause(timeout_s), outcome.output_tail
        )
    elif reported.status == "errored":
        finished = CheckFinished(spec.id, "errored", reported.duration_s, reported.error, outcome.output_tail)
    else:
        finished = reported
    on_event(finished)
    return finished


def run_audit(
    specs: Iterable[CheckSpec],
    job: AuditJob,
    on_event: Callable[[Event], None],
    stop: threading.Event | None = None,
) -> bool:
    """Inventory, then each check in turn. Returns False when the model could not be loaded.

    Ctrl-C (or ``stop`` set from another thread) stops the running worker; checks
    not yet run are reported skipped, and KeyboardInterrupt propagates so the
    front end can write what finished.
    """
    specs = list(specs)
    # Fresh workers import what the zygote imports, so both start from the same memory and modules.
    checks = dict.fromkeys(s.target.split(":")[0] for s in specs if not s.load_error)
    job = replace(job, preload=[*job.imports, *model_format_modules(job.model), *checks])
    zygote = start_zygote(job)
    try:
        with tempfile.TemporaryDirectory(prefix="tfaudit-audit-") as scratch:
            job = replace(job, scratch_dir=scratch)
            loaded = load_inventory(job, on_event, stop, zygote)
            if isinstance(loaded, LoadFailed):
                return False
            function = loaded.inventory.get("function")  # --function: the checks audit it saved again as a signature
            job = replace(job, model=function["saved_as"] if function else job.model, signature=loaded.inventory.get("signature"),
                          input_constraints=loaded.inventory.get("input_constraints"))
            for position, spec in enumerate(specs):
                try:
                    run_check(spec, job, on_event, stop, zygote)
                except KeyboardInterrupt:
                    for rest in specs[position + 1 :]:
                        on_event(CheckFinished(rest.id, "skipped", 0.0, "not run: the audit was interrupted"))
                    raise
        return True
    finally:
        if zygote is not None:
            zygote.close()


def start_zygote(job: AuditJob) -> Zygote | None:
    """The audit's zygote, preloading ``job.preload``; None for fresh workers."""
    if job.isolate == "fresh" or platform_cannot_fork():
        return None
    return Zygote(job.preload, child_environment(WORKER_ENVIRONMENT))
