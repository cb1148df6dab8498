"""The one place tfaudit touches TensorFlow's tracing internals (TF 2.21 has no public tracing callback).

Every ``tf.function`` call runs ``tracing_compilation.call_function(args, kwargs,
tracing_options)``, and every new graph is built by ``_create_concrete_function(function_type,
type_context, func_graph, tracing_options)``. Both are module globals that TensorFlow looks up
at call time, so replacing them on the module is the whole hook: the first counts and times
calls, the second times each trace and hands its ``FunctionType`` to the recorder as plain
data. ``tracing_options.function_cache`` is one per ``tf.function`` object, which tells a
retrace apart from a new function object.

If a TensorFlow upgrade moves or reshapes either function, ``install`` raises ``HookError``
naming what moved: watch then fails loudly instead of reporting "no retracing".
tests/test_watch.py::test_hook_targets_exist_with_the_expected_signatures pins both.
"""
from __future__ import annotations

import importlib
import inspect
import sys
import time
from typing import Any

TRACING_MODULE = "tensorflow.python.eager.polymorphic_function.tracing_compilation"
EXPECTED = {
    "call_function": ["args", "kwargs", "tracing_options"],
    "_create_concrete_function": ["function_type", "type_context", "func_graph", "tracing_options"],
}
MAX_VALUE_CHARS = 60


class HookError(RuntimeError):
    """TensorFlow's tracing internals are not where this version of tfaudit expects them."""


_installed: dict[str, Any] = {}  # name -> TensorFlow's original


def tracing_module():
    try:
        return importlib.import_module(TRACING_MODULE)
    except ImportError as exc:
        raise HookError(f"{TRACING_MODULE} cannot be imported ({exc}); tfaudit watch supports TensorFlow 2.21") from None


def verify(module) -> None:
    """Raise HookError unless both hooked functions exist with the parameters the wrappers pass on."""
    for name, parameters in EXPECTED.items():
        function = _installed.get(name) or getattr(module, name, None)
        if not callable(function):
            raise HookError(f"TensorFlow moved {TRACING_MODULE}.{name}; tfaudit watch cannot see traces with this version")
        found = list(inspect.signature(function).parameters)
        if found != parameters:
            raise HookError(f"{TRACING_MODULE}.{name} now takes ({', '.join(found)}), not ({', '.join(parameters)}); tfaudit watch needs updating")


def install(recorder) -> None:
    """Route every tf.function call and trace in this process through ``recorder``."""
    module = tracing_module()
    verify(module)
    if _installed:
        uninstall()
    call_function, create = module.call_function, module._create_concrete_function

    def watched_call_function(args=None, kwargs=None, tracing_options=None):
        traces_before, started = recorder.traces, time.perf_counter()
        try:
            return call_function(args, kwargs, tracing_options)
        finally:
            try:
                recorder.called(tracing_options, time.perf_counter() - started, traces_before)
            except Exception as exc:  # the program's call must never fail because of the watch
                recorder.failed(exc)

    def watched_create_concrete_function(function_type, type_context, func_graph, tracing_options):
        try:
            token = recorder.trace_started(tracing_options)
        except Exception as exc:
            recorder.failed(exc)
            return create(function_type, type_context, func_graph, tracing_options)
        concrete, error = None, None
        try:
            concrete = create(function_type, type_context, func_graph, tracing_options)
            return concrete
        except BaseException as exc:
            error = exc
            raise
        finally:
            try:
                ops = len(concrete.graph.get_operations()) if concrete is not None else None
                recorder.trace_finished(token, describe(function_type), ops, error)
            except Exception as exc:
                recorder.failed(exc)

    recorder.call_code = watched_call_function.__code__
    _installed.update(call_function=call_function, _create_concrete_function=create)
    module.call_function = watched_call_function
    module._create_concrete_function = watched_create_concrete_function


def tensorflow_version() -> str:
    return getattr(sys.modules.get("tensorflow"), "__version__", "") or ""


def uninstall() -> None:
    if not _installed:
        return
    module = tracing_module()
    for name, original in _installed.items():
        setattr(module, name, original)
    _installed.clear()


def describe(function_type) -> dict[str, dict[str, Any]]:
    """The traced signature as {argument path: leaf}, e.g. {"x": {"kind": "tensor", "shape": [16, 50], "dtype": "float32"}}."""
    leaves: dict[str, dict[str, Any]] = {}
    for parameter in function_type.parameters.values():
        _flatten(parameter.name, parameter.type_constraint, leaves)
    return leaves


def _flatten(path: str, trace_type: Any, leaves: dict) -> None:
    components = getattr(trace_type, "components", None)  # default_types.Tuple, List
    if isinstance(components, tuple):
        for i, component in enumerate(components):
            _flatten(f"{path}[{i}]", component, leaves)
        return
    mapping = getattr(trace_type, "mapping", None)  # default_types.Dict
    if isinstance(mapping, dict):
        for key, component in mapping.items():
            _flatten(f"{path}[{key!r}]", component, leaves)
        return
    leaves[path] = leaf(trace_type)


def leaf(trace_type: Any) -> dict[str, Any]:
    kind = type(trace_type).__name__
    if hasattr(trace_type, "shape") and hasattr(trace_type, "dtype"):
        dims = trace_type.shape.as_list() if trace_type.shape.rank is not None else None
        return {"kind": "tensor", "shape": dims, "dtype": getattr(trace_type.dtype, "name", str(trace_type.dtype)), "spec": kind}
    if kind == "Literal":
        value = trace_type.value
        plain = value if isinstance(value, (bool, int, float, str, type(None))) else repr(value)
        if isinstance(plain, str) and len(plain) > MAX_VALUE_CHARS:
            plain = plain[:MAX_VALUE_CHARS] + "…"
        return {"kind": "python", "value": plain, "type": type(value).__name__}
    if kind == "Weakref":
        referent = trace_type._ref()  # the object the call passed; alive while it is traced
        return {"kind": "object", "type": type(referent).__name__, "object": id(referent)}
    return {"kind": "other", "type": kind, "value": repr(trace_type)[:MAX_VALUE_CHARS]}


def dispatch_ms(calls: int = 300) -> float:
    """Median time of one call of an empty tf.function here: what a Python-level call costs on its own."""
    import tensorflow as tf

    empty = tf.function(lambda x: x)
    x = tf.constant(0.0)
    empty(x)
    times = []
    for _ in range(calls):
        started = time.perf_counter()
        empty(x)
        times.append(time.perf_counter() - started)
    return round(sorted(times)[len(times) // 2] * 1e3, 4)
