"""Every built-in check on every model of the odd-model corpus ends passed, findings or skipped — never errored.

Each model is audited end to end through the CLI at the quick budget, in real workers, as a user
would run it: a crash in a converter, a rejected input or a shape nobody expected shows up here.
"""
import json

import pytest

import odd_models
from conftest import run_cli

BUILT_IN = ("safety", "retracing", "memory", "quantization", "pruning", "serving")


@pytest.mark.slow
@pytest.mark.parametrize("name", odd_models.CORPUS)
def test_no_check_errors_on_odd_models(name, tmp_path):
    path = getattr(odd_models, f"build_{name}")(str(tmp_path / "model"))
    args = [path, "--headless", "--budget", "quick", "--json", str(tmp_path / "report.json")]
    if name in odd_models.NEEDS_INPUTS:
        args += ["--inputs", odd_models.NEEDS_INPUTS[name](str(tmp_path / "samples.npz"))]
    done = run_cli(*args, timeout=900)
    assert done.returncode in (0, 1), done.stderr[-3000:]
    report = json.loads((tmp_path / "report.json").read_text())
    statuses = {check["id"]: (check["status"], check["error"]) for check in report["checks"]}
    assert set(statuses) == set(BUILT_IN)
    errored = {check: error for check, (status, error) in statuses.items() if status == "errored"}
    assert not errored
    for check, (status, reason) in statuses.items():
        assert status in ("passed", "findings", "skipped")
        assert status != "skipped" or reason, f"{check} skipped without a reason"
