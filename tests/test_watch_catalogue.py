"""tfaudit watch's catalogue: every rule fires from synthetic traces and fills its templates, without TensorFlow."""
import re
import subprocess
import sys
from string import Template

import pytest

from tfaudit.api import Finding
from tfaudit.watch import analysis
from tfaudit.watch.analysis import MIN_LOOP_CALLS, FunctionObject, analyse, loop_findings
from tfaudit.watch.catalogue import LOOP_MINIMUM
from tfaudit.watch.catalogue import RULES
from tfaudit.watch.session import summary_finding

SITE = {"file": "/src/serve.py", "line": 9, "function": "<module>", "code": "f(x)"}


def tensor(shape, dtype="float32"):
    return {"kind": "tensor", "shape": shape, "dtype": dtype, "spec": "TensorSpec"}


def trace(seq, signature, changes=(), *, name="f", key=None, instance=1, ops=10, trace_ms=5.0, **extra):
    """One trace event as the recorder writes it; ``extra`` overrides any field."""
    event = {
        "event": "trace", "seq": seq, "t": seq * 0.1, "pid": 1,
        "function": {"name": name.split(".")[-1], "qualname": name, "file": "/src/model.py", "line": 3, "library": False},
        "key": key or f"{name}@model.py:3", "instance": instance, "trace_of_instance": seq, "call_site": SITE, "inside": None,
        "keras_predict": False, "signature": signature, "new_object": False, "reduce_retracing": False, "input_signature": False,
        "changes": list(changes), "trace_ms": trace_ms, "ops": ops, "memory_bytes": 4096, "error": None,
    }
    event.update(extra)
    return event


def calls(name, n, instance=1):
    return {"event": "calls", "pid": 1, "functions": [{"key": f"{name}@model.py:3", "instance": instance, "calls": n}]}


def shapes(sizes, name="f", build=lambda n: {"x": tensor([n, 50])}, axis=0, argument="x"):
    """Traces of ``name`` whose ``argument`` changes size at ``axis`` each time."""
    return [trace(i + 1, build(n), [] if i == 0 else [{"argument": argument, "change": "shape", "axis": axis, "old": sizes[i - 1], "new": n}], name=name)
            for i, n in enumerate(sizes)]


def python_values(values, name="g", ops=None, argument="steps"):
    ops = ops or [10] * len(values)
    return [trace(i + 1, {"x": tensor([4]), argument: {"kind": "python", "value": v}},
                  [] if i == 0 else [{"argument": argument, "change": "python_value", "old": values[i - 1], "new": v}], name=name, ops=ops[i])
            for i, v in enumerate(values)]


def objects(type_name, n, name="h"):
    return [trace(i + 1, {"model": {"kind": "object", "type": type_name}, "x": tensor([4])},
                  [] if i == 0 else [{"argument": "model", "change": "object", "type": type_name}], name=name) for i in range(n)]


def per_call(n, name="handle"):
    return [trace(i + 1, {"x": tensor([4])}, name=name, instance=i + 1, new_object=True) for i in range(n)]


def predicted(n, site_line=19, rows=32):
    site = {**SITE, "line": site_line, "code": "model.predict(batch)"}
    library = {"name": "", "qualname": "", "file": "/keras/trainer.py", "line": 1, "library": True}
    return [trace(3 * i + k + 1, {"data": tensor([rows, 4])}, key=f"{fn}@trainer.py:1", instance=i + 1, keras_predict=True, call_site=site,
                  trace_ms=4.0 + k, function={**library, "name": fn, "qualname": f"Model.{fn}"})
            for i in range(n) for k, fn in enumerate(("one_step_on_data", "one_step_on_iterator", "predict_step"))]


def loop(n=400, busy=0.53, call_ms=0.4):
    span = n * call_ms / 1e3 / busy
    summary = {"calls": n, "first_call": 10.0, "last_call": 10.0 + span, "call_seconds": n * call_ms / 1e3,
               "call_ms": {"p10": call_ms * 0.9, "p50": call_ms, "p90": call_ms * 1.2}, "call_sites": [{"site": "/src/mc.py:12"}]}
    return FunctionObject(pid=1, key="predict@mc.py:3", instance=1, info={"qualname": "predict"}, calls=summary)


def dict_inputs(n):
    return {"inputs['ids']": tensor([2, n], "int32"), "inputs['mask']": tensor([2, n], "int32")}


def list_inputs(n):
    return {"xs[0]": tensor([n]), "xs[1]": tensor([3])}


CASES = {
    # name: (events, dispatch_ms)
    "shape every call": (shapes([16, 32, 48]), None),
    "shape amortised": (shapes([16, 32, 48]) + [calls("f", 30)], None),
    "shape of a dict": (shapes([8, 16, 24], build=dict_inputs, axis=1, argument="inputs['ids']"), None),
    "shape of a list": (shapes([1, 2, 3], build=list_inputs, argument="xs[0]"), None),
    "shape beside a Python value": (shapes([1, 2, 3], build=lambda n: {"x": tensor([n]), "mode": {"kind": "python", "value": "a"}}), None),
    "shape of a nested list": (shapes([1, 2, 3], build=lambda n: {"xs[0][1]": tensor([n])}, argument="xs[0][1]"), None),
    "rank": ([trace(i + 1, {"x": tensor([2] * (i + 1))}, [] if i == 0 else [{"argument": "x", "change": "rank", "old": i, "new": i + 1}])
              for i in range(3)], None),
    "one retrace": (shapes([16, 32]), None),
    "dtype": ([trace(i + 1, {"x": tensor([4], d)}, [] if i == 0 else [{"argument": "x", "change": "dtype", "old": "float32", "new": d}])
               for i, d in enumerate(("float32", "float64", "int32"))], None),
    "python value unrolled": (python_values([10, 20, 30], ops=[40, 70, 100]), None),
    "two Python values": ([trace(i + 1, {"a": {"kind": "python", "value": i}, "b": {"kind": "python", "value": -i}, "c": tensor([4], d)},
                                 [] if i == 0 else [{"argument": "a", "change": "python_value", "old": i - 1, "new": i},
                                                    {"argument": "b", "change": "python_value", "old": 1 - i, "new": -i},
                                                    {"argument": "c", "change": "dtype", "old": "float32", "new": d}], name="k")
                           for i, d in enumerate(("float32", "float64", "float16"))], None),
    "python value one trace": (python_values([10, 20]), None),
    "python value amortised, many values": (python_values([1, 2, 3, 4, 5, 6]) + [calls("g", 60)], None),
    "python value amortised, a few modes": (python_values([1, 2, 3]) + [calls("g", 60)], None),
    "a new model per call": (objects("Sequential", 3), None),
    "a new object per call": (objects("Tokenizer", 4), None),
    "a tf.function per call": (per_call(4), None),
    "a tf.function per request, many": (per_call(12), None),
    "a tf.function method": ([{**t, "function": {**t["function"], "method_of": "Dense"}} for t in per_call(4)], None),
    "a library function": ([{**t, "function": {**t["function"], "library": True}} for t in shapes([1, 2, 3])], None),
    "predict fails inside a tf.function": ([trace(1, {"x": tensor([4])}, name="serve", keras_predict=True,
                                                  error={"keras_predict": True, "message": "predict() cannot run in a graph", "site": SITE})], None),
    "predict traced inside a tf.function": ([trace(1, {"x": tensor([4])}, name="Model.predict_step", keras_predict=True, inside="serve")], None),
    "predict per request": (predicted(4), None),
    "predict per request, many": (predicted(12, site_line=30), None),
    "predict on big batches": (predicted(5, rows=4096), None),
    "predict twice": (predicted(2), None),
}


def findings(case: str) -> list[Finding]:
    events, dispatch_ms = CASES[case]
    return analyse(events, 2.0, dispatch_ms).findings


def all_findings() -> list[Finding]:
    found = [f for case in CASES for f in findings(case)]
    found += loop_findings(loop(), 0.3, set())
    done = analyse(shapes([16, 32, 48]), 2.0)
    found += [summary_finding(done, "python serve.py", 2.0, None), summary_finding(done, "python serve.py", 2.0, 1)]
    return found


def rule_of(finding: Finding) -> str:
    return next(rule for rule in RULES if finding.id == rule or finding.id.startswith(rule + "/"))


def test_every_watch_rule_fires_in_a_synthetic_case():
    fired = {rule_of(f) for f in all_findings()}
    assert fired == set(RULES)


@pytest.mark.parametrize("case, expected", [
    ("shape every call", {"watch/shape-varies/f": "medium"}),
    ("shape amortised", {"watch/shape-varies/f": "low"}),
    ("one retrace", {}),
    ("python value one trace", {}),
    ("python value amortised, a few modes", {}),
    ("python value amortised, many values", {"watch/python-value/g": "medium"}),
    ("a tf.function per call", {"watch/function-per-call/handle": "medium"}),
    ("a tf.function per request, many", {"watch/function-per-call/handle": "high"}),
    ("a tf.function method", {}),
    ("a library function", {}),
    ("predict per request", {"watch/predict-per-call/serve.py:19": "medium"}),
    ("predict per request, many", {"watch/predict-per-call/serve.py:30": "high"}),
    ("predict on big batches", {}),
    ("predict twice", {}),
])
def test_the_analysis_decides_ids_and_severities(case, expected):
    assert {f.id: f.severity for f in findings(case)} == expected


def test_every_template_fills_completely():
    """Rule.finding substitutes every placeholder (a missing fact raises); no placeholder or fragment is left in the text."""
    for finding in all_findings():
        for text in (finding.title, finding.summary, finding.fix.text, finding.fix.code, finding.why, finding.verify):
            assert not re.search(r"\$[_a-z{]", text), (finding.id, text)
    for rule in RULES.values():
        for text in (rule.title, rule.summary, rule.fix, rule.example, rule.verify):
            Template(text).get_identifiers()  # every template is valid
        assert rule.why or rule.id == "watch/summary"


def test_catalogue_minimums_state_the_thresholds_the_analysis_uses():
    assert str(analysis.MIN_TRACES) in RULES["watch/shape-varies"].minimum
    assert str(analysis.MIN_OBJECTS) in RULES["watch/function-per-call"].minimum
    assert str(analysis.MIN_PREDICT_CALLS) in RULES["watch/predict-per-call"].minimum
    assert f"{analysis.MAX_PREDICT_ROWS:,}" in RULES["watch/predict-per-call"].minimum
    assert str(analysis.MIN_DISTINCT_VALUES) in RULES["watch/python-value"].minimum
    assert str(MIN_LOOP_CALLS) in RULES["watch/python-loop"].minimum
    assert LOOP_MINIMUM.percent in RULES["watch/python-loop"].minimum


def test_the_watch_catalogue_imports_no_tensorflow():
    blocker = (
        "import sys\n"
        "class Blocked:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('tensorflow', 'keras', 'tf_keras'):\n"
        "            raise ImportError(f'{name} imported by the watch catalogue')\n"
        "sys.meta_path.insert(0, Blocked())\n"
        "import tfaudit.watch.catalogue, tfaudit.watch.analysis\n"
        "print(len(tfaudit.watch.catalogue.RULES))\n"
    )
    done = subprocess.run([sys.executable, "-c", blocker], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert int(done.stdout) == len(RULES)
