"""`tfaudit rejudge`: stored reports judged again reproduce their findings, without TensorFlow, and old reports get one line."""
import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.join(os.path.dirname(__file__), "..")
STORED = [os.path.join(ROOT, "reports", "demo.json"), os.path.join(ROOT, "tests", "data", "reports", "mobilenet_v2.json")]
TENSORFLOW_BLOCKED = (
    "import sys\n"
    "class Blocked:\n"
    "    def find_spec(self, name, path=None, target=None):\n"
    "        if name.split('.')[0] in ('tensorflow', 'keras', 'tf_keras', 'tensorflow_model_optimization', 'ai_edge_litert'):\n"
    "            raise ImportError(name + ' imported by tfaudit rejudge')\n"
    "sys.meta_path.insert(0, Blocked())\n"
    "from tfaudit.cli import main\n"
    "raise SystemExit(main(sys.argv[1:]))\n"
)


def rejudge(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", TENSORFLOW_BLOCKED, "rejudge", *args], capture_output=True, text=True, timeout=60)


RANKING = ("priority", "worth", "runtime", "per")  # the ranking in the profile's currency, and what it prices by: newer than the stored reports


def comparable(findings: list[dict]) -> list[dict]:
    return sorted(({k: v for k, v in f.items() if k not in RANKING} for f in findings), key=lambda f: f["id"])


@pytest.mark.parametrize("stored", STORED, ids=os.path.basename)
def test_a_stored_report_judged_again_has_the_same_findings_and_metrics(stored, tmp_path):
    out = tmp_path / "again.json"
    done = rejudge(stored, "--json", str(out), "--report", str(tmp_path / "again.md"))
    assert done.returncode in (0, 1), done.stderr
    before, after = json.loads(open(stored, encoding="utf-8").read()), json.loads(out.read_text())
    decided = lambda report: [f for f in report["findings"] if f.get("kind") != "undecided"]  # noqa: E731 (older reports listed none)
    assert comparable(decided(after)) == comparable(decided(before))
    assert after["metrics"] == before["metrics"] and after["measurements"] == before["measurements"]
    labelled = lambda report: {(s["check"], s["series"]): [p[2:] for p in s["points"]] for s in report["samples"]}  # noqa: E731
    assert labelled(after) == labelled(before)  # a chart's point labels (the compression variants' names) are kept
    judged = done.stderr.split("measurements: ", 1)[1].splitlines()[0].split(", ")
    assert set(judged) == set(before["measurements"])  # every check with measurements was judged again


def test_a_report_without_measurements_gets_one_line(tmp_path):
    report = json.loads(open(STORED[0], encoding="utf-8").read())
    del report["measurements"]
    old = tmp_path / "old.json"
    old.write_text(json.dumps(report))
    done = rejudge(str(old))
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "holds no measurements" in done.stderr


@pytest.mark.parametrize("content,message", [("not json", "is not JSON"), ('{"tool": {"name": "other"}}', "is not a tfaudit JSON report")])
def test_what_is_not_a_report_gets_one_line(tmp_path, content, message):
    path = tmp_path / "report.json"
    path.write_text(content)
    done = rejudge(str(path))
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and message in done.stderr
    assert rejudge(str(tmp_path / "missing.json")).stderr.startswith("tfaudit rejudge: error: cannot read")


def test_a_stored_report_ranked_again_for_another_profile(tmp_path):
    out = tmp_path / "edge.json"
    done = rejudge(STORED[0], "--profile", "edge", "--json", str(out))
    assert done.returncode in (0, 1), done.stderr
    report = json.loads(out.read_text())
    assert report["profile"]["name"] == "edge" and report["profile"]["unit"] == "edge points"
    first = next(f for f in report["findings"] if f["id"] == report["sections"]["opportunities"][0])
    assert first["check"] in ("quantization", "pruning") and first["worth"]["unit"] == "edge points"  # the flatbuffer's savings
    assert all(not f["id"].startswith("serving/") for f in report["findings"] if f["id"] in report["sections"]["opportunities"])
