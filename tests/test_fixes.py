"""--fix-dir: artifacts written, read back and measured again; predictions confirmed or corrected."""
import hashlib
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from tfaudit.api import Measure
from tfaudit.report.fixes import corrected_savings, gap_text


def test_a_prediction_the_artifact_confirms_stands_and_others_are_corrected():
    predicted = {"size_pct": Measure(50.0), "latency_pct": Measure(72.0, 70.0, 75.0)}
    verified = {"size_pct": Measure(49.0), "latency_pct": Measure(10.0, 5.0, 15.0), "latency_ms": Measure(0.01, 0.005, 0.02)}
    savings, changed = corrected_savings(predicted, verified)
    assert savings["size_pct"] is predicted["size_pct"] and savings["latency_pct"] is verified["latency_pct"]
    assert changed == ["latency_pct", "latency_ms"] and savings["latency_ms"] is verified["latency_ms"]
    dropped, changed = corrected_savings({"latency_pct": Measure(72.0)}, {})
    assert dropped == {} and changed == ["latency_pct"]
    text = gap_text({"size_pct": {"value": 50.0, "low": None, "high": None}, "latency_pct": {"value": 72.0, "low": 70.0, "high": 75.0}}, {"size_pct": Measure(30.0)})
    assert text == "size_pct: off by -40%; latency_pct: predicted 72 % [70–75], no significant difference when timed in turn with the baseline"


@pytest.mark.parametrize("inside", ["", "fixes"])
def test_the_model_folder_is_refused(tmp_path, inside):
    model = tmp_path / "model"
    model.mkdir()
    target = model / inside if inside else model
    done = subprocess.run([sys.executable, "-m", "tfaudit", str(model), "--headless", "--fix-dir", str(target)], capture_output=True, text=True)
    assert done.returncode == 2 and "is the model's own directory" in done.stderr and "Traceback" not in done.stderr
    assert not (model / "fixes").exists()


def tree_digest(path) -> str:
    digest = hashlib.sha256()
    for root, _, files in sorted(os.walk(path)):
        for name in sorted(files):
            with open(os.path.join(root, name), "rb") as f:
                digest.update(name.encode() + f.read())
    return digest.hexdigest()


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_demo_fixes_are_written_load_run_and_are_verified(tmp_path):
    from ai_edge_litert.interpreter import Interpreter

    from tfaudit.engine.demo import demo_path

    out = tmp_path / "fixes"
    model = demo_path()
    before = tree_digest(model) if os.path.exists(model) else None
    command = [sys.executable, "-m", "tfaudit", "--demo", "--headless", "--budget", "quick", "--checks", "quantization,pruning",
               "--fix-dir", str(out), "--report", str(tmp_path / "r.md"), "--json", str(tmp_path / "r.json")]
    done = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert before is None or tree_digest(model) == before  # the user's model is never written
    report = json.loads((tmp_path / "r.json").read_text())
    fixed = {f["id"]: f for f in report["findings"] if f["artifact"]}
    assert {"quantization/float16", "pruning/combined"} <= set(fixed) and any(i.startswith("pruning/magnitude-") for i in fixed)
    features = np.random.default_rng(0).standard_normal((1, 64)).astype(np.float32)
    for finding in fixed.values():
        folder = finding["artifact"]["path"]
        assert os.path.dirname(folder) == str(out)
        interpreter = Interpreter(model_path=os.path.join(folder, "model.tflite"))
        runner = interpreter.get_signature_runner("serving_default")
        scores = runner(features=features)["scores"]
        assert scores.shape == (1, 10) and abs(float(scores.sum()) - 1.0) < 1e-2  # softmax probabilities
        assert finding["verified"], finding["id"]
        for key, verified in finding["verified"].items():
            if key.startswith("size"):
                assert verified["value"] == pytest.approx(finding["artifact"]["predicted"][key]["value"], rel=0.25)
        assert finding["artifact"]["measured"]["fidelity"]["relative_l2"] <= 0.01
    pruned = next(f for i, f in fixed.items() if i.startswith("pruning/magnitude-"))
    check = "import sys, tensorflow as tf, numpy as np; f = tf.saved_model.load(sys.argv[1]).signatures['serving_default']; print(f(features=tf.zeros([1, 64]))['scores'].shape)"
    loaded = subprocess.run([sys.executable, "-c", check, os.path.join(pruned["artifact"]["path"], "saved_model")], capture_output=True, text=True)
    assert loaded.stdout.strip() == "(1, 10)", loaded.stderr[-2000:]
    markdown = (tmp_path / "r.md").read_text()
    assert "## Predicted and verified" in markdown and "**all fixes applied** (pruned + quantized)" in markdown
    readme = (out / "README.md").read_text()
    assert all(f"## `{os.path.basename(f['artifact']['path'])}/`" in readme for f in fixed.values()) and "```python" in readme


def run_retracing_with_fix_dir(path: str, out) -> dict:
    from checkrun import run_in_process
    from tfaudit.checks.retracing import RetracingCheck

    return run_in_process(RetracingCheck(), path, options={"fix_dir": str(out)}).findings


@pytest.mark.slow
def test_the_demo_is_re_exported_with_relaxed_signatures_and_the_code_that_made_it_runs(tmp_path):
    import tensorflow as tf

    from tfaudit.engine.demo import build_demo

    model = build_demo(str(tmp_path / "demo"))
    before = tree_digest(model)
    findings = run_retracing_with_fix_dir(model, tmp_path / "fixes")
    assert tree_digest(model) == before
    batch, retraced = findings["retracing/fixed-batch-dim"], findings["retracing/retraced-before-export"]
    folder = batch.artifact["path"]
    assert retraced.artifact["path"] == folder == str(tmp_path / "fixes" / "relaxed_signature")
    assert not findings["retracing/python-argument"].artifact  # an unrolled Python loop is no signature's to relax
    saved = retraced.artifact["measured"]
    assert (saved["concrete_functions_before"], saved["concrete_functions_after"]) == (5, 1)
    assert saved["unsaved_shape_call"]["error"] is None and saved["largest_output_gap_on_saved_shapes"] < 1e-4
    assert retraced.verified["size_bytes"].value == pytest.approx(retraced.artifact["predicted"]["size_bytes"]["value"], rel=0.25)
    assert batch.artifact["predicted"]["latency_ms"]["value"] > 0 and batch.artifact["measured"]["largest_output_gap"] < 1e-4
    assert batch.verified["latency_ms"].low > 0  # 8 rows in one call beat 8 calls of one row
    loaded = tf.saved_model.load(os.path.join(folder, "saved_model"))
    scores = loaded.signatures["serving_default"](features=tf.zeros([3, 64]))["scores"]
    assert scores.shape == (3, 10) and len(loaded.predict.concrete_functions) == 1 and len(loaded.refine.concrete_functions) == 3
    again = tmp_path / "again"
    script = batch.artifact["made_by"].replace(repr(os.path.join(folder, "saved_model")), repr(str(again)))
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert tf.saved_model.load(str(again)).signatures["serving_default"].structured_input_signature[1]["features"].shape.as_list() == [None, 64]
    assert_predicted_verified_chart(findings.values(), tmp_path / "report")


def assert_predicted_verified_chart(findings, out):
    from matplotlib.image import imread

    from tfaudit.events import CheckFinished, CheckStarted, FindingEmitted
    from tfaudit.report.audit import AuditState
    from tfaudit.report.markdown import write_markdown

    state = AuditState(model_path="demo", budget="quick")
    state.apply(CheckStarted("retracing", "Retracing"))
    for finding in findings:
        state.apply(FindingEmitted("retracing", finding.to_dict()))
    state.apply(CheckFinished("retracing", "passed", 1.0))
    out.mkdir()
    write_markdown(state, str(out / "report.md"))
    assert "](report_files/predicted_verified.png)" in (out / "report.md").read_text()
    pixels = imread(out / "report_files" / "predicted_verified.png")
    assert pixels.shape[1] >= 2000 and pixels[..., :3].std() > 0.01


@pytest.mark.parametrize("name, feed, output, shape", [
    ("tf_keras_fixed_batch", ("image", [5, 4, 4]), "logits", (5, 2, 2)),  # Flatten and Reshape follow the new batch
    ("keras3_fixed_batch", ("x", [5, 8]), "dense", (5, 4)),
])
def test_a_keras_model_with_a_fixed_batch_is_traced_again_from_keras(built_model, tmp_path, name, feed, output, shape):
    import tensorflow as tf

    findings = run_retracing_with_fix_dir(built_model(name), tmp_path / "fixes")
    batch = findings["retracing/fixed-batch-dim"]
    assert f"traced again from the {'tf_keras' if name.startswith('tf_keras') else 'keras'} model" in batch.artifact.get("what", ""), batch.summary
    assert batch.artifact["measured"]["largest_output_gap"] < 1e-4
    serve = tf.saved_model.load(os.path.join(batch.artifact["path"], "saved_model")).signatures["serving_default"]
    assert serve(**{feed[0]: tf.zeros(feed[1])})[output].shape == shape


def test_a_graph_that_hard_codes_its_batch_is_not_re_exported(built_model, tmp_path):
    findings = run_retracing_with_fix_dir(built_model("hard_coded_batch"), tmp_path / "fixes")
    batch = findings["retracing/fixed-batch-dim"]
    assert not batch.artifact and "--fix-dir: not re-exported" in batch.summary, batch.summary
    assert "batch" in batch.evidence["fix_not_written"]
    # Measured in memory already, without --fix-dir: no saving is claimed for a batching that does not work.
    assert "depends on the batch size" in batch.evidence["batching_not_measured"] and not batch.savings
    assert batch.severity == ("high" if batch.evidence["overhead_share_of_fast_calls_pct"] >= 50 else "medium")  # the fallback rule
    assert not (tmp_path / "fixes" / "relaxed_signature").exists()


@pytest.mark.slow
def test_a_tf_keras_mobilenet_with_a_fixed_batch_is_re_exported_and_serves_any_batch(built_model, tmp_path):
    import tensorflow as tf

    findings = run_retracing_with_fix_dir(built_model("tf_keras_mobilenet_fixed_batch"), tmp_path / "fixes")
    batch = findings["retracing/fixed-batch-dim"]
    assert batch.artifact, batch.summary
    assert batch.artifact["measured"]["largest_output_gap"] < 1e-4  # batch norm, depthwise convs and pooling follow the batch
    assert batch.verified["latency_ms"].low > 0, batch.artifact["measured"]
    serve = tf.saved_model.load(os.path.join(batch.artifact["path"], "saved_model")).signatures["serving_default"]
    outputs = serve(image=tf.zeros([3, 96, 96, 3]))
    assert [o.shape for o in outputs.values()] == [(3, 1000)]
