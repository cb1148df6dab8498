"""Inside the watched program (loaded by inject/sitecustomize.py): hook TensorFlow when it is imported, write events.

Events go to DIRECTORY/events-PID.jsonl, one JSON object a line, flushed as written, so the
watcher reads them live and keeps them if the program dies. A forked child writes its own file.
"""
from __future__ import annotations

import atexit
import importlib.abc
import json
import os
import sys
import time

from tfaudit.watch import hook
from tfaudit.watch.analysis import MIN_LOOP_CALLS
from tfaudit.watch.recorder import Recorder


class EventFile:
    def __init__(self, directory: str) -> None:
        self.directory = directory
        self.pid = None
        self.out = None

    def __call__(self, event: dict) -> None:
        if self.pid != os.getpid():  # first event, or a forked child
            self.pid = os.getpid()
            self.out = open(os.path.join(self.directory, f"events-{self.pid}.jsonl"), "a", encoding="utf-8")
        self.out.write(json.dumps(event, default=repr) + "\n")
        self.out.flush()


class HookOnImport(importlib.abc.MetaPathFinder):
    """Installs the hook right after TensorFlow's tracing module is executed (the program imports TensorFlow as usual)."""

    def __init__(self, on_loaded) -> None:
        self.on_loaded = on_loaded

    def find_spec(self, name, path, target=None):
        if name != hook.TRACING_MODULE:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(name, path, target)
            if spec is not None and spec.loader is not None and hasattr(spec.loader, "exec_module"):
                execute = spec.loader.exec_module

                def exec_module(module, execute=execute):
                    execute(module)
                    self.on_loaded()

                spec.loader.exec_module = exec_module
                return spec
        return None


def begin(directory: str) -> None:
    sink = EventFile(directory)
    recorder = Recorder(sink)
    os.register_at_fork(after_in_child=recorder.forget_calls)
    sink({"event": "started", "pid": os.getpid(), "argv": sys.argv, "time": time.time()})

    def on_loaded() -> None:
        try:
            hook.install(recorder)
            sink({"event": "hooked", "pid": os.getpid(), "t": recorder.now()})
        except hook.HookError as exc:
            sink({"event": "hook_error", "pid": os.getpid(), "message": str(exc)})

    def at_exit() -> None:
        recorder.flush()
        loops = any(o.calls >= MIN_LOOP_CALLS for objects in recorder.instances.values() for o in objects)
        tensorflow = hook.tensorflow_version()
        if loops and hook._installed:
            hook.uninstall(recorder)
            sink({"event": "dispatch", "pid": os.getpid(), "ms": hook.dispatch_ms()})
        sink({"event": "exit", "pid": os.getpid(), "t": recorder.now(), "tensorflow": tensorflow})

    if hook.TRACING_MODULE in sys.modules:
        on_loaded()
    else:
        sys.meta_path.insert(0, HookOnImport(on_loaded))
    atexit.register(at_exit)
