"""The command-line contract: exit codes, one-line errors, reports written whatever happens."""
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from conftest import HANG_LIMIT_S, run_cli, run_clis

pytestmark = pytest.mark.slow


def one_clear_line(result) -> str:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert "Traceback" not in result.stderr
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("tfaudit: error: ")
    return lines[0]


def test_help_is_fast_and_lists_exit_codes():
    start = time.perf_counter()
    result = run_cli("--help")
    elapsed = time.perf_counter() - start
    assert result.returncode == 0
    assert "--fail-on" in result.stdout and "130" in result.stdout
    assert elapsed < 2.0  # goal 0.3 s; the bound leaves room for a loaded CI machine


def test_list_checks_shows_origin(fake_checks):
    result = run_cli("--list-checks")
    assert result.returncode == 0
    assert any(line.startswith("retracing") and "(built-in)" in line for line in result.stdout.splitlines())
    assert "fake-low" in result.stdout and "from TFAUDIT_EXTRA_CHECKS" in result.stdout


@pytest.mark.parametrize(
    "args, expected",
    [
        ([], "give a MODEL path or --demo"),
        (["m", "--demo"], "give a MODEL path or --demo"),
        (["m", "--budget", "huge"], "invalid choice"),
        (["m", "--isolate", "thread"], "invalid choice"),
        (["m", "--checks", "nope"], "unknown check id nope"),
        (["/no/such/model"], "no such file or directory: /no/such/model"),
        (["m", "--report", "a-file/r.md"], "--report: cannot write a-file/r.md: cannot create directory"),
        (["m", "--max-fidelity-loss", "2"], "--max-fidelity-loss must be between 0 and 1"),
    ],
)
def test_usage_errors_exit_2_with_one_line(args, expected, tmp_path):
    os.makedirs(tmp_path / "m")
    (tmp_path / "a-file").write_text("")
    result = subprocess.run([sys.executable, "-m", "tfaudit", *args], capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 2
    assert expected in one_clear_line(result)


def bad_models(tmp_path, built_model):
    empty = tmp_path / "empty"
    empty.mkdir()
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    no_pb = tmp_path / "no_pb"
    (no_pb / "variables").mkdir(parents=True)
    truncated = tmp_path / "truncated"
    truncated.mkdir()
    original = open(os.path.join(built_model("mlp"), "saved_model.pb"), "rb").read()
    (truncated / "saved_model.pb").write_bytes(original[: len(original) // 2])
    return {
        "empty directory": (empty, "empty"),
        "not a model": (text, "not a"),
        "no saved_model.pb": (no_pb, "saved_model.pb"),
        "truncated saved_model.pb": (truncated, "saved_model.pb"),
        "no signature": (built_model("no_signature"), "signature"),
    }


def test_every_bad_model_exits_2_with_one_clear_line(tmp_path, built_model):
    cases = bad_models(tmp_path, built_model)
    results = run_clis(*([str(path), "--headless"] for path, _ in cases.values()))
    for (label, (path, needle)), result in zip(cases.items(), results):
        assert result.returncode == 2, (label, result.stderr)
        line = one_clear_line(result)
        assert needle in line, (label, line)


def test_a_baseline_model_that_cannot_be_timed_stops_the_audit_before_it_starts(built_model, fake_checks):
    model = built_model("mlp")
    cases = {"sequence": "cannot be called with this model's inputs", "two_signatures": "serving_default"}
    results = run_clis(*([model, "--headless", "--checks", "fake-low", "--baseline-model", built_model(name)] for name in cases))
    for (name, needle), result in zip(cases.items(), results):
        assert result.returncode == 2, result.stderr
        line = one_clear_line(result)
        assert f"--baseline-model {built_model(name)}: " in line and needle in line, line


@pytest.mark.slow
def test_a_module_without_signatures_is_audited_through_function(built_model, tmp_path):
    out = tmp_path / "r.json"
    result = run_cli(built_model("no_signature"), "--headless", "--budget", "quick", "--function", "encode", "--json", str(out))
    assert result.returncode in (0, 1), result.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["model"]["function"]["name"] == "encode" and report["model"]["path"] == built_model("no_signature")
    assert {c["id"]: c["status"] for c in report["checks"] if c["status"] == "errored"} == {}
    assert "function encode (saved again as signature serving_default)" in result.stderr


def test_bad_inputs_file_exits_2_naming_the_mismatch(tmp_path, built_model, fake_checks):
    model = built_model("mlp")
    cases = {
        "wrong_key": ({"z": np.zeros((2, 8), np.float32)}, "missing x"),
        "wrong_dtype": ({"x": np.zeros((2, 8), np.int32)}, "dtype int32"),
        "wrong_shape": ({"x": np.zeros((2, 5), np.float32)}, "shape [2, 5]"),
    }
    for name, (arrays, _) in cases.items():
        np.savez(tmp_path / f"{name}.npz", **arrays)
    results = run_clis(*([model, "--headless", "--checks", "fake-low", "--inputs", str(tmp_path / f"{name}.npz")] for name in cases))
    for (name, (_, needle)), result in zip(cases.items(), results):
        assert result.returncode == 2, result.stderr
        assert needle in one_clear_line(result)
    good = tmp_path / "good.npz"
    np.savez(good, x=np.ones((3, 8), np.float32))
    assert run_cli(model, "--headless", "--checks", "fake-low", "--inputs", str(good)).returncode == 0


def test_reports_gates_and_errored_checks(tmp_path, built_model, fake_checks):
    model = built_model("mlp")
    md, js, junit, errored = tmp_path / "new" / "dir" / "a.md", tmp_path / "a.json", tmp_path / "ci" / "a.xml", tmp_path / "e.json"
    result, gated, ungated, failed = run_clis(  # a report's missing folders are made; the fake checks time nothing that matters here
        [model, "--checks", "fake-low,fake-timed", "--budget", "quick", "--report", str(md), "--json", str(js)],
        [model, "--checks", "fake-low,fake-timed", "--budget", "quick", "--fail-on", "medium", "--junit", str(junit)],
        [model, "--checks", "fake-low", "--fail-on", "medium"],
        [model, "--checks", "fake-raises,fake-low", "--json", str(errored)],
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(js.read_text())
    assert [f["id"] for f in report["findings"]] == ["fake-low/minor", "fake-timed/slow"]
    assert report["model"]["signature"] == "serving_default"
    assert "Opportunities: $/month saved at server at 100 req/s" in result.stdout and "Diagnostics" in result.stdout
    assert "fake-timed/slow" in result.stdout and report["sections"]["diagnostics"] == ["fake-timed/slow"]
    assert "## Recommendations" in md.read_text()

    assert gated.returncode == 1
    assert 'failures="1"' in junit.read_text() and 'name="fake-timed/slow"' in junit.read_text()
    assert ungated.returncode == 0

    assert failed.returncode == 3
    report = json.loads(errored.read_text())
    assert {c["id"]: c["status"] for c in report["checks"]} == {"fake-raises": "errored", "fake-low": "findings"}
    assert [f["id"] for f in report["findings"]] == ["fake-low/minor"]
    assert "check fake-raises errored: RuntimeError: planted failure" in failed.stdout


def processes_with_token(token: str, seconds: float = 10.0) -> list[str]:
    """Command lines of the processes still alive (after up to ``seconds``) whose environment holds TFAUDIT_TEST_TOKEN=token."""
    import psutil

    deadline = time.monotonic() + seconds
    while True:
        alive = []
        for process in psutil.process_iter(["cmdline"]):
            try:
                if process.environ().get("TFAUDIT_TEST_TOKEN") == token and process.status() != psutil.STATUS_ZOMBIE:
                    alive.append(" ".join(process.info["cmdline"] or []))
            except psutil.Error:
                pass
        if not alive or time.monotonic() > deadline:
            return alive
        time.sleep(0.2)


@pytest.mark.parametrize("isolate", ["fork", "fresh"])
def test_ctrl_c_stops_workers_and_writes_what_finished(tmp_path, built_model, fake_checks, isolate):
    js = tmp_path / "a.json"
    token = f"ctrl-c-{isolate}-{os.getpid()}-{time.time()}"
    process = subprocess.Popen(
        [sys.executable, "-m", "tfaudit", built_model("mlp"), "--checks", "fake-low,fake-hang,fake-timed", "--json", str(js), "--isolate", isolate],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "TFAUDIT_TEST_TOKEN": token},
        # As a terminal's Ctrl-C finds it: a suite started in the background (`.ci/run &`) inherits SIGINT ignored.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    for line in process.stderr:
        if "[fake-hang] started" in line:
            break
    time.sleep(1.0)
    process.send_signal(signal.SIGINT)
    stdout, _ = process.communicate(timeout=60)
    assert process.returncode == 130
    report = json.loads(js.read_text())
    assert report["interrupted"] is True
    statuses = {c["id"]: (c["status"], c["error"]) for c in report["checks"]}
    assert statuses["fake-low"] == ("findings", "")
    assert statuses["fake-hang"] == ("errored", "interrupted by the user")
    assert statuses["fake-timed"][0] == "skipped"
    assert [f["id"] for f in report["findings"]] == ["fake-low/minor"]
    assert "interrupted" in stdout
    assert report["environment"]["isolation"].startswith(isolate)
    assert processes_with_token(token) == []  # no worker, zygote or conversion process outlives the CLI


def test_the_documented_check_example_runs(tmp_path, built_model, monkeypatch):
    """The 'Writing a check' example in docs/reference.md is real code that works through the plugin door."""
    readme = open(os.path.join(os.path.dirname(__file__), "..", "docs", "reference.md"), encoding="utf-8").read()
    section = readme.split("## Writing a check")[1]
    code = section.split("```python\n")[1].split("```")[0]
    package = tmp_path / "my_checks"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "ops.py").write_text(code)
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    monkeypatch.setenv("TFAUDIT_EXTRA_CHECKS", "my_checks.ops:SlowestBatchCheck")
    js = tmp_path / "r.json"
    result = run_cli(built_model("mlp"), "--checks", "batch-one", "--budget", "quick", "--json", str(js))
    assert result.returncode == 0, result.stderr
    report = json.loads(js.read_text())
    assert report["checks"][0]["status"] in ("passed", "findings")
    assert {s["series"] for s in report["samples"]} == {"per_row_ms"}
    result = run_cli(built_model("fixed_batch"), "--checks", "batch-one", "--budget", "quick", "--json", str(js))
    assert json.loads(js.read_text())["checks"][0] == {
        "id": "batch-one", "title": "Batch-1 latency", "status": "skipped", "duration_s": pytest.approx(0, abs=30),
        "error": "the signature has a fixed batch dimension", "charts": [],
    }


def test_recorded_stream_replays_into_the_same_report(tmp_path, built_model, fake_checks):
    from tfaudit.report.audit import AuditState
    from tfaudit.events import from_json
    from tfaudit.report.markdown import render_markdown

    md, record = tmp_path / "a.md", tmp_path / "a.jsonl"
    result = run_cli(built_model("mlp"), "--checks", "fake-low", "--report", str(md), "--record", str(record))
    assert result.returncode == 0, result.stderr
    state = AuditState(model_path=built_model("mlp"), budget="standard")
    for line in record.read_text().splitlines():
        state.apply(from_json(line))
    replayed = render_markdown(state)
    original = md.read_text()
    top = lambda text: [line for line in text.split("## Checks")[0].splitlines() if "· budget `" not in line]  # noqa: E731 - the line with the duration
    assert top(replayed) == top(original)
    assert "## Model" in replayed and "fake-low/minor" in replayed


def test_config_budgets_and_baseline_gate_the_exit_code(tmp_path, built_model, fake_checks):
    model = built_model("mlp")
    first = tmp_path / "first.json"
    assert run_cli(model, "--checks", "fake-low", "--json", str(first)).returncode == 0
    assert json.loads(first.read_text())["metrics"]["fake-low.input_count"]["value"] == 1

    config = tmp_path / "ci.toml"
    config.write_text('[tool.tfaudit]\nchecks = ["fake-low"]\n[tool.tfaudit.budgets]\n"fake-low.input_count" = 0\n')
    md = tmp_path / "gated.md"
    result = run_cli(model, "--config", str(config), "--report", str(md))
    assert result.returncode == 1, result.stderr
    assert "budget violated: fake-low.input_count" in result.stdout
    assert "**violated**" in md.read_text()

    config.write_text('[tool.tfaudit]\nchecks = ["fake-low"]\n[tool.tfaudit.budgets]\n"fake-low.input_count" = 5\n')
    result = run_cli(model, "--config", str(config), "--baseline", str(first), "--report", str(md))
    assert result.returncode == 0, result.stderr
    assert "No metric moved beyond its measured noise." in md.read_text()

    config.write_text("checks = 3")
    bad = run_cli(model, "--config", str(config))
    assert bad.returncode == 2 and "wrong type" in one_clear_line(bad)
    (tmp_path / "old.json").write_text("{")
    bad = run_cli(model, "--checks", "fake-low", "--baseline", str(tmp_path / "old.json"))
    assert bad.returncode == 2 and "is not JSON" in one_clear_line(bad)


@pytest.mark.parametrize("isolate", ["fork"])  # fresh workers' crash, memory and time limits: test_runner.py, for both modes
def test_crash_oom_and_timeout_still_leave_complete_reports(tmp_path, built_model, fake_checks, isolate):
    md, js, junit = tmp_path / "a.md", tmp_path / "a.json", tmp_path / "a.xml"
    result = run_cli(
        built_model("mlp"), "--checks", "fake-segfault,fake-hog,fake-hang,fake-low", "--memory-limit", "1500",
        "--check-timeout", str(HANG_LIMIT_S[isolate]), "--report", str(md), "--json", str(js), "--junit", str(junit), "--isolate", isolate,
    )
    assert result.returncode == 3, result.stderr
    report = json.loads(js.read_text())
    errors = {c["id"]: c["error"] for c in report["checks"] if c["status"] == "errored"}
    assert "SIGSEGV" in errors["fake-segfault"]
    assert "over the worker memory limit of 1500 MiB" in errors["fake-hog"]
    assert f"timed out after {HANG_LIMIT_S[isolate]} s" in errors["fake-hang"]
    assert [f["id"] for f in report["findings"]] == ["fake-low/minor"]
    text = md.read_text()
    assert "## Recommendations" in text and text.count("errored:**") == 3
    assert 'errors="3"' in junit.read_text()
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".tfaudit-")]  # no temporary report left behind


def test_missing_baseline_model_is_one_line(built_model):
    done = run_cli(built_model("mlp"), "--headless", "--baseline-model", "/nonexistent/old_model")
    assert done.returncode == 2
    assert done.stderr.strip() == "tfaudit: error: --baseline-model: no such file or directory: /nonexistent/old_model"
