"""The export shapes production serves, audited end to end: a TFX model from every request file its users hold gives the
same findings as from samples it synthesised itself (tests/test_corpus.py audits it, and the image-bytes and
SequenceExample models, without samples)."""
import json

import pytest

import odd_models
from conftest import run_cli, run_clis

pytestmark = pytest.mark.slow
# Findings that rest on sizes and on outputs for the same rows, not on timings: equal across runs by construction.
CHECKS = "safety,quantization,pruning"


def findings(path) -> dict[str, str]:
    return {f["id"]: f["severity"] for f in json.loads(path.read_text())["findings"]}


def test_the_tfx_model_gives_the_same_findings_from_every_request_file(tmp_path):
    model = odd_models.build_tfx_classifier(str(tmp_path / "model"))
    files = odd_models.tfx_request_files(str(tmp_path))
    reports = {name: tmp_path / f"{name}.json" for name in files}
    runs = run_clis(*([model, "--headless", "--budget", "quick", "--checks", CHECKS, "--inputs", path, "--json", str(reports[name])]
                      for name, path in files.items()), at_once=3)
    for name, done in zip(files, runs):
        assert done.returncode in (0, 1) and reports[name].exists(), (name, done.stderr[-2000:])
    found = {name: findings(path) for name, path in reports.items()}
    assert found["tfrecord"] == found["predict"] == found["classify"], found
    report = json.loads(reports["classify"].read_text())
    assert not [c for c in report["checks"] if c["status"] == "errored"]


def test_synthesised_examples_are_recorded_with_how_they_were_made(tmp_path):
    model = odd_models.build_tfx_classifier(str(tmp_path / "model"))
    out = tmp_path / "r.json"
    done = run_cli(model, "--headless", "--budget", "quick", "--checks", "safety", "--json", str(out))
    assert done.returncode == 0, done.stderr
    encoded = json.loads(out.read_text())["model"]["input_constraints"]["encoded"]["examples"]
    assert encoded["kind"] == "example"
    assert {f["key"]: (f["kind"], f["dtype"], f.get("bound")) for f in encoded["features"]} == {
        "age": ("dense", "float32", None), "city": ("dense", "string", None), "clicks": ("sparse", "int64", 20)}
