"""From a watched run's trace and call events to findings in the audit's Finding model (no TensorFlow).

A *function* is one ``tf.function`` definition (qualified name, file, line); an *object* is one
``tf.function`` made from it (one trace cache). The patterns, in seed 002's words:

- ``predict-in-tf-function``: ``model.predict()`` called inside a ``tf.function``.
- ``predict-per-call``: ``model.predict()`` called per request or in a loop; each call builds a
  tf.data pipeline and traces its functions again.
- ``shape-varies``: one object retraced because a tensor argument's shape changed at some axis
  (no ``input_signature``); ``dtype-varies`` likewise for the dtype.
- ``python-value``: a Python scalar (or list) argument took new values; each value is a graph.
- ``object-per-call``: a new Python object (a model, say) passed per call.
- ``function-per-call``: a ``tf.function`` defined inside a loop or per request: many objects of
  one definition, each traced.
- ``python-loop``: a Monte-Carlo-style Python loop calling one function back to back.

A function object becomes a finding from ``MIN_TRACES`` traces (the first trace plus one retrace
is often deliberate: training and inference, say); a definition from ``MIN_OBJECTS`` objects.
Savings are priced from what was measured: the traces a fix avoids times their measured median
trace time, as milliseconds and as a share of the watched run's wall time.
"""
from __future__ import annotations

import os
import re
import statistics
from collections import Counter, defaultdict
from dataclasses import dataclass, field

from tfaudit.api import Effort, Finding, Fix, Measure, Metric, Risk

CHECK = "watch"
MIN_TRACES = 3
MIN_OBJECTS = 3
MIN_PREDICT_CALLS = 3
MAX_PREDICT_ROWS = 1024  # predict() on bigger arrays is the batch inference it is made for
MAX_CALLS_PER_TRACE = 3  # above this, retraces are amortised: a bounded set of shapes or values, not one per call
MIN_DISTINCT_VALUES = 5
MIN_LOOP_CALLS = 100
# Share of the loop's span spent inside the function's calls: back to back. Seed 002's loop draws its noise eagerly
# between calls, and was 53-55 % inside them on a 2-core host, so 0.5 missed it; a server between requests is far lower.
MIN_LOOP_BUSY = 0.3
MIN_DISPATCH_SHARE = 0.25  # an empty call's cost over the median call: dispatch dominates (a training step's does not)
KERAS_MODEL_TYPES = ("Sequential", "Functional", "Model")


@dataclass
class FunctionObject:
    pid: int
    key: str
    instance: int
    info: dict
    traces: list[dict] = field(default_factory=list)
    calls: dict = field(default_factory=dict)  # the newest call summary

    @property
    def name(self) -> str:
        return self.info["qualname"]

    @property
    def defined_at(self) -> str:
        return f"{self.info['file']}:{self.info['line']}" if self.info.get("file") else "?"


@dataclass
class Analysis:
    objects: list[FunctionObject]
    findings: list[Finding]
    metrics: list[Metric]
    functions: list[dict]  # one row per definition, for the reports and the TUI
    traces: list[dict]  # one row per trace


def group(events: list[dict]) -> list[FunctionObject]:
    objects: dict[tuple, FunctionObject] = {}
    for event in events:
        if event.get("event") == "trace":
            ident = (event["pid"], event["key"], event["instance"])
            obj = objects.setdefault(ident, FunctionObject(event["pid"], event["key"], event["instance"], event["function"]))
            obj.traces.append(event)
    for event in events:
        if event.get("event") == "calls":
            for summary in event["functions"]:
                ident = (event["pid"], summary["key"], summary["instance"])
                if ident in objects:
                    objects[ident].calls = summary
    return list(objects.values())


def quoted(names) -> str:
    return ", ".join(f"`{name}`" for name in names)


def site_text(site: dict | None) -> str:
    return f"{os.path.basename(site['file'])}:{site['line']}" if site else "?"


def ms_text(ms: float) -> str:
    return f"{ms:.1f} ms" if ms >= 1 else f"{ms * 1e3:.0f} µs"


def median_trace_ms(traces: list[dict]) -> float:
    return statistics.median(t["trace_ms"] for t in traces) if traces else 0.0


def savings(avoided: int, traces: list[dict], wall_s: float) -> dict[str, Measure]:
    per_trace = median_trace_ms(traces)
    saved_ms = avoided * per_trace
    if saved_ms <= 0:
        return {}
    return {"latency_ms": Measure(round(saved_ms, 2)), "latency_pct": Measure(round(min(100.0, saved_ms / (wall_s * 1e3) * 100), 2))}


def priced(avoided: int, traces: list[dict]) -> str:
    return f"{avoided} trace{'s' if avoided != 1 else ''} avoided × {ms_text(median_trace_ms(traces))} median trace time = {ms_text(avoided * median_trace_ms(traces))}"


def values_seen(traces: list[dict], argument: str, axis: int | None = None) -> list:
    seen = []
    for trace in traces:
        leaf = trace["signature"].get(argument)
        if leaf is None:
            continue
        if axis is None:
            value = leaf.get("value", leaf.get("dtype", leaf.get("type")))
        else:
            shape = leaf.get("shape")
            value = shape[axis] if shape is not None and axis < len(shape) else None
        if value not in seen:
            seen.append(value)
    return seen


def common_site(traces: list[dict]) -> dict | None:
    sites = Counter(site_text(t["call_site"]) for t in traces if t["call_site"])
    if not sites:
        return None
    best = sites.most_common(1)[0][0]
    return next(t["call_site"] for t in traces if t["call_site"] and site_text(t["call_site"]) == best)


PATH_PART = re.compile(r"\[(\d+|'[^']*')\]")


def input_signature_code(obj: FunctionObject, varying_axes: dict[str, set[int]]) -> str:
    """An input_signature for the newest trace: None exactly on the axes that varied, one entry per parameter (dicts and lists kept)."""
    by_parameter: dict[str, list[tuple[str, dict]]] = {}
    for path, leaf in obj.traces[-1]["signature"].items():
        by_parameter.setdefault(path.split("[")[0], []).append((path[len(path.split("[")[0]):], leaf))
    entries = []
    for parameter, leaves in by_parameter.items():
        if any(leaf["kind"] != "tensor" for _, leaf in leaves) or any(len(PATH_PART.findall(rest)) > 1 for rest, _ in leaves):
            return f"@tf.function(reduce_retracing=True)  # `{parameter}` is not a tensor (or a flat dict/list of them): no input_signature fits\ndef {obj.info['name']}(...):\n    ..."
        specs = []
        for rest, leaf in leaves:
            path = parameter + rest
            shape = [None if k in varying_axes.get(path, set()) else d for k, d in enumerate(leaf["shape"] or [])]
            specs.append((PATH_PART.findall(rest), f"tf.TensorSpec(shape={shape}, dtype=tf.{leaf['dtype']})"))
        if specs[0][0] == []:
            entries.append(f"    {specs[0][1]},  # {parameter}")
        elif specs[0][0][0].startswith("'"):
            entries.append(f"    {{{', '.join(f'{key[0]}: {spec}' for key, spec in specs)}}},  # {parameter}".replace("'", '"'))
        else:
            entries.append(f"    [{', '.join(spec for _, spec in specs)}],  # {parameter}")
    name = obj.info["name"]
    return "@tf.function(input_signature=[\n" + "\n".join(entries) + f"\n])\ndef {name}(...):\n    ...\n\n# or, keeping one graph per rank:\n@tf.function(reduce_retracing=True)"


def trace_rows(traces: list[dict]) -> list[dict]:
    rows = []
    for t in traces:
        changed = "; ".join(change_text(c) for c in t["changes"]) or ("first trace of a new tf.function object" if t.get("new_object") else "first trace")
        rows.append({
            "trace": t["trace_of_instance"], "at_s": round(t["t"], 3), "call_site": site_text(t["call_site"]),
            "what_changed": changed, "trace_ms": t["trace_ms"], "graph_ops": t["ops"],
            "memory_kib": None if t["memory_bytes"] is None else round(t["memory_bytes"] / 1024),
        })
    return rows


def change_text(change: dict) -> str:
    kind = change["change"]
    if kind == "shape":
        return f"{change['argument']}: shape at axis {change['axis']} {change['old']} → {change['new']}"
    if kind == "object":
        return f"{change['argument']}: a new {change['type']} object"
    if kind == "python_value":
        return f"{change['argument']}: Python value {change['old']!r} → {change['new']!r}"
    return f"{change['argument']}: {kind} {change.get('old')} → {change.get('new')}"


def counted(traces: list[dict]) -> list[dict]:
    """The traces a user can avoid: not failed, not TensorFlow's second trace of a first call, not inside another trace."""
    return [t for t in traces if not t["error"] and not t.get("initialization") and not t["inside"]]


def object_findings(obj: FunctionObject, wall_s: float) -> list[Finding]:
    traces = counted(obj.traces)
    if len(traces) < MIN_TRACES or obj.info.get("library"):
        return []
    calls_per_trace = obj.calls.get("calls", 0) / len(traces)
    every_call = calls_per_trace <= MAX_CALLS_PER_TRACE
    by_kind: dict[str, list[dict]] = defaultdict(list)
    for trace in traces[1:]:
        for change in trace["changes"]:
            by_kind[change["change"]].append(change)
    findings = []
    name, base = obj.name, {"function": obj.name, "defined_at": obj.defined_at, "traces": len(traces), "calls": obj.calls.get("calls", 0)}
    site = common_site(traces)
    rows = trace_rows(traces)
    if by_kind.get("shape") or by_kind.get("rank"):
        axes: dict[str, set[int]] = defaultdict(set)
        for change in by_kind.get("shape", []):
            axes[change["argument"]].add(change["axis"])
        varied = [{"function": name, "argument": a, "axis": k, "values": values_seen(traces, a, k)} for a, ks in sorted(axes.items()) for k in sorted(ks)]
        described = ", ".join(f"`{v['argument']}` at axis {v['axis']} ({', '.join(map(str, v['values']))})" for v in varied) or "the rank of an argument"
        avoided = len(traces) - 1
        findings.append(Finding(
            id=f"{CHECK}/shape-varies/{name}", check=CHECK, severity="medium" if every_call else "low",
            title=f"`{name}` retraced {avoided}× because the shape of {described} changed",
            summary=f"Each new shape builds a new graph: {len(traces)} traces of `{name}` (defined at {obj.defined_at}), called from {site_text(site)}. "
                    f"It has no `input_signature`, so every new size is a new trace. Measured: {priced(avoided, traces)}.",
            evidence={**base, "varied": varied, "trace_log": rows},
            effort=Effort("minutes", 0.5, "An input_signature with None on the varying axes (seed 002: ~30 minutes)."),
            fix=Fix("Declare the signature with `None` exactly on the axes that varied (or use `reduce_retracing=True`).", input_signature_code(obj, axes)),
            savings=savings(avoided, traces, wall_s), confidence=0.9,
            why="Tracing runs the Python function again and optimises a new graph; TensorFlow warns only after 5 traces in 10 calls and never names the argument.",
            verify="Run `tfaudit watch` again: the function shows 1 trace.",
        ))
    if by_kind.get("dtype"):
        arguments = sorted({c["argument"] for c in by_kind["dtype"]})
        dtypes = {a: values_seen(traces, a) for a in arguments}
        findings.append(Finding(
            id=f"{CHECK}/dtype-varies/{name}", check=CHECK, severity="medium",
            title=f"`{name}` retraced because the dtype of {quoted(arguments)} changed ({'; '.join(', '.join(map(str, v)) for v in dtypes.values())})",
            summary=f"{len(traces)} traces of `{name}`; a dtype is part of the signature, so float64 NumPy arrays and float32 tensors each get a graph.",
            evidence={**base, "varied": [{"function": name, "argument": a, "dtypes": v} for a, v in dtypes.items()], "trace_log": rows},
            effort=Effort("minutes", 0.5, "Cast once before the call."),
            fix=Fix("Convert inputs to one dtype before the call.", "\n".join(f"{a} = tf.convert_to_tensor({a}, dtype=tf.float32)" for a in arguments)),
            savings=savings(len(traces) - 1, traces, wall_s), confidence=0.9,
            why="Each dtype is a separate graph.", verify="Run `tfaudit watch` again: one trace per shape.",
        ))
    arguments = sorted({c["argument"] for c in by_kind.get("python_value", [])})
    varied = [{"function": name, "argument": a, "python_values": values_seen(traces, a)} for a in arguments]
    if varied and (every_call or max(len(v["python_values"]) for v in varied) >= MIN_DISTINCT_VALUES):  # not a small enum of modes
        ops = [t["ops"] for t in traces]
        unrolled = len(arguments) == 1 and all(isinstance(v, (int, float)) for v in varied[0]["python_values"]) and len(set(ops)) > 1
        avoided = len(traces) - 1
        top = arguments[0].split("[")[0]
        loop_note = (f" The graph grows with the value ({', '.join(map(str, ops))} ops): a Python loop over `{top}` is unrolled into the graph; "
                     f"iterate with `tf.range` instead.") if unrolled else ""
        took = ", ".join(f"`{v['argument']}` took {v['python_values']}" for v in varied)
        code = f"{top} = tf.constant({top})  # a tensor: one graph for every value\n"
        if unrolled:
            code += f"\n# inside {name}:\nfor i in tf.range({top}):  # not range({top})\n    ..."
        findings.append(Finding(
            id=f"{CHECK}/python-value/{name}", check=CHECK, severity="medium",
            title=f"`{name}` retraced {avoided}× for new Python values of {quoted(arguments)}",
            summary=f"A Python scalar argument is part of the signature: {took}, "
                    f"one graph each ({len(traces)} traces, called from {site_text(site)}).{loop_note} Measured: {priced(avoided, traces)}.",
            evidence={**base, "varied": varied, "graph_ops": ops, "trace_log": rows},
            effort=Effort("hours", 1.5, "Pass tensors (tf.convert_to_tensor) and use TensorFlow control flow (seed 002: 1-2 hours)."),
            fix=Fix(f"Pass {quoted(arguments)} as a tensor (`tf.convert_to_tensor` / `tf.constant` before the call)"
                    + (", and loop with `tf.range`." if unrolled else "."), code),
            savings=savings(avoided, traces, wall_s), confidence=0.9,
            why="Python values are baked into the graph as constants, so each new value is a new trace.",
            verify="Run `tfaudit watch` again: the function shows 1 trace.",
        ))
    if by_kind.get("object"):
        kinds = Counter(c["type"] for c in by_kind["object"])
        arguments = sorted({c["argument"] for c in by_kind["object"]})
        type_name = kinds.most_common(1)[0][0]
        model = type_name in KERAS_MODEL_TYPES or type_name.endswith(("Model", "Backbone"))
        avoided = len(traces) - 1
        fix_code = (f"# create the {type_name} once, outside the request path, and reuse it;\n"
                    "# for many models of one architecture keep one reference model and swap weights in (seed 002's cache):\n"
                    "reference.set_weights(actual_model.get_weights())\nresult = predict(x)  # traced once for the reference model") if model else \
                   f"# create the {type_name} once and reuse it, or pass the tensors it holds instead of the object"
        findings.append(Finding(
            id=f"{CHECK}/object-per-call/{name}", check=CHECK, severity="medium",
            title=f"`{name}` retraced {avoided}× for a new {type_name} object in {quoted(arguments)} each call",
            summary=f"An object argument is keyed by identity: {kinds[type_name]} new {type_name} objects meant {len(traces)} traces (called from {site_text(site)}). "
                    f"Measured: {priced(avoided, traces)}.",
            evidence={**base, "varied": [{"function": name, "argument": a, "new_objects": sum(1 for c in by_kind['object'] if c['argument'] == a), "type": type_name} for a in arguments], "trace_log": rows},
            effort=Effort("hours", 6, "A cache of functions and models with weight swapping (seed 002: 4-8 hours)."),
            fix=Fix(f"Stop creating a {type_name} per call" + ("; for many models of one shape, swap weights into one traced reference model." if model else "."), fix_code),
            savings=savings(avoided, traces, wall_s), confidence=0.85,
            why="A tf.function holds one graph per distinct object argument, and each costs a trace and memory.",
            verify="Run `tfaudit watch` again: one trace.",
        ))
    return findings


def definition_findings(objects: list[FunctionObject], wall_s: float) -> list[Finding]:
    if len(objects) < MIN_OBJECTS or objects[0].info.get("library") or objects[0].info.get("method_of"):
        return []  # a tf.function method is one object per instance, by design
    traces = counted([t for o in objects for t in o.traces])
    if len(traces) < MIN_OBJECTS:
        return []
    first = objects[0]
    site = common_site(traces)
    avoided = len(traces) - 1
    return [Finding(
        id=f"{CHECK}/function-per-call/{first.name}", check=CHECK, severity="high" if len(objects) >= 10 else "medium",
        title=f"`{first.name}` is a new tf.function {len(objects)}× (defined inside a loop or per request)",
        summary=f"`{first.name}` (defined at {first.defined_at}) was made into {len(objects)} tf.function objects, each traced anew "
                f"({len(traces)} traces; the call site is {site_text(site)}). A tf.function keeps its graphs per object. Measured: {priced(avoided, traces)}.",
        evidence={"function": first.name, "defined_at": first.defined_at, "objects": len(objects), "traces": len(traces),
                  "trace_log": trace_rows(sorted(traces, key=lambda t: t["seq"]))},
        effort=Effort("minutes", 0.5, "Move the definition out of the loop."),
        fix=Fix(f"Define `{first.name}` once (module level, or cached by its configuration) and call that object every time.",
                f"@tf.function  # defined once, at module level\ndef {first.info['name']}(...):\n    ...\n\nfor request in requests:\n    {first.info['name']}(request)"),
        savings=savings(avoided, traces, wall_s), confidence=0.9,
        why="Each new tf.function object starts with an empty trace cache, so nothing is reused.",
        verify="Run `tfaudit watch` again: one object, one trace.",
    )]


def predict_findings(traces: list[dict], wall_s: float) -> list[Finding]:
    findings = []
    failed = [t for t in traces if t["error"] and t["error"]["keras_predict"]]
    inside = [t for t in traces if t["keras_predict"] and t["inside"]]
    if failed or inside:
        t = (failed or inside)[0]
        outer = t["function"]["qualname"] if failed else t["inside"]
        where = site_text((t["error"] or {}).get("site")) if failed else site_text(t["call_site"])
        findings.append(Finding(
            id=f"{CHECK}/predict-in-tf-function/{outer}", check=CHECK, severity="high",
            title=f"`model.predict()` is called inside the tf.function `{outer}`",
            summary=(f"`{outer}` calls `model.predict()` ({where}); " + (f"tracing it failed: {t['error']['message']}." if failed else
                     "predict builds a tf.data pipeline and its own tf.function inside the trace.")
                     + " `predict()` is a batch loop for eager use; inside a graph call the model itself."),
            evidence={"function": outer, "call_site": where, "error": (t["error"] or {}).get("message"), "traces": len(traces)},
            effort=Effort("minutes", 0.5, "Replace predict() by a direct call."),
            fix=Fix("Call the model directly inside the tf.function.",
                    f"@tf.function(reduce_retracing=True)\ndef {outer.split('.')[-1]}(x):\n    return model(x, training=False)  # not model.predict(x)"),
            confidence=1.0 if failed else 0.9,
            why="Seed 002 measured the direct call 6.18× faster than predict() (231 → 37 ms).",
            verify="Run `tfaudit watch` again: no predict() under a tf.function.",
        ))
    by_site: dict[str, list[dict]] = defaultdict(list)
    for t in traces:
        if t["keras_predict"] and not t["inside"] and not t["error"] and t["call_site"]:
            by_site[site_text(t["call_site"])].append(t)
    for where, group_traces in by_site.items():
        per_function = Counter(t["function"]["name"] for t in group_traces)  # tf.data's functions share one definition
        predict_calls = max(per_function.values())
        rows = [leaf["shape"][0] for t in group_traces for leaf in t["signature"].values()
                if leaf["kind"] == "tensor" and leaf["shape"] and len(leaf["shape"]) >= 2 and leaf["shape"][0]]
        if predict_calls < MIN_PREDICT_CALLS or (rows and statistics.median(rows) > MAX_PREDICT_ROWS):
            continue
        total_ms = sum(t["trace_ms"] for t in group_traces)
        per_call = total_ms / predict_calls
        saved = total_ms - max(t["trace_ms"] for t in group_traces)
        findings.append(Finding(
            id=f"{CHECK}/predict-per-call/{where}", check=CHECK, severity="high" if predict_calls >= 10 else "medium",
            title=f"`model.predict()` called per request at {where}: {len(group_traces)} traces in {predict_calls} calls",
            summary=f"Each `predict()` call at {where} builds a tf.data pipeline and traces {len(per_function)} functions again "
                    f"({ms_text(per_call)} of tracing per call, {ms_text(total_ms)} in all). For a batch already in memory call the model directly.",
            evidence={"call_site": where, "code": group_traces[0]["call_site"]["code"], "predict_calls": predict_calls, "traces": len(group_traces),
                      "trace_ms_per_call": round(per_call, 2), "functions_traced": [{"function": k, "traces": n} for k, n in per_function.most_common()]},
            effort=Effort("hours", 1.5, "One tf.function around model(x) with tensors converted once (seed 002: 1-2 hours)."),
            fix=Fix("Convert the batch to a tensor once and call one tf.function that calls the model directly.",
                    "predict = tf.function(lambda x: model(x, training=False), reduce_retracing=True)\n"
                    "result = predict(tf.convert_to_tensor(batch, dtype=tf.float32))"),
            savings={"latency_ms": Measure(round(saved, 2)), "latency_pct": Measure(round(min(100.0, saved / (wall_s * 1e3) * 100), 2))} if saved > 0 else {},
            confidence=0.9,
            why="predict() is built for large datasets: per call it builds an input pipeline, and in a request loop that is the cost.",
            verify="Run `tfaudit watch` again: no traces per request.",
        ))
    return findings


def loop_findings(obj: FunctionObject, dispatch_ms: float | None, covered: set) -> list[Finding]:
    calls = obj.calls
    n = calls.get("calls", 0)
    if n < MIN_LOOP_CALLS or obj.info.get("library") or (obj.pid, obj.key) in covered or not calls.get("call_ms"):
        return []
    span = (calls["last_call"] or 0) - (calls["first_call"] or 0)
    busy = calls["call_seconds"] / span if span > 0 else 0.0
    if busy < MIN_LOOP_BUSY:
        return []
    sites = calls.get("call_sites") or []
    where = os.path.basename(sites[0]["site"]) if sites else "?"
    p50 = calls["call_ms"]["p50"]
    if not dispatch_ms or dispatch_ms / p50 < MIN_DISPATCH_SHARE:
        return []
    saved = n * dispatch_ms
    return [Finding(
        id=f"{CHECK}/python-loop/{obj.name}", check=CHECK, severity="low",
        title=f"`{obj.name}` called {n}× back to back from a Python loop at {where} ({ms_text(p50)} per call)",
        summary=f"A Python loop (Monte-Carlo style) calls `{obj.name}` {n} times in {span:.2f} s, {busy:.0%} of it inside the calls. "
                + f"Each call pays tf.function's dispatch, measured here at {ms_text(dispatch_ms)} for an empty function ({dispatch_ms / p50:.0%} of a call). "
                + "Batch the runs into one call, or loop inside the graph with `tf.range` and a `TensorArray`; time both, as seed 002's in-graph version was slower (0.17×).",
        evidence={"function": obj.name, "call_site": where, "calls": n, "span_s": round(span, 3), "busy_share": round(busy, 3),
                  "call_ms_p50": p50, "call_ms_p10": calls["call_ms"]["p10"], "call_ms_p90": calls["call_ms"]["p90"], "dispatch_ms": dispatch_ms},
        effort=Effort("hours", 2, "Vectorise the runs over a batch axis, or move the loop into the graph."),
        fix=Fix("Run the loop in one call: add the runs as a batch axis (or tf.range + TensorArray inside the tf.function).",
                "@tf.function(reduce_retracing=True)\ndef monte_carlo(x, noise_factor, num_runs):\n"
                "    noisy = x[None] + tf.random.normal(tf.concat([[num_runs], tf.shape(x)], 0), stddev=noise_factor)\n"
                "    return tf.map_fn(lambda xi: model(xi, training=False), noisy)  # or reshape to one batch"),
        savings={"latency_ms": Measure(round(saved, 2))},
        risk=Risk("medium", "The in-graph loop can be slower; measure before and after (seed 002: 0.17×)."),
        confidence=0.6,
        why="Each Python-level call crosses into TensorFlow's runtime once; a loop of small calls spends its time in dispatch.",
        verify="Time the loop before and after; `tfaudit watch` shows 1 call instead of many.",
    )]


def analyse(events: list[dict], wall_s: float, dispatch_ms: float | None = None) -> Analysis:
    objects = group(events)
    traces = sorted((t for o in objects for t in o.traces), key=lambda t: (t["pid"], t["seq"]))
    wall_s = max(wall_s, 1e-3)
    findings: list[Finding] = []
    by_definition: dict[tuple, list[FunctionObject]] = defaultdict(list)
    for obj in objects:
        by_definition[(obj.pid, obj.key)].append(obj)
    covered = set()
    for ident, objs in by_definition.items():
        made = definition_findings(objs, wall_s)
        for obj in objs if not made else []:
            made += object_findings(obj, wall_s)
        if made:
            covered.add(ident)
        findings += made
    findings += predict_findings(traces, wall_s)
    for obj in objects:
        findings += loop_findings(obj, dispatch_ms, covered)
    functions = function_rows(by_definition)
    metrics = [
        Metric("traces", len(traces), "traces"),
        Metric("max_traces_per_function", max((r["traces"] for r in functions), default=0), "traces"),
        Metric("functions_traced", len(functions), "functions"),
        Metric("trace_ms_total", round(sum(t["trace_ms"] for t in traces if not t["inside"]), 2), "ms"),  # a nested trace is inside its outer one
    ]
    return Analysis(objects, dedupe(findings), metrics, functions, traces)


def dedupe(findings: list[Finding]) -> list[Finding]:
    seen, kept = set(), []
    for finding in findings:
        if finding.id not in seen:
            seen.add(finding.id)
            kept.append(finding)
    return kept


def function_rows(by_definition: dict[tuple, list[FunctionObject]]) -> list[dict]:
    rows = []
    for (pid, key), objs in by_definition.items():
        traces = [t for o in objs for t in o.traces if not t.get("initialization")]
        if not traces:
            continue
        last_change = next((t["changes"] for t in reversed(traces) if t["changes"]), [])
        rows.append({
            "function": objs[0].name, "defined_at": objs[0].defined_at, "library": bool(objs[0].info.get("library")), "pid": pid, "key": key,
            "objects": len(objs), "traces": len(traces), "calls": (calls := sum(o.calls.get("calls", 0) for o in objs)),
            "calls_per_trace": round(calls / len(traces), 1),
            "trace_ms": round(sum(t["trace_ms"] for t in traces), 2), "graph_ops": traces[-1]["ops"], "nested": all(t["inside"] for t in traces),
            "last_change": "; ".join(change_text(c) for c in last_change),
        })
    return sorted(rows, key=lambda r: (-r["traces"], r["function"]))
