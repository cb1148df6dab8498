"""tfaudit watch: the hook, the analysis, the command line, the gate and the pytest plugin."""
import json
import os
import subprocess
import sys
import textwrap
import xml.etree.ElementTree as ET

import pytest
from test_tui import sync, until

from tfaudit.watch import hook
from tfaudit.watch.analysis import MIN_LOOP_CALLS, MIN_TRACES, FunctionObject, analyse, loop_findings
from tfaudit.watch.recorder import changes

PROGRAMS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "watch_programs")
WATCH = [sys.executable, "-m", "tfaudit", "watch", "--headless"]


def test_hook_targets_exist_with_the_expected_signatures():
    """Fails loudly when a TensorFlow upgrade moves the two functions the hook replaces."""
    module = hook.tracing_module()
    hook.verify(module)
    for name, parameters in hook.EXPECTED.items():
        assert callable(getattr(module, name)), f"TensorFlow moved {name}: update tfaudit/watch/hook.py"


def test_verify_names_what_moved():
    class Moved:
        @staticmethod
        def call_function(args=None, kwargs=None, tracing_options=None):
            pass

    with pytest.raises(hook.HookError, match="_create_concrete_function"):
        hook.verify(Moved)

    class Reshaped(Moved):
        @staticmethod
        def _create_concrete_function(function_type, func_graph, tracing_options):
            pass

    with pytest.raises(hook.HookError, match=r"now takes \(function_type, func_graph, tracing_options\)"):
        hook.verify(Reshaped)


def test_the_hook_sees_real_traces_and_restores_tensorflow():
    import tensorflow as tf

    import tfaudit.watch

    module = hook.tracing_module()
    originals = (module.call_function, module._create_concrete_function)

    @tf.function
    def double(x):
        return x * 2

    with tfaudit.watch.watch() as session:
        for n in (1, 2, 3):
            double(tf.ones([n]))
        double(tf.ones([3]))
    assert (module.call_function, module._create_concrete_function) == originals
    traces = [e for e in session.events if e["event"] == "trace"]
    assert len(traces) == 3, "the hook saw no traces: TensorFlow's tracing path changed"
    assert [c for c in traces[1]["changes"]] == [{"argument": "x", "change": "shape", "axis": 0, "old": 1, "new": 2}]
    assert traces[0]["call_site"]["file"] == __file__ and traces[0]["ops"] > 0
    row = session.analysis().functions[0]
    assert row["function"].endswith("double") and row["traces"] == 3 and row["calls"] == 4


def test_changes_name_the_argument_and_what_varied():
    tensor = lambda shape, dtype="float32": {"kind": "tensor", "shape": shape, "dtype": dtype, "spec": "TensorSpec"}  # noqa: E731
    python = lambda v: {"kind": "python", "value": v, "type": type(v).__name__}  # noqa: E731
    old = {"x": tensor([16, 50]), "n": python(1), "m": {"kind": "object", "type": "Sequential", "object": 1}}
    new = {"x": tensor([32, 50], "float64"), "n": python(2), "m": {"kind": "object", "type": "Sequential", "object": 2}}
    assert changes(new, old) == [
        {"argument": "m", "change": "object", "type": "Sequential"},
        {"argument": "n", "change": "python_value", "old": 1, "new": 2},
        {"argument": "x", "change": "dtype", "old": "float32", "new": "float64"},
        {"argument": "x", "change": "shape", "axis": 0, "old": 16, "new": 32},
    ]
    assert changes(old, old) == []


def trace(seq, shape, instance=1, key="f@a.py:1", ops=10):
    leaf = {"kind": "tensor", "shape": shape, "dtype": "float32", "spec": "TensorSpec"}
    return {
        "event": "trace", "seq": seq, "t": seq * 0.1, "pid": 1, "function": {"name": "f", "qualname": "f", "file": "a.py", "line": 1, "library": False},
        "key": key, "instance": instance, "trace_of_instance": seq, "call_site": {"file": "a.py", "line": 9, "function": "<module>", "code": "f(x)"},
        "inside": None, "keras_predict": False, "signature": {"x": leaf}, "new_object": False, "reduce_retracing": False, "input_signature": False,
        "changes": [] if seq == 1 else [{"argument": "x", "change": "shape", "axis": 0, "old": 16, "new": shape[0]}],
        "trace_ms": 5.0, "ops": ops, "memory_bytes": 4096, "error": None,
    }


def test_one_retrace_is_not_a_finding_but_min_traces_are():
    two = [trace(1, [16, 50]), trace(2, [32, 50])]
    assert analyse(two, 1.0).findings == []
    many = two + [trace(i, [16 * i, 50]) for i in range(3, MIN_TRACES + 1)]
    found = analyse(many, 1.0).findings
    assert [f.id for f in found] == ["watch/shape-varies/f"]
    assert found[0].evidence["varied"] == [{"function": "f", "argument": "x", "axis": 0, "values": [16, 32, 48]}]
    assert found[0].savings["latency_ms"].value == (MIN_TRACES - 1) * 5.0
    assert "shape=[None, 50]" in found[0].fix.code


def test_a_loop_is_named_when_the_dispatch_its_calls_pay_is_a_tenth_of_its_time():
    def loop(busy: float, call_ms: float = 0.4, n: int = MIN_LOOP_CALLS) -> FunctionObject:
        span = n * call_ms / 1e3 / busy
        calls = {"calls": n, "first_call": 10.0, "last_call": 10.0 + span, "call_seconds": n * call_ms / 1e3,
                 "call_ms": {"p10": call_ms * 0.9, "p50": call_ms, "p90": call_ms * 1.2}, "call_sites": [{"site": "mc.py:12"}]}
        return FunctionObject(pid=1, key="k", instance=1, info={"qualname": "predict"}, calls=calls)

    eager_noise_between_calls = loop(busy=0.53)  # seed 002's loop, measured: 0.53 x 0.3 / 0.4 = 40 % of it in dispatch
    found = loop_findings(eager_noise_between_calls, 0.3, set())
    assert [f.id for f in found] == ["watch/python-loop/predict"] and found[0].evidence["dispatch_share_of_span"] == pytest.approx(0.3975, abs=1e-3)
    assert loop_findings(loop(busy=0.13), 0.3, set()) == []  # a server waiting between requests: 9.75 % of its time in dispatch
    assert loop_findings(loop(busy=0.9), 0.03, set()) == []  # dispatch a small part of each call: 6.75 %
    assert loop_findings(loop(busy=0.9, n=MIN_LOOP_CALLS - 1), 0.3, set()) == []


def test_program_output_and_exit_code_are_kept(tmp_path):
    done = subprocess.run([*WATCH, "--", sys.executable, "-c", "import sys; print('from the program'); sys.exit(7)"],
                          capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 7
    assert "from the program" in done.stdout and "never imported TensorFlow" in done.stdout
    assert "the program exited 7" in done.stderr


@pytest.mark.parametrize("argv, message", [
    ([], "give the program to watch after --"),
    (["--"], "no command after --"),
    (["--", "/no/such/program"], "cannot run /no/such/program"),
    (["--max-traces-per-function", "0", "--", "true"], "at least 1"),
])
def test_bad_usage_is_one_line_and_exit_2(tmp_path, argv, message):
    done = subprocess.run([*WATCH, *argv], capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 2 and message in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr


def test_a_tensorflow_whose_tracing_moved_exits_3_with_the_reason(tmp_path):
    """A fake TensorFlow whose tracing module lacks _create_concrete_function: the watch says so, never 'no retracing'."""
    package = tmp_path / "fake" / "tensorflow" / "python" / "eager" / "polymorphic_function"
    package.mkdir(parents=True)
    for folder in [package, *package.parents][:4]:
        (folder / "__init__.py").write_text("")
    (package / "tracing_compilation.py").write_text("def call_function(args=None, kwargs=None, tracing_options=None):\n    pass\n")
    program = "import tensorflow.python.eager.polymorphic_function.tracing_compilation\nprint('ran')"
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "fake")}
    done = subprocess.run([*WATCH, "--json", "w.json", "--", sys.executable, "-c", program], capture_output=True, text=True, cwd=tmp_path, env=env)
    assert done.returncode == 3, done.stderr
    assert "ran" in done.stdout
    report = json.loads((tmp_path / "w.json").read_text())
    assert report["checks"][0]["status"] == "errored" and "_create_concrete_function" in report["checks"][0]["error"]


SCENARIOS = {
    # program: (finding id, evidence that names what varied)
    "varying_batch.py": ("watch/shape-varies/predict_no_signature", {"varied": [{"function": "predict_no_signature", "argument": "X", "axis": 0, "values": [16, 32, 64, 128, 256]}]}),
    "python_steps.py": ("watch/python-value/train_with_python_args", {"varied": [{"function": "train_with_python_args", "argument": "num_steps", "python_values": [10, 20, 30]}]}),
    "function_in_loop.py": ("watch/function-per-call/handle", {"objects": 6, "traces": 6}),
    "new_model_per_call.py": ("watch/object-per-call/predict", {"varied": [{"function": "predict", "argument": "model", "new_objects": 3, "type": "Sequential"}]}),
    "predict_in_tf_function.py": ("watch/predict-in-tf-function/predict_with_retracing", {"function": "predict_with_retracing", "call_site": "predict_in_tf_function.py:11"}),
    "predict_per_request.py": ("watch/predict-per-call/predict_per_request.py:19", {"predict_calls": 4, "call_site": "predict_per_request.py:19"}),
    "monte_carlo.py": ("watch/python-loop/predict", {"calls": 400}),
}


def watch_program(tmp_path, program, *flags):
    command = [*WATCH, "--json", "w.json", "--junit", "w.xml", "--report", "w.md", *flags, "--", sys.executable, os.path.join(PROGRAMS, program)]
    done = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path, timeout=300)
    report = json.loads((tmp_path / "w.json").read_text())
    return done, report, ET.parse(tmp_path / "w.xml").getroot()


@pytest.mark.slow
@pytest.mark.parametrize("program", sorted(SCENARIOS))
def test_each_seed_scenario_is_named_with_its_argument_and_gated(tmp_path, program):
    finding_id, expected = SCENARIOS[program]
    done, report, junit = watch_program(tmp_path, program, "--fail-on", "medium")
    findings = {f["id"]: f for f in report["findings"]}
    assert finding_id in findings, (sorted(findings), done.stderr[-2000:])
    evidence = findings[finding_id]["evidence"]
    assert {k: evidence[k] for k in expected} == expected
    assert findings[finding_id]["fix"]["code"]
    gated = [f for f in report["findings"] if f["severity"] in ("critical", "high", "medium")]
    if program == "predict_in_tf_function.py":
        assert done.returncode == 1  # the program's own exit code: Keras raised inside the trace
    else:
        assert done.returncode == (1 if gated else 0), done.stderr[-2000:]
    failures = junit.findall(".//failure")
    assert len(failures) == len(gated) and all(f.get("message") for f in failures)
    assert "Traceback" not in done.stderr.split("tfaudit watch:")[-1]


@pytest.mark.slow
def test_the_clean_program_has_no_finding_and_passes_the_gates(tmp_path):
    done, report, junit = watch_program(tmp_path, "clean.py", "--fail-on", "low", "--max-traces-per-function", "1")
    assert done.returncode == 0, done.stdout + done.stderr[-2000:]
    assert [f["id"] for f in report["findings"]] == ["watch/summary"]
    assert report["metrics"]["watch.max_traces_per_function"]["value"] == 1
    assert junit.findall(".//failure") == [] and "loop_ms=" in done.stdout


@pytest.mark.slow
def test_max_traces_per_function_is_a_budget(tmp_path):
    done, report, _ = watch_program(tmp_path, "varying_batch.py", "--max-traces-per-function", "2")
    assert done.returncode == 1
    assert report["budgets"] == [{"metric": "watch.max_traces_per_function", "limit": 2, "status": "violated", "value": 5, "low": None, "high": None, "unit": "traces"}]


@pytest.mark.slow
def test_pytest_marker_fails_a_retracing_test_and_names_the_argument(tmp_path):
    (tmp_path / "test_user.py").write_text(textwrap.dedent("""
        import pytest
        import tensorflow as tf

        @tf.function
        def predict(x):
            return x * 2

        @pytest.mark.tfaudit_max_traces(1)
        def test_retraces():
            for n in (16, 32, 64):
                predict(tf.ones([n, 4]))

        @pytest.mark.tfaudit_max_traces(1)
        def test_one_trace():
            for _ in range(3):
                predict(tf.ones([8, 4]))
    """))
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--tfaudit-watch", "test_user.py"],
                          capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert done.returncode == 1, done.stdout[-3000:]
    assert "1 failed, 1 passed" in done.stdout
    assert "predict (test_user.py:5) was traced 3 times (limit 1)" in done.stdout
    assert "x: shape at axis 0 16 → 32" in done.stdout
    assert "tfaudit watch: tf.function traces" in done.stdout


FAKE_PROGRAM = """
import json, os, sys, time
events = os.path.join(os.environ["TFAUDIT_WATCH_DIR"], "events-1.jsonl")
sys.path.insert(0, {tests!r})
from test_watch import trace
print("serving requests")
with open(events, "a") as out:
    out.write(json.dumps({{"event": "hooked", "pid": 1, "t": 0.0}}) + "\\n")
    for i, n in enumerate((16, 32, 64), 1):
        out.write(json.dumps(trace(i, [n, 50])) + "\\n")
        out.flush()
time.sleep(0.5)
"""


@sync
async def test_watch_tui_shows_traces_live_with_the_changed_argument(tmp_path):
    """The live view on a program that writes watch events itself: no TensorFlow anywhere."""
    from tfaudit.watch.tui import WatchApp

    program = FAKE_PROGRAM.format(tests=os.path.dirname(os.path.abspath(__file__)))
    env = {**os.environ, "TFAUDIT_WATCH_DIR": str(tmp_path)}
    app = WatchApp([sys.executable, "-c", program], env, str(tmp_path))
    async with app.run_test(size=(120, 40)) as pilot:
        await until(pilot, lambda: app.status is not None and app.query_one("#functions").row_count, timeout_s=20)
        table = app.query_one("#functions")
        row = [str(cell) for cell in table.get_row_at(0)]
        assert row[0] == "f" and row[2] == "3" and row[5] == "x: shape at axis 0 16 → 64"
        assert "exited 0" in app.status_line
        assert "serving requests" in "\n".join(app.query_one("#output").lines)
        await pilot.press("q")
    assert app.status == 0 and len([e for e in app.events if e["event"] == "trace"]) == 3


def test_watch_front_ends_never_import_tensorflow():
    code = "import sys, tfaudit.watch, tfaudit.watch.cli, tfaudit.watch.tui, tfaudit.watch.pytest_plugin; print('tensorflow' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "False"


@pytest.mark.slow
def test_a_bert_backbone_served_with_new_sequence_lengths_gets_a_dict_input_signature():
    """keras-hub BERT (random weights) behind a tf.function taking its dict of inputs, per request a new length."""
    import keras
    import keras_hub
    import tensorflow as tf

    import tfaudit.watch

    keras.utils.set_random_seed(0)
    backbone = keras_hub.models.BertBackbone(vocabulary_size=300, num_layers=2, num_heads=2, hidden_dim=32, intermediate_dim=64, max_sequence_length=64)

    @tf.function
    def embed(inputs):
        return backbone(inputs)["pooled_output"]

    with tfaudit.watch.watch() as session:
        for length in (8, 16, 24):
            embed({"token_ids": tf.ones([2, length], tf.int32), "segment_ids": tf.zeros([2, length], tf.int32),
                   "padding_mask": tf.ones([2, length], tf.int32)})
    finding = next(f for f in session.analysis().findings if f.id.startswith("watch/shape-varies/"))
    assert {v["argument"]: v["values"] for v in finding.evidence["varied"]} == {
        "inputs['padding_mask']": [8, 16, 24], "inputs['segment_ids']": [8, 16, 24], "inputs['token_ids']": [8, 16, 24]}
    assert all(v["axis"] == 1 for v in finding.evidence["varied"])
    assert '"token_ids": tf.TensorSpec(shape=[2, None], dtype=tf.int32)' in finding.fix.code
    namespace = {"tf": tf}
    exec(finding.fix.code.split("def ")[0].replace("@tf.function(", "signature = dict(").replace("input_signature=", "value="), namespace)
    fixed = tf.function(embed.python_function, input_signature=namespace["signature"]["value"])
    for length in (8, 16, 24):
        fixed({"token_ids": tf.ones([2, length], tf.int32), "segment_ids": tf.zeros([2, length], tf.int32), "padding_mask": tf.ones([2, length], tf.int32)})
    assert fixed.experimental_get_tracing_count() == 1  # the written signature really stops the retracing


def watched(run):
    import tfaudit.watch

    with tfaudit.watch.watch() as session:
        run()
    analysis = session.analysis()
    return analysis, {r["function"].split(".")[-1] if "." in r["function"] else r["function"]: r for r in analysis.functions}


def test_a_module_that_builds_its_variables_on_the_first_call_is_one_object_and_no_finding():
    import tensorflow as tf

    class Dense(tf.Module):
        def __init__(self):
            super().__init__()
            self.w = None

        @tf.function
        def __call__(self, x):
            if self.w is None:
                self.w = tf.Variable(tf.ones([4, 2]))
            return x @ self.w

    def run():
        layers = [Dense() for _ in range(3)]
        for layer in layers:
            for _ in range(5):
                layer(tf.ones([2, 4]))

    analysis, rows = watched(run)
    assert analysis.findings == []  # one tf.function per instance is how methods work
    row = rows["__call__"]
    assert row["objects"] == 3 and row["traces"] == 3 and row["calls"] == 15


def test_lists_and_namedtuples_are_argument_paths_and_bounded_modes_are_not_findings():
    import collections

    import tensorflow as tf

    Pair = collections.namedtuple("Pair", "left right")

    @tf.function
    def stack(xs, pair):
        return tf.concat(xs, 0) + pair.left

    @tf.function
    def mode(x, m):
        return x * 2 if m == "double" else x

    def run():
        for n in (1, 2, 3):
            stack([tf.ones([n])], Pair(tf.ones([1]), tf.ones([n])))
        for i in range(30):
            mode(tf.ones([2]), ("double", "same", "other")[i % 3])

    analysis, _ = watched(run)
    assert [f.id for f in analysis.findings] == ["watch/shape-varies/test_lists_and_namedtuples_are_argument_paths_and_bounded_modes_are_not_findings.<locals>.stack"]
    varied = analysis.findings[0].evidence["varied"]
    assert {(v["argument"], v["axis"]) for v in varied} == {("xs[0]", 0), ("pair.right", 0)}


def test_an_in_process_watch_inside_another_leaves_the_outer_one_watching():
    import tensorflow as tf

    import tfaudit.watch

    @tf.function
    def f(x):
        return x + 1

    with tfaudit.watch.watch() as outer:
        with tfaudit.watch.watch() as inner:
            f(tf.ones([1]))
        f(tf.ones([2]))
        f(tf.ones([3]))
    assert len([e for e in inner.events if e["event"] == "trace"]) == 1
    assert len([e for e in outer.events if e["event"] == "trace"]) == 3
    assert not hook._installed  # both stopped: TensorFlow has its functions back


def test_a_failing_recorder_never_fails_the_program():
    import tensorflow as tf

    from tfaudit.watch.recorder import Recorder

    def full_disk(event):
        raise OSError(28, "No space left on device")

    recorder = Recorder(full_disk)
    hook.install(recorder)
    try:
        f = tf.function(lambda x: x * 3)
        assert float(f(tf.constant(2.0))) == 6.0 and float(f(tf.constant([1.0]))[0]) == 3.0
    finally:
        hook.uninstall(recorder)
    assert recorder.broken


def test_a_program_the_watch_cannot_enter_exits_3(tmp_path):
    done = subprocess.run([*WATCH, "--", sys.executable, "-E", "-c", "print('unwatched')"], capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 3 and "unwatched" in done.stdout
    assert "was not loaded into the program" in done.stderr
