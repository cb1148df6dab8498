import os
import subprocess
import sys

import pytest

TESTS_DIR = os.path.dirname(os.path.abspath(__file__))
# A check's time limit for the tests that hang one on purpose. It runs from the worker's start: a fresh interpreter imports
# TensorFlow and loads the model first, a worker forked from the zygote has both already.
HANG_LIMIT_S = {"fork": 8, "fresh": 15}


@pytest.fixture(scope="session")
def built_model(tmp_path_factory):
    """build(name) -> path of build_<name> from tests/models.py or tests/odd_models.py, built once per session."""
    cache: dict[str, str] = {}

    def build(name: str) -> str:
        if name not in cache:
            import models
            import odd_models

            builder = getattr(models, f"build_{name}", None) or getattr(odd_models, f"build_{name}")
            target = tmp_path_factory.mktemp(name) / ("model.keras" if name.startswith("keras3") else "model")
            cache[name] = builder(str(target))
        return cache[name]

    return build


@pytest.fixture
def fake_checks(monkeypatch):
    """Make tests/fake_checks.py importable in workers and listed by the CLI."""
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [TESTS_DIR, os.environ.get("PYTHONPATH")])))
    targets = ["TimedFinding", "LowFinding", "Raises", "Segfaults", "Hangs", "Skips", "Killed", "WrongCheckId", "Hog", "Chatty", "HelperTrouble"]
    monkeypatch.setenv("TFAUDIT_EXTRA_CHECKS", ",".join(f"fake_checks:{t}" for t in targets))


def run_cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "tfaudit", *args], capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
    )


def run_clis(*runs: list[str], at_once: int = 2) -> list[subprocess.CompletedProcess]:
    """``run_cli`` on each argument list, ``at_once`` at a time: for runs whose results time nothing (usage errors)."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(at_once) as pool:
        return list(pool.map(lambda args: run_cli(*args), runs))
