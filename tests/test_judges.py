"""Every judge on stored measurements, in milliseconds and without TensorFlow.

``tests/data/measurements/<check>/<case>.json`` holds what a check's gather measured on a model
(``source`` says which; ``synthetic: …`` where no model built here can produce it) and the
findings its judge must decide from it (``expected``: id → severity, or "undecided" for a comparison the budget left undecided).
"""
import importlib
import json
import os
import pkgutil
import subprocess
import sys

import pytest

import tfaudit.checks
from tfaudit.api import Finding

MEASUREMENTS = os.path.join(os.path.dirname(__file__), "data", "measurements")
CASES = sorted(
    os.path.join(check, name) for check in os.listdir(MEASUREMENTS) for name in os.listdir(os.path.join(MEASUREMENTS, check))
    if name.endswith(".json")
)
JUDGED = sorted(m.name for m in pkgutil.iter_modules(tfaudit.checks.__path__) if m.ispkg and not m.name.startswith("_"))  # "_": shared libraries
TENSORFLOW_SIDE = ("tensorflow", "keras", "tf_keras", "tensorflow_model_optimization", "ai_edge_litert")


def load_case(case: str) -> dict:
    with open(os.path.join(MEASUREMENTS, case), encoding="utf-8") as f:
        return json.load(f)


def judged(check: str, measurements: dict) -> dict[str, str]:
    judge = importlib.import_module(f"tfaudit.checks.{check}.judge").judge
    return {item.id: "undecided" if item.kind == "undecided" else item.severity for item in judge(measurements) if isinstance(item, Finding)}


@pytest.mark.parametrize("case", CASES)
def test_the_judge_decides_the_stored_measurements(case):
    check = os.path.dirname(case)
    stored = load_case(case)
    assert stored["source"], "say which model (or synthetic: why) the measurements came from"
    assert judged(check, stored["measurements"]) == stored["expected"]


@pytest.mark.parametrize("check", JUDGED)
def test_every_catalogued_finding_both_fires_and_stays_quiet(check):
    rules = importlib.import_module(f"tfaudit.checks.{check}.catalogue").RULES
    cases = [{k: v for k, v in load_case(c)["expected"].items() if v != "undecided"} for c in CASES if os.path.dirname(c) == check]
    for finding_id in rules:
        assert any(finding_id in expected for expected in cases), f"no stored case where {finding_id} fires"
        assert any(finding_id not in expected for expected in cases), f"no stored case where {finding_id} stays quiet"


def test_judges_and_catalogues_import_no_tensorflow():
    blocker = (
        "import sys\n"
        "class Blocked:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        f"        if name.split('.')[0] in {TENSORFLOW_SIDE!r}:\n"
        "            raise ImportError(f'{name} imported by a judge or a catalogue')\n"
        "sys.meta_path.insert(0, Blocked())\n"
        "import importlib\n"
        f"for check in {JUDGED!r}:\n"
        "    importlib.import_module(f'tfaudit.checks.{check}.judge')\n"
        "    importlib.import_module(f'tfaudit.checks.{check}.catalogue')\n"
        "print('imported', len(" + repr(JUDGED) + "))\n"
    )
    done = subprocess.run([sys.executable, "-c", blocker], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert JUDGED, "no check is split into gather/judge/catalogue yet"


def test_a_settings_record_from_before_the_turns_is_decided_at_its_budgets_confidence():
    from tfaudit.api import budget_confidence
    from tfaudit.checks.serving.knobs import settings_rows

    rounds = [[1.0, 1.1, 0.9], [1.0, 1.05, 0.95]]
    old = {"settings": [{"setting": {}, "batch": 1, "rounds_ms": rounds},
                        {"setting": {"intra": 1, "inter": 1}, "batch": 1, "rounds_ms": rounds}]}
    for budget in ("quick", "standard"):
        (row,) = settings_rows(old, budget_confidence(budget))
        assert row["confidence"] == budget_confidence(budget) and row["rounds"]["a_ms"] == [1.0, 1.0]
