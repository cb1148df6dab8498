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
trace time, as milliseconds and as a share of the watched run's wall time. What each finding
says is in tfaudit/watch/catalogue.py; this module decides and fills in what was watched.
"""
from __future__ import annotations

import os
import re
import statistics
from collections import Counter, defaultdict
from dataclasses import dataclass, field, replace
from string import Template

from tfaudit.api import Finding, Measure, Metric
from tfaudit.watch import catalogue as text
from tfaudit.watch.catalogue import RULES

CHECK = "watch"
MIN_TRACES = 3
MIN_OBJECTS = 3
MIN_PREDICT_CALLS = 3
HIGH_PREDICT_CALLS = 10  # predict() calls at one site from which predict-per-call is high
HIGH_OBJECTS = 10  # tf.function objects of one definition from which function-per-call is high
MAX_PREDICT_ROWS = 1024  # predict() on bigger arrays is the batch inference it is made for
MAX_CALLS_PER_TRACE = 3  # above this, retraces are amortised: a bounded set of shapes or values, not one per call
MIN_DISTINCT_VALUES = 5
MIN_LOOP_CALLS = 100
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


def fill(template: str, **facts) -> str:
    return Template(template).substitute(facts)


def found(rule_id: str, subject: str, evidence: dict, **decided) -> Finding:
    """The rule's finding, its id naming what it is about (``watch/shape-varies/<function>``)."""
    finding = RULES[rule_id].finding(evidence, **decided)
    return replace(finding, id=f"{finding.id}/{subject}")


def quoted(names) -> str:
    return ", ".join(f"`{name}`" for name in names)


def site_text(site: dict | None) -> str:
    return f"{os.path.basename(site['file'])}:{site['line']}" if site else "?"


def ms_text(ms: float) -> str:
    return fill(text.MILLISECONDS, ms=f"{ms:.1f}") if ms >= 1 else fill(text.MICROSECONDS, us=f"{ms * 1e3:.0f}")


def median_trace_ms(traces: list[dict]) -> float:
    return statistics.median(t["trace_ms"] for t in traces) if traces else 0.0


def saved_share(saved_ms: float, wall_s: float) -> dict[str, Measure]:
    if saved_ms <= 0:
        return {}
    return {"latency_ms": Measure(round(saved_ms, 2)), "latency_pct": Measure(round(min(100.0, saved_ms / (wall_s * 1e3) * 100), 2))}


def savings(avoided: int, traces: list[dict], wall_s: float) -> dict[str, Measure]:
    return saved_share(avoided * median_trace_ms(traces), wall_s)


def priced(avoided: int, traces: list[dict]) -> str:
    per_trace = median_trace_ms(traces)
    return fill(text.PRICED, avoided=avoided, plural="" if avoided == 1 else text.PLURAL, per_trace=ms_text(per_trace),
                total=ms_text(avoided * per_trace))


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


def signature_facts(obj: FunctionObject, varying_axes: dict[str, set[int]]) -> dict[str, str]:
    """The example's input_signature for the newest trace: None exactly on the axes that varied, one entry per parameter (dicts and lists kept)."""
    by_parameter: dict[str, list[tuple[str, dict]]] = {}
    for path, leaf in obj.traces[-1]["signature"].items():
        by_parameter.setdefault(path.split("[")[0], []).append((path[len(path.split("[")[0]):], leaf))
    entries = []
    for parameter, leaves in by_parameter.items():
        if any(leaf["kind"] != "tensor" for _, leaf in leaves) or any(len(PATH_PART.findall(rest)) > 1 for rest, _ in leaves):
            return {"decorator": fill(text.NO_SIGNATURE, parameter=parameter), "short": obj.info["name"], "alternative": ""}
        specs = []
        for rest, leaf in leaves:
            path = parameter + rest
            shape = [None if k in varying_axes.get(path, set()) else d for k, d in enumerate(leaf["shape"] or [])]
            specs.append((PATH_PART.findall(rest), fill(text.TENSOR_SPEC, shape=shape, dtype=leaf["dtype"])))
        entries.append(signature_entry(parameter, specs))
    return {"decorator": fill(text.SIGNATURE, entries="\n".join(entries)), "short": obj.info["name"], "alternative": text.OR_PER_RANK}


def signature_entry(parameter: str, specs: list[tuple[list[str], str]]) -> str:
    """One parameter's line of the input_signature: a spec, a dict of specs or a list of them."""
    if specs[0][0] == []:
        return fill(text.SPEC_ENTRY, spec=specs[0][1], parameter=parameter)
    if specs[0][0][0].startswith("'"):
        keyed = ", ".join(fill(text.KEYED_SPEC, key=key[0], spec=spec) for key, spec in specs)
        return fill(text.DICT_ENTRY, specs=keyed, parameter=parameter).replace("'", '"')
    return fill(text.LIST_ENTRY, specs=", ".join(spec for _, spec in specs), parameter=parameter)


def trace_rows(traces: list[dict]) -> list[dict]:
    rows = []
    for t in traces:
        changed = "; ".join(change_text(c) for c in t["changes"]) or (text.FIRST_TRACE_OF_OBJECT if t.get("new_object") else text.FIRST_TRACE)
        rows.append({
            "trace": t["trace_of_instance"], "at_s": round(t["t"], 3), "call_site": site_text(t["call_site"]),
            "what_changed": changed, "trace_ms": t["trace_ms"], "graph_ops": t["ops"],
            "memory_kib": None if t["memory_bytes"] is None else round(t["memory_bytes"] / 1024),
        })
    return rows


def change_text(change: dict) -> str:
    kind, argument = change["change"], change["argument"]
    if kind == "shape":
        return fill(text.CHANGED_SHAPE, argument=argument, axis=change["axis"], old=change["old"], new=change["new"])
    if kind == "object":
        return fill(text.CHANGED_OBJECT, argument=argument, type=change["type"])
    if kind == "python_value":
        return fill(text.CHANGED_PYTHON_VALUE, argument=argument, old=repr(change["old"]), new=repr(change["new"]))
    return fill(text.CHANGED_OTHER, argument=argument, kind=kind, old=change.get("old"), new=change.get("new"))


def counted(traces: list[dict]) -> list[dict]:
    """The traces a user can avoid: not failed, not TensorFlow's second trace of a first call, not inside another trace."""
    return [t for t in traces if not t["error"] and not t.get("initialization") and not t["inside"]]


@dataclass
class Retraced:
    """One function object's counted traces: what every finding about its retracing shows and says."""

    obj: FunctionObject
    traces: list[dict]
    wall_s: float

    @property
    def avoided(self) -> int:
        return len(self.traces) - 1

    def savings(self) -> dict[str, Measure]:
        return savings(self.avoided, self.traces, self.wall_s)

    def evidence(self, **varied) -> dict:
        obj = self.obj
        base = {"function": obj.name, "defined_at": obj.defined_at, "traces": len(self.traces), "calls": obj.calls.get("calls", 0)}
        return {**base, **varied, "trace_log": trace_rows(self.traces)}

    def facts(self) -> dict:
        return {"name": self.obj.name, "defined_at": self.obj.defined_at, "traces": len(self.traces), "avoided": self.avoided,
                "site": site_text(common_site(self.traces)), "priced": priced(self.avoided, self.traces)}


def object_findings(obj: FunctionObject, wall_s: float) -> list[Finding]:
    traces = counted(obj.traces)
    if len(traces) < MIN_TRACES or obj.info.get("library"):
        return []
    every_call = obj.calls.get("calls", 0) / len(traces) <= MAX_CALLS_PER_TRACE
    by_kind: dict[str, list[dict]] = defaultdict(list)
    for trace in traces[1:]:
        for change in trace["changes"]:
            by_kind[change["change"]].append(change)
    retraced = Retraced(obj, traces, wall_s)
    findings = []
    if by_kind.get("shape") or by_kind.get("rank"):
        findings.append(shape_finding(retraced, by_kind.get("shape", []), every_call))
    if by_kind.get("dtype"):
        findings.append(dtype_finding(retraced, by_kind["dtype"]))
    findings += python_value_findings(retraced, by_kind.get("python_value", []), every_call)
    if by_kind.get("object"):
        findings.append(object_finding(retraced, by_kind["object"]))
    return findings


def shape_finding(retraced: Retraced, changes: list[dict], every_call: bool) -> Finding:
    name, traces = retraced.obj.name, retraced.traces
    axes: dict[str, set[int]] = defaultdict(set)
    for change in changes:
        axes[change["argument"]].add(change["axis"])
    varied = [{"function": name, "argument": a, "axis": k, "values": values_seen(traces, a, k)} for a, ks in sorted(axes.items()) for k in sorted(ks)]
    described = ", ".join(fill(text.VARIED_AXIS, argument=v["argument"], axis=v["axis"], values=", ".join(map(str, v["values"]))) for v in varied)
    return found(
        "watch/shape-varies", name, retraced.evidence(varied=varied), severity="medium" if every_call else "low",
        savings=retraced.savings(), described=described or text.RANK_CHANGED, **retraced.facts(),
        **signature_facts(retraced.obj, axes),
    )


def dtype_finding(retraced: Retraced, changes: list[dict]) -> Finding:
    name = retraced.obj.name
    arguments = sorted({c["argument"] for c in changes})
    dtypes = {a: values_seen(retraced.traces, a) for a in arguments}
    return found(
        "watch/dtype-varies", name, retraced.evidence(varied=[{"function": name, "argument": a, "dtypes": v} for a, v in dtypes.items()]),
        savings=retraced.savings(), arguments=quoted(arguments), dtypes="; ".join(", ".join(map(str, v)) for v in dtypes.values()),
        casts="\n".join(fill(text.CAST, argument=a) for a in arguments), **retraced.facts(),
    )


def python_value_findings(retraced: Retraced, changes: list[dict], every_call: bool) -> list[Finding]:
    name, traces = retraced.obj.name, retraced.traces
    arguments = sorted({c["argument"] for c in changes})
    varied = [{"function": name, "argument": a, "python_values": values_seen(traces, a)} for a in arguments]
    if not varied or not (every_call or max(len(v["python_values"]) for v in varied) >= MIN_DISTINCT_VALUES):
        return []  # not a small enum of modes
    ops = [t["ops"] for t in traces]
    unrolled = len(arguments) == 1 and all(isinstance(v, (int, float)) for v in varied[0]["python_values"]) and len(set(ops)) > 1
    top = arguments[0].split("[")[0]
    return [found(
        "watch/python-value", name, retraced.evidence(varied=varied, graph_ops=ops), savings=retraced.savings(),
        arguments=quoted(arguments), took=", ".join(fill(text.TOOK, argument=v["argument"], values=v["python_values"]) for v in varied),
        unrolled=fill(text.UNROLLED, ops=", ".join(map(str, ops)), top=top) if unrolled else "", loop=text.AND_LOOP if unrolled else "",
        loop_code=fill(text.LOOP_CODE, name=name, top=top) if unrolled else "", top=top, **retraced.facts(),
    )]


def object_finding(retraced: Retraced, changes: list[dict]) -> Finding:
    kinds = Counter(c["type"] for c in changes)
    arguments = sorted({c["argument"] for c in changes})
    type_name = kinds.most_common(1)[0][0]
    model = type_name in KERAS_MODEL_TYPES or type_name.endswith(("Model", "Backbone"))
    varied = [{"function": retraced.obj.name, "argument": a, "new_objects": sum(1 for c in changes if c["argument"] == a), "type": type_name}
              for a in arguments]
    return found(
        "watch/object-per-call", retraced.obj.name, retraced.evidence(varied=varied), savings=retraced.savings(),
        type=type_name, arguments=quoted(arguments), new_objects=kinds[type_name], swap=text.SWAP_WEIGHTS if model else "",
        reuse=text.REUSE_MODEL if model else text.REUSE_OBJECT, **retraced.facts(),
    )


def definition_findings(objects: list[FunctionObject], wall_s: float) -> list[Finding]:
    if len(objects) < MIN_OBJECTS or objects[0].info.get("library") or objects[0].info.get("method_of"):
        return []  # a tf.function method is one object per instance, by design
    traces = counted([t for o in objects for t in o.traces])
    if len(traces) < MIN_OBJECTS:
        return []
    first = objects[0]
    avoided = len(traces) - 1
    evidence = {"function": first.name, "defined_at": first.defined_at, "objects": len(objects), "traces": len(traces),
                "trace_log": trace_rows(sorted(traces, key=lambda t: t["seq"]))}
    return [found(
        "watch/function-per-call", first.name, evidence, severity="high" if len(objects) >= HIGH_OBJECTS else "medium",
        savings=savings(avoided, traces, wall_s), name=first.name, short=first.info["name"], defined_at=first.defined_at,
        objects=len(objects), traces=len(traces), site=site_text(common_site(traces)), priced=priced(avoided, traces),
    )]


def predict_findings(traces: list[dict], wall_s: float) -> list[Finding]:
    return predict_inside_findings(traces) + predict_per_call_findings(traces, wall_s)


def predict_inside_findings(traces: list[dict]) -> list[Finding]:
    failed = [t for t in traces if t["error"] and t["error"]["keras_predict"]]
    inside = [t for t in traces if t["keras_predict"] and t["inside"]]
    if not (failed or inside):
        return []
    t = (failed or inside)[0]
    outer = t["function"]["qualname"] if failed else t["inside"]
    where = site_text((t["error"] or {}).get("site")) if failed else site_text(t["call_site"])
    return [found(
        "watch/predict-in-tf-function", outer, {"function": outer, "call_site": where, "error": (t["error"] or {}).get("message"), "traces": len(traces)},
        outer=outer, where=where, short=outer.split(".")[-1],
        what=fill(text.TRACING_FAILED, message=t["error"]["message"]) if failed else text.PREDICT_TRACED_INSIDE,
    )]


def predict_per_call_findings(traces: list[dict], wall_s: float) -> list[Finding]:
    by_site: dict[str, list[dict]] = defaultdict(list)
    for t in traces:
        if t["keras_predict"] and not t["inside"] and not t["error"] and t["call_site"]:
            by_site[site_text(t["call_site"])].append(t)
    findings = []
    for where, group_traces in by_site.items():
        per_function = Counter(t["function"]["name"] for t in group_traces)  # tf.data's functions share one definition
        predict_calls = max(per_function.values())
        rows = [leaf["shape"][0] for t in group_traces for leaf in t["signature"].values()
                if leaf["kind"] == "tensor" and leaf["shape"] and len(leaf["shape"]) >= 2 and leaf["shape"][0]]
        if predict_calls < MIN_PREDICT_CALLS or (rows and statistics.median(rows) > MAX_PREDICT_ROWS):
            continue
        total_ms = sum(t["trace_ms"] for t in group_traces)
        per_call = total_ms / predict_calls
        evidence = {"call_site": where, "code": group_traces[0]["call_site"]["code"], "predict_calls": predict_calls, "traces": len(group_traces),
                    "trace_ms_per_call": round(per_call, 2), "functions_traced": [{"function": k, "traces": n} for k, n in per_function.most_common()]}
        findings.append(found(
            "watch/predict-per-call", where, evidence, severity="high" if predict_calls >= HIGH_PREDICT_CALLS else "medium",
            savings=saved_share(total_ms - max(t["trace_ms"] for t in group_traces), wall_s), where=where,
            traces=len(group_traces), calls=predict_calls, functions=len(per_function), per_call=ms_text(per_call), total=ms_text(total_ms),
        ))
    return findings


def loop_findings(obj: FunctionObject, dispatch_ms: float | None, covered: set) -> list[Finding]:
    calls = obj.calls
    n = calls.get("calls", 0)
    if n < MIN_LOOP_CALLS or obj.info.get("library") or (obj.pid, obj.key) in covered or not calls.get("call_ms"):
        return []
    span = (calls["last_call"] or 0) - (calls["first_call"] or 0)
    busy = calls["call_seconds"] / span if span > 0 else 0.0
    # What batching saves is each call's dispatch: the loop's time in it, a server's gaps between requests not counted.
    dispatch_share = n * dispatch_ms / 1e3 / span if dispatch_ms and span > 0 else 0.0
    if dispatch_share < text.LOOP_MINIMUM.relative:
        return []
    sites = calls.get("call_sites") or []
    where = os.path.basename(sites[0]["site"]) if sites else "?"
    p50 = calls["call_ms"]["p50"]
    evidence = {"function": obj.name, "call_site": where, "calls": n, "span_s": round(span, 3), "busy_share": round(busy, 3),
                "dispatch_share_of_span": round(dispatch_share, 3),
                "call_ms_p50": p50, "call_ms_p10": calls["call_ms"]["p10"], "call_ms_p90": calls["call_ms"]["p90"], "dispatch_ms": dispatch_ms}
    return [found(
        "watch/python-loop", obj.name, evidence, savings={"latency_ms": Measure(round(n * dispatch_ms, 2), projected=True)},
        name=obj.name, calls=n, where=where, p50=ms_text(p50), span=f"{span:.2f}", busy=f"{busy:.0%}", dispatch=ms_text(dispatch_ms),
        share=f"{dispatch_ms / p50:.0%}", loop_share=f"{dispatch_share:.0%}",
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
