"""Safe by default: a model that writes files or calls Python is refused before any of it runs, unless trusted; then the
safety check flags its file, Python and network ops, and nothing on a clean model."""
import json
import os

import pytest

from conftest import run_cli

pytestmark = pytest.mark.slow
WRITTEN = f"/tmp/tfaudit-never-written-{os.getpid()}"


@pytest.fixture(scope="module")
def risky_model(tmp_path_factory):
    import tensorflow as tf

    class Risky(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, 4], tf.float32, name="x")])
        def serve(self, x):
            secret = tf.io.read_file("/etc/hostname")
            tf.io.write_file(WRITTEN, secret)
            doubled = tf.py_function(lambda t: t * 2, [x], tf.float32)
            return {"y": doubled + tf.cast(tf.strings.length(secret), tf.float32)}

    module = Risky()
    path = str(tmp_path_factory.mktemp("risky") / "model")
    tf.saved_model.save(module, path, signatures={"serving_default": module.serve})
    return path


def test_an_untrusted_model_is_refused_before_it_runs_and_audited_when_trusted(risky_model, tmp_path):
    out = tmp_path / "r.json"
    refused = run_cli(risky_model, "--headless", "--checks", "safety,retracing", "--budget", "quick", "--json", str(out))
    assert refused.returncode == 2 and not out.exists() and not os.path.exists(WRITTEN), refused.stderr
    line = refused.stderr.strip().splitlines()[-1]
    assert "refused to load" in line and "--trust-model" in line, line
    assert "ops that write files: WriteFile (signature serving_default, serve)" in line and "EagerPyFunc" in line, line

    result = run_cli(risky_model, "--headless", "--checks", "safety", "--fail-on", "high", "--json", str(out), "--trust-model")
    assert result.returncode == 1, result.stderr
    findings = {f["id"]: f for f in json.loads(out.read_text())["findings"]}
    assert {i: f["severity"] for i, f in findings.items()} == {
        "safety/python-ops": "high", "safety/file-write-ops": "high", "safety/file-read-ops": "medium"
    }
    assert findings["safety/file-read-ops"]["evidence"]["ops"] == {"ReadFile": 1}
    assert "EagerPyFunc" in findings["safety/python-ops"]["evidence"]["ops"]


def test_clean_model_passes(built_model, tmp_path):
    out = tmp_path / "r.json"
    assert run_cli(built_model("mlp"), "--headless", "--checks", "safety", "--json", str(out)).returncode == 0
    report = json.loads(out.read_text())
    assert report["findings"] == [] and report["checks"][0]["status"] == "passed"
