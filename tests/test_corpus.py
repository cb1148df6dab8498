"""Every built-in check on every model of the odd-model corpus ends passed, findings or skipped — never errored.

Each model is audited end to end through the CLI at the quick budget, in real workers, as a user
would run it: a crash in a converter, a rejected input or a shape nobody expected shows up here.
Nothing here judges a timing, so the audits run two at a time (``corpus_reports``), each as its
model is built: the suite's time is a budget.
"""
import json
from concurrent.futures import Future, ThreadPoolExecutor

import pytest

import odd_models
from conftest import run_cli

BUILT_IN = ("safety", "retracing", "memory", "quantization", "pruning", "serving")
AT_ONCE = 2


def audit(name: str, path: str, folder) -> tuple[object, dict | None]:
    args = [path, "--headless", "--budget", "quick", "--json", str(folder / "report.json")]
    if name in odd_models.TRUSTED:  # refused by default: loading it runs the code it holds
        args.append("--trust-model")
    if name in odd_models.NEEDS_INPUTS:
        args += ["--inputs", odd_models.NEEDS_INPUTS[name](str(folder / "samples.npz"))]
    done = run_cli(*args, timeout=900)
    report = folder / "report.json"
    return done, json.loads(report.read_text()) if report.exists() and report.read_text() else None


@pytest.fixture(scope="module")
def corpus_reports(tmp_path_factory):
    """Each corpus model's (completed CLI process, JSON report), audited AT_ONCE at a time while the next model is built."""
    futures: dict[str, Future] = {}
    with ThreadPoolExecutor(AT_ONCE) as pool:
        for name in odd_models.CORPUS:
            folder = tmp_path_factory.mktemp(name)
            path = getattr(odd_models, f"build_{name}")(str(folder / "model"))
            futures[name] = pool.submit(audit, name, path, folder)
        yield {name: future.result() for name, future in futures.items()}


@pytest.mark.slow
@pytest.mark.timeout(1800)
@pytest.mark.parametrize("name", odd_models.CORPUS)
def test_no_check_errors_on_odd_models(name, corpus_reports):
    done, report = corpus_reports[name]
    assert done.returncode in (0, 1) and report is not None, done.stderr[-3000:]
    statuses = {check["id"]: (check["status"], check["error"]) for check in report["checks"]}
    assert set(statuses) == set(BUILT_IN)
    errored = {check: error for check, (status, error) in statuses.items() if status == "errored"}
    assert not errored
    for check, (status, reason) in statuses.items():
        assert status in ("passed", "findings", "skipped")
        assert status != "skipped" or reason, f"{check} skipped without a reason"
