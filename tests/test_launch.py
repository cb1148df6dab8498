"""The import rule for every process tfaudit starts (tfaudit.engine.launch): the installation first, the user's folders after."""
import json
import os
import shutil
import subprocess
import sys

import pytest

import tfaudit
from tfaudit.engine.launch import USER_PATH_VARIABLE, VERSION_VARIABLE, WRONG_INSTALLATION, child_environment, python_command

TFAUDIT_DIR = os.path.dirname(tfaudit.__file__)
CONSOLE_SCRIPT = os.path.join(os.path.dirname(sys.executable), "tfaudit")  # what a newcomer runs, not python -m


def plant_decoys(folder) -> None:
    """What a user's project folder may hold: each fails loudly if anything imports it."""
    for package in ("tfaudit", "keras", "checks"):
        (folder / package).mkdir(parents=True)
        (folder / package / "__init__.py").write_text(f"raise ImportError('the decoy {package}/ in {folder} was imported')\n")
    (folder / "tensorflow.py").write_text(f"raise ImportError('the decoy tensorflow.py in {folder} was imported')\n")


def run_started(module: str, cwd, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(python_command(module), cwd=cwd, env=env, capture_output=True, text=True, timeout=60)


def test_a_child_takes_pythonpath_and_the_current_folder_after_the_installation(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(["lib", "/opt/more"]))
    monkeypatch.delenv(USER_PATH_VARIABLE, raising=False)
    env = child_environment({"EXTRA": "1"})
    assert "PYTHONPATH" not in env
    assert env[USER_PATH_VARIABLE] == os.pathsep.join([str(tmp_path / "lib"), "/opt/more", str(tmp_path)])
    assert env[VERSION_VARIABLE] == tfaudit.__version__ and env["EXTRA"] == "1"
    monkeypatch.chdir("/")
    assert child_environment(environ=env)[USER_PATH_VARIABLE] == env[USER_PATH_VARIABLE]  # a child's children keep it
    command = python_command("tfaudit.engine.worker", "{}")
    assert command[:2] == [sys.executable, "-P"] and command[2].endswith(os.path.join("tfaudit", "engine", "launch.py"))


def test_a_started_process_imports_the_installation_whatever_the_folders_hold(tmp_path, monkeypatch):
    project, on_path = tmp_path / "project", tmp_path / "on_pythonpath"
    plant_decoys(project)
    plant_decoys(on_path)
    (project / "users_probe.py").write_text(
        "import importlib.util, json, sys\n"
        "def main(argv):\n"
        "    import tfaudit\n"
        "    found = {name: importlib.util.find_spec(name).origin for name in ('tensorflow', 'keras')}\n"
        "    print(json.dumps({'tfaudit': tfaudit.__file__, 'probe': __file__, **found}))\n"
        "    return 0\n"
    )
    # as started from `project` with PYTHONPATH=on_path (a decoy there would come first under plain python)
    environ = {key: value for key, value in os.environ.items() if key != USER_PATH_VARIABLE}
    monkeypatch.chdir(project)
    env = child_environment(environ={**environ, "PYTHONPATH": str(on_path)})
    assert env[USER_PATH_VARIABLE] == f"{on_path}{os.pathsep}{project}"
    done = run_started("users_probe", project, env)
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout)
    assert seen["tfaudit"] == tfaudit.__file__
    assert seen["probe"] == str(project / "users_probe.py")  # the user's own code still imports, from their folder
    for name in ("tensorflow", "keras"):
        assert str(tmp_path) not in seen[name], name


def test_a_process_that_would_run_another_tfaudit_stops_with_one_line_naming_both(tmp_path):
    other = tmp_path / "elsewhere" / "tfaudit" / "engine"
    other.mkdir(parents=True)
    shutil.copy(os.path.join(TFAUDIT_DIR, "engine", "launch.py"), other / "launch.py")
    command = [sys.executable, "-P", str(other / "launch.py"), "tfaudit.engine.worker", "{}"]
    done = subprocess.run(command, env=child_environment(), capture_output=True, text=True, timeout=60)
    assert done.returncode == WRONG_INSTALLATION
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("tfaudit: ")
    assert TFAUDIT_DIR in done.stderr and str(tmp_path / "elsewhere" / "tfaudit") in done.stderr

    reinstalled = run_started("tfaudit.engine.worker", tmp_path, child_environment({VERSION_VARIABLE: "0.0.1"}))
    assert reinstalled.returncode == WRONG_INSTALLATION
    assert f"version {tfaudit.__version__} here but 0.0.1" in reinstalled.stderr and reinstalled.stderr.count("\n") == 1


def test_a_module_missing_from_tfaudit_is_named_with_where_tfaudit_came_from(tmp_path):
    done = run_started("tfaudit.checks.no_such_check", tmp_path, child_environment())
    assert done.returncode == WRONG_INSTALLATION
    assert done.stderr.startswith("tfaudit: cannot import tfaudit.checks.no_such_check") and TFAUDIT_DIR in done.stderr


@pytest.mark.slow
@pytest.mark.skipif(not os.path.exists(CONSOLE_SCRIPT), reason="no tfaudit console script beside this Python")
def test_the_demo_audits_from_a_folder_of_decoys_with_the_users_import(tmp_path):
    """The README's first command where a newcomer runs it: the project folder holds tfaudit/, tensorflow.py, keras/, checks/."""
    plant_decoys(tmp_path)
    (tmp_path / "users_ops.py").write_text("import os\nopen(f'imported-by-{os.getpid()}', 'w').close()\n")  # a --import module of the user's
    env = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", USER_PATH_VARIABLE)}
    for isolate, checks in (("fork", "safety,quantization"), ("fresh", "safety")):
        report = tmp_path / f"{isolate}.json"
        done = subprocess.run(
            [CONSOLE_SCRIPT, "--demo", "--headless", "--budget", "quick", "--checks", checks, "--isolate", isolate,
             "--import", "users_ops", "--json", str(report)],
            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL,
        )
        assert done.returncode in (0, 1), done.stderr
        audit = json.loads(report.read_text())
        assert [(c["id"], c["status"]) for c in audit["checks"] if c["status"] == "errored"] == []
        assert any(f["check"] == "quantization" for f in audit["findings"]) or isolate == "fresh"
    assert any(name.startswith("imported-by-") for name in os.listdir(tmp_path))
