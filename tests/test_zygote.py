"""The zygote: forks workers only while that is safe, and says how the audit's workers started."""
import os
import subprocess
import sys

import pytest

from tfaudit.engine.registry import discover_checks
from tfaudit.engine.runner import AuditJob, run_audit
from tfaudit.events import CheckFinished, MetricEmitted, ModelLoaded

TESTS_DIR = os.path.dirname(os.path.abspath(__file__))


def fork_reason_after(code: str) -> str:
    """fork_unsafe_reason() in a fresh interpreter that ran ``code`` first (NumPy's OpenBLAS thread off, as in workers)."""
    script = f"{code}\nfrom tfaudit.engine.zygote import fork_unsafe_reason\nprint(repr(fork_unsafe_reason()))"
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "TF_CPP_MIN_LOG_LEVEL": "2"}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    return eval(done.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_importing_tensorflow_keeps_a_process_forkable_and_the_first_op_does_not():
    assert fork_reason_after("import tensorflow, tf_keras, tensorflow_model_optimization") == ""
    after_op = fork_reason_after("import tensorflow as tf\nfloat(tf.constant(1.0) + 1.0)")
    assert "eager context" in after_op or "threads" in after_op


def test_a_process_with_a_second_thread_may_not_fork():
    import threading

    from tfaudit.engine.zygote import fork_unsafe_reason

    release = threading.Event()
    thread = threading.Thread(target=release.wait)
    thread.start()
    try:
        assert "threads" in fork_unsafe_reason()
    finally:
        release.set()
        thread.join()


@pytest.mark.slow
def test_a_check_that_runs_an_op_at_import_makes_the_audit_fall_back_to_fresh_workers(built_model, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [TESTS_DIR, os.environ.get("PYTHONPATH")])))
    monkeypatch.setenv("TFAUDIT_EXTRA_CHECKS", "fork_unsafe_check:RunsAnOpAtImport")
    specs = [s for s in discover_checks() if s.id in ("safety", "fake-op-at-import")]
    events = []
    assert run_audit(specs, AuditJob(model=built_model("mlp"), budget="quick"), events.append)
    loaded = next(e for e in events if isinstance(e, ModelLoaded))
    isolation = loaded.environment["isolation"]
    assert isolation.startswith("fresh (cannot fork: ") and ("eager context" in isolation or "threads" in isolation)
    assert {e.check: e.status for e in events if isinstance(e, CheckFinished)} == {"safety": "passed", "fake-op-at-import": "passed"}
    assert [e.value for e in events if isinstance(e, MetricEmitted) and e.check == "fake-op-at-import"] == [21.0]


@pytest.mark.slow
def test_forked_and_fresh_workers_report_the_same_model(built_model):
    """Same inventory, same checks' verdicts: the zygote changes how workers start, nothing they measure."""
    specs = [s for s in discover_checks() if s.id in ("safety", "retracing", "pruning")]
    results = {}
    for isolate in ("fork", "fresh"):
        events = []
        assert run_audit(specs, AuditJob(model=built_model("fixed_batch"), budget="quick", isolate=isolate), events.append)
        loaded = next(e for e in events if isinstance(e, ModelLoaded))
        assert loaded.environment["isolation"].startswith(isolate)
        findings = sorted(e.finding["id"] for e in events if e.kind == "finding")
        statuses = {e.check: e.status for e in events if isinstance(e, CheckFinished)}
        results[isolate] = (loaded.inventory, findings, statuses)
    assert results["fork"] == results["fresh"]
    assert "retracing/fixed-batch-dim" in results["fork"][1]
