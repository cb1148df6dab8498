"""Runs inside the watched program: turns the hook's calls and traces into plain events.

Standard library only (it is imported into the user's process before anything else). Each trace
event names the function (where it was defined, and which ``tf.function`` object of that
definition it is), the call site in the user's code, the traced signature, what changed against
the closest earlier trace of the same object, the trace time, the graph's op count and the
growth of anonymous memory. Call counts and call times are summed per function object and sent
at most once a second and at exit.
"""
from __future__ import annotations

import functools
import linecache
import os
import re
import sys
import sysconfig
import threading
import time
import weakref
from collections import Counter
from typing import Any, Callable

LIBRARY_PACKAGES = frozenset({
    "tensorflow", "keras", "tf_keras", "tfaudit", "numpy", "absl", "tensorflow_text", "tensorflow_hub", "keras_hub",
    "keras_nlp", "tensorflow_model_optimization", "tree", "optree", "wrapt", "google", "_pytest", "pytest", "pluggy",
})
STDLIB = tuple(os.path.realpath(sysconfig.get_paths()[key]) for key in ("stdlib", "platstdlib"))
CALL_SITE_SAMPLE_EVERY = 64  # calls between two stack walks for the call-site counts
MAX_CALL_TIMES = 2000  # non-tracing call durations kept per function object, for the median
FLUSH_INTERVAL_S = 1.0


def anonymous_memory_bytes() -> int | None:
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("RssAnon:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


@functools.lru_cache(maxsize=4096)
def is_library_file(module: str, filename: str) -> bool:
    if module.partition(".")[0] in LIBRARY_PACKAGES:
        return True
    return filename.startswith("<") or "__autograph_generated_file" in filename or os.path.realpath(filename).startswith(STDLIB)


def is_library_frame(frame) -> bool:
    return is_library_file(frame.f_globals.get("__name__") or "", frame.f_code.co_filename)


def user_call_site(frame) -> dict[str, Any] | None:
    """The innermost frame of the user's own code on the stack, with its source line."""
    while frame is not None and is_library_frame(frame):
        frame = frame.f_back
    if frame is None:
        return None
    filename, line = frame.f_code.co_filename, frame.f_lineno
    return {"file": filename, "line": line, "function": frame.f_code.co_qualname, "code": linecache.getline(filename, line).strip()}


def is_keras_predict(frame) -> bool:
    if (frame.f_globals.get("__name__") or "").partition(".")[0] not in ("keras", "tf_keras"):
        return False
    wrapped = frame.f_locals.get("fn") if frame.f_code.co_name == "error_handler" else None  # Keras' traceback filter
    return frame.f_code.co_name == "predict" or getattr(wrapped, "__name__", "") == "predict"


def keras_predict_on_stack(frame) -> bool:
    while frame is not None:
        if is_keras_predict(frame):
            return True
        frame = frame.f_back
    return False


def code_on_stack(frame, code) -> bool:
    while frame is not None:
        if frame.f_code is code:
            return True
        frame = frame.f_back
    return False


def name_on_stack(frame, name: str) -> bool:
    while frame is not None:
        if frame.f_code.co_name == name:
            return True
        frame = frame.f_back
    return False


def keras_predict_in_traceback(error: BaseException) -> bool:
    tb = error.__traceback__
    while tb is not None:
        if is_keras_predict(tb.tb_frame):
            return True
        tb = tb.tb_next
    return False


AUTOGRAPH_USER_FRAME = re.compile(r'File "([^"]+)", line (\d+), in (\S+)  \*\n\s*(.*)')


def error_summary(error: BaseException) -> dict[str, Any]:
    """The exception's last line, and the user's line inside the function (autograph marks it with '*')."""
    text = str(error).strip()
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    found = AUTOGRAPH_USER_FRAME.findall(text)
    site = None
    if found:
        filename, line, function, code = found[-1]
        site = {"file": filename, "line": int(line), "function": function, "code": code.strip()}
    last = lines[-1] if lines else ""
    message = last if last.startswith(type(error).__name__) else f"{type(error).__name__}: {last}"
    return {"message": message[:300], "site": site, "keras_predict": keras_predict_in_traceback(error)}


def python_function_of(tracing_options) -> tuple[Any, Any]:
    """(the user's function, the object it is bound to or None), through decorators, partials and callable objects."""
    function, bound = tracing_options.python_function, None
    for _ in range(20):
        if hasattr(function, "__wrapped__"):
            function = function.__wrapped__
        elif isinstance(function, functools.partial):
            function = function.func
        elif getattr(function, "__self__", None) is not None and hasattr(function, "__func__"):
            bound, function = function.__self__, function.__func__
        elif not hasattr(function, "__code__") and callable(function) and hasattr(type(function), "__call__"):
            function = type(function).__call__
        else:
            break
    return function, bound


def definition(tracing_options) -> dict[str, Any]:
    function, bound = python_function_of(tracing_options)
    code = getattr(function, "__code__", None)
    qualname = getattr(function, "__qualname__", None) or tracing_options.name
    method_of = type(bound).__name__ if bound is not None else None
    if code is None:
        return {"name": tracing_options.name, "qualname": qualname, "file": "", "line": 0, "library": True, "method_of": method_of}
    module = getattr(function, "__module__", "") or ""
    library = module.partition(".")[0] in LIBRARY_PACKAGES or os.path.realpath(code.co_filename).startswith(STDLIB)
    if library:  # tf.data's and Keras' functions share a few definitions; their names tell them apart
        qualname = tracing_options.name or qualname
    return {"name": tracing_options.name, "qualname": qualname, "file": code.co_filename, "line": code.co_firstlineno, "library": library,
            "method_of": method_of}


def percentiles_ms(seconds: list[float]) -> dict[str, float] | None:
    if not seconds:
        return None
    ordered = sorted(seconds)
    at = lambda q: round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1e3, 4)  # noqa: E731
    return {"p10": at(0.1), "p50": at(0.5), "p90": at(0.9), "n": len(ordered)}


def changes(new: dict[str, dict], old: dict[str, dict]) -> list[dict[str, Any]]:
    """How signature ``new`` differs from ``old``, argument by argument (paths like ``x`` or ``data[0]``)."""
    found = []
    for path in sorted(set(new) | set(old)):
        a, b = old.get(path), new.get(path)
        if a is None or b is None:
            found.append({"argument": path, "change": "structure", "old": a and a["kind"], "new": b and b["kind"]})
        elif a["kind"] != b["kind"]:
            found.append({"argument": path, "change": "kind", "old": a["kind"], "new": b["kind"]})
        elif b["kind"] == "tensor":
            if a["dtype"] != b["dtype"]:
                found.append({"argument": path, "change": "dtype", "old": a["dtype"], "new": b["dtype"]})
            if a["shape"] is None or b["shape"] is None or len(a["shape"]) != len(b["shape"]):
                if a["shape"] != b["shape"]:
                    found.append({"argument": path, "change": "rank", "old": a["shape"], "new": b["shape"]})
            else:
                found += [{"argument": path, "change": "shape", "axis": k, "old": x, "new": y}
                          for k, (x, y) in enumerate(zip(a["shape"], b["shape"])) if x != y]
        elif b["kind"] == "python" and (a["value"], a["type"]) != (b["value"], b["type"]):
            found.append({"argument": path, "change": "python_value", "old": a["value"], "new": b["value"]})
        elif b["kind"] == "object" and a["object"] != b["object"]:
            found.append({"argument": path, "change": "object", "type": b["type"]})
        elif b["kind"] == "other" and a["value"] != b["value"]:
            found.append({"argument": path, "change": "other", "old": a["value"], "new": b["value"]})
    return found


class FunctionObject:
    """One tf.function object (one FunctionCache): its definition, traces and calls."""

    def __init__(self, key: str, instance: int, info: dict, tracing_options) -> None:
        self.key, self.instance, self.info = key, instance, info
        self.cache_id = id(tracing_options.function_cache)
        self.options = weakref.ref(tracing_options)  # FunctionCache takes no weak reference; its options do
        self.signatures: list[dict] = []
        self.calls = 0
        self.call_seconds = 0.0
        self.call_times: list[float] = []
        self.first_call: float | None = None
        self.last_call: float | None = None
        self.call_sites: Counter = Counter()
        self.pending_first_call: int | None = None  # id of the options a first call traced with (Function._initialize)
        self.flushed_calls = -1

    @property
    def effective_calls(self) -> int:
        return self.calls + (self.pending_first_call is not None)

    def alive(self, tracing_options) -> bool:
        options = self.options()
        return options is not None and options.function_cache is tracing_options.function_cache

    def summary(self) -> dict[str, Any]:
        return {
            "key": self.key, "instance": self.instance, "traces": len(self.signatures), "calls": self.effective_calls,
            "call_seconds": round(self.call_seconds, 6), "call_ms": percentiles_ms(self.call_times),
            "first_call": self.first_call, "last_call": self.last_call,
            "call_sites": [{"site": site, "calls": n} for site, n in self.call_sites.most_common(3)],
        }


class Recorder:
    def __init__(self, sink: Callable[[dict], None]) -> None:
        self.sink = sink
        self.started = time.monotonic()
        self.lock = threading.Lock()
        self.local = threading.local()
        self.by_cache: dict[int, FunctionObject] = {}
        self.instances: dict[str, list[FunctionObject]] = {}
        self.traces = 0
        self.last_flush = 0.0
        self.broken = False
        self.call_code = None  # the hook's call wrapper: a trace under it belongs to a counted call

    def now(self) -> float:
        return round(time.monotonic() - self.started, 6)

    def _stack(self) -> list:
        stack = getattr(self.local, "stack", None)
        if stack is None:
            stack = self.local.stack = []
        return stack

    def function_object(self, tracing_options, fresh: bool = False) -> FunctionObject:
        known = self.by_cache.get(id(tracing_options.function_cache))
        if known is not None and known.alive(tracing_options) and not fresh:
            return known
        info = definition(tracing_options)
        key = f"{info['qualname']}@{info['file']}:{info['line']}"
        objects = self.instances.setdefault(key, [])
        made = FunctionObject(key, len(objects) + 1, info, tracing_options)
        objects.append(made)
        self.by_cache[made.cache_id] = made
        return made

    def called(self, tracing_options, seconds: float, traces_before: int) -> None:
        if self._stack():  # a call while another function is traced builds a graph; it runs nothing
            return
        with self.lock:
            function = self.function_object(tracing_options)
            if function.pending_first_call is not None:
                if function.pending_first_call == id(tracing_options):  # the first call ran its graph without call_function
                    function.calls += 1
                function.pending_first_call = None  # else this call is that first call, continued after its variables were made
            function.calls += 1
            now = time.monotonic() - self.started
            function.first_call = now if function.first_call is None else function.first_call
            function.last_call = now
            if self.traces == traces_before:  # this call ran an existing graph
                function.call_seconds += seconds
                if len(function.call_times) < MAX_CALL_TIMES:
                    function.call_times.append(seconds)
            if function.calls <= 3 or function.calls % CALL_SITE_SAMPLE_EVERY == 0:
                site = user_call_site(sys._getframe(1))
                if site:
                    function.call_sites[f"{site['file']}:{site['line']}"] += 1
            if now - self.last_flush >= FLUSH_INTERVAL_S:
                self.flush_locked()

    def trace_started(self, tracing_options) -> dict:
        stack = self._stack()
        frame = sys._getframe(1)
        token = {
            "options": tracing_options,
            "inside": stack[-1]["qualname"] if stack else None,
            "site": user_call_site(frame),
            "keras_predict": keras_predict_on_stack(frame),
            "in_call": self.call_code is not None and code_on_stack(frame, self.call_code),
            "concrete_only": name_on_stack(frame, "get_concrete_function"),
            "cache_empty": len(tracing_options.function_cache or ()) == 0,
            "memory": anonymous_memory_bytes(),
            "qualname": definition(tracing_options)["qualname"],
            "t": self.now(),
            "started": time.perf_counter(),
        }
        stack.append(token)
        return token

    def trace_finished(self, token: dict, signature: dict, ops: int | None, error: BaseException | None) -> None:
        seconds = time.perf_counter() - token["started"]
        stack = self._stack()
        if stack and stack[-1] is token:
            stack.pop()
        memory = anonymous_memory_bytes()
        options = token["options"]
        with self.lock:
            self.traces += 1
            function = self.function_object(options)
            if token["cache_empty"] and function.signatures:  # an empty cache we have traces for: a new object at a reused address
                function = self.function_object(options, fresh=True)
            initialization = signature in function.signatures  # traced again without variable creation (Function._initialize)
            previous = function.signatures or self._last_signature_of_other_instance(function)
            candidates = [] if initialization else [changes(signature, old) for old in reversed(previous)]
            changed = min(candidates, key=len, default=[])  # against the newest of the closest earlier traces
            event = {
                "event": "trace", "seq": self.traces, "t": token["t"], "pid": os.getpid(),
                "function": function.info, "key": function.key, "instance": function.instance,
                "trace_of_instance": len(function.signatures) + 1, "call_site": token["site"], "inside": token["inside"],
                "keras_predict": token["keras_predict"], "signature": signature,
                "changes": changed,
                "new_object": not function.signatures and bool(previous),
                "initialization": initialization,
                "reduce_retracing": bool(getattr(options, "reduce_retracing", False)),
                "input_signature": getattr(options, "input_signature", None) is not None,
                "trace_ms": round(seconds * 1e3, 3), "ops": ops,
                "memory_bytes": memory - token["memory"] if memory is not None and token["memory"] is not None else None,
                "error": error_summary(error) if error is not None else None,
            }
            if error is None and not initialization:
                function.signatures.append(signature)
            first_call = not (token["inside"] or token["in_call"] or token["concrete_only"]) and not function.calls
            if first_call and getattr(getattr(options, "scope_type", None), "name", "") == "VARIABLE_CREATION":
                function.pending_first_call = id(options)
            self.sink(event)
            self.flush_locked()  # call counts survive an os._exit or a kill

    def _last_signature_of_other_instance(self, function: FunctionObject) -> list[dict]:
        others = [o for o in self.instances.get(function.key, []) if o is not function and o.signatures]
        return [others[-1].signatures[-1]] if others else []

    def failed(self, error: BaseException) -> None:
        """The recorder itself broke: say so once, and never break the user's program."""
        if not self.broken:
            self.broken = True
            try:
                self.sink({"event": "recorder_error", "t": self.now(), "pid": os.getpid(), "message": f"{type(error).__name__}: {error}"[:300]})
            except BaseException:  # a full disk, say: the program goes on unwatched
                pass

    def forget_calls(self) -> None:
        """In a forked child: its graphs are the parent's, its calls are its own."""
        self.lock = threading.Lock()
        for objects in self.instances.values():
            for o in objects:
                o.calls, o.call_seconds, o.call_times, o.first_call, o.last_call = 0, 0.0, [], None, None
                o.pending_first_call, o.flushed_calls = None, -1
                o.call_sites.clear()

    def flush(self) -> None:
        with self.lock:
            self.flush_locked()

    def flush_locked(self) -> None:
        """The call summary of every function object whose calls changed since the last flush."""
        self.last_flush = self.now()
        changed = []
        for objects in self.instances.values():
            for o in objects:
                if o.effective_calls and o.effective_calls != o.flushed_calls:
                    o.flushed_calls = o.effective_calls
                    changed.append(o.summary())
        if changed:
            self.sink({"event": "calls", "t": self.last_flush, "pid": os.getpid(), "functions": changed})
