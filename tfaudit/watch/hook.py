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
MAX_VALUE_CHARS = 200


class HookError(RuntimeError):
    """TensorFlow's tracing internals are not where this version of tfaudit expects them."""


_installed: dict[str, Any] = {}  # name -> TensorFlow's original
_recorders: list = []  # every active watch (a CLI watch and an in-process one may overlap)


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


def _each(method: str, *args) -> list:
    """Call ``method`` on every recorder; a recorder that fails says so once and never fails the program's call."""
    results = []
    for recorder in list(_recorders):
        try:
            results.append(getattr(recorder, method)(*args))
        except Exception as exc:
            recorder.failed(exc)
            results.append(None)
    return results


def install(recorder) -> None:
    """Route every tf.function call and trace in this process through ``recorder`` (and any recorder already watching)."""
    module = tracing_module()
    verify(module)
    recorder.call_code = _watched_call_function.__code__
    if recorder not in _recorders:
        _recorders.append(recorder)
    if _installed:
        return
    _installed.update(call_function=module.call_function, _create_concrete_function=module._create_concrete_function)
    module.call_function = _watched_call_function
    module._create_concrete_function = _watched_create_concrete_function


def _watched_call_function(args=None, kwargs=None, tracing_options=None):
    before = [r.traces for r in _recorders]
    started = time.perf_counter()
    try:
        return _installed["call_function"](args, kwargs, tracing_options)
    finally:
        seconds = time.perf_counter() - started
        for recorder, traces in zip(list(_recorders), before):
            try:
                recorder.called(tracing_options, seconds, traces)
            except Exception as exc:  # the program's call must never fail because of the watch
                recorder.failed(exc)


def _watched_create_concrete_function(function_type, type_context, func_graph, tracing_options):
    tokens = _each("trace_started", tracing_options)
    concrete, error = None, None
    try:
        concrete = _installed["_create_concrete_function"](function_type, type_context, func_graph, tracing_options)
        return concrete
    except BaseException as exc:
        error = exc
        raise
    finally:
        try:
            signature, ops = describe(function_type), (len(concrete.graph.get_operations()) if concrete is not None else None)
        except Exception:
            signature, ops = {}, None
        for recorder, token in zip(list(_recorders), tokens):
            if token is None:
                continue
            try:
                recorder.trace_finished(token, signature, ops, error)
            except Exception as exc:
                recorder.failed(exc)


def uninstall(recorder=None) -> None:
    """Stop ``recorder`` (every recorder when None); TensorFlow gets its functions back when none is left."""
    if recorder is None:
        _recorders.clear()
    elif recorder in _recorders:
        _recorders.remove(recorder)
    if _recorders or not _installed:
        return
    module = tracing_module()
    for name, original in _installed.items():
        setattr(module, name, original)
    _installed.clear()


def tensorflow_version() -> str:
    return getattr(sys.modules.get("tensorflow"), "__version__", "") or ""


def describe(function_type) -> dict[str, dict[str, Any]]:
    """The traced signature as {argument path: leaf}, e.g. {"x": {"kind": "tensor", "shape": [16, 50], "dtype": "float32"}}."""
    leaves: dict[str, dict[str, Any]] = {}
    for parameter in function_type.parameters.values():
        _flatten(parameter.name, parameter.type_constraint, leaves)
    return leaves


def _flatten(path: str, trace_type: Any, leaves: dict) -> None:
    named = getattr(trace_type, "named_attributes", None)  # default_types.Attrs holds a NamedTuple
    if named is not None:
        trace_type = named
    names = getattr(trace_type, "attribute_names", None)  # default_types.NamedTuple
    if names is not None and hasattr(trace_type, "attributes"):
        for name, component in zip(names, trace_type.attributes.components):
            _flatten(f"{path}.{name}", component, leaves)
        return
    components = getattr(getattr(trace_type, "components_tuple", trace_type), "components", None)  # default_types.List, Tuple
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
