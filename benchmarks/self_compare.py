"""Does `--baseline` cry wolf, and does it catch a real slowdown?

For each model (a small MLP, MobileNetV2 α0.35/96) this audits the model once, then N times
more, each with `--baseline` of the run before it (a self-compare: nothing changed, so exit 1
is a false alarm); after each self-compare it audits the same model with its body computed
twice (about 2× slower; the factor is measured here, interleaved in one process) against the
newest run of the original (exit 1 with a latency regression is a detection). Meanwhile another
process keeps one core busy (`--hog always`), or every other audit (`--hog alternate`, so
baseline and new run see different load), or never.

    python benchmarks/self_compare.py --runs 10 --out /tmp/self-compare

Writes OUT/results.json (OUT/rejudged.json with --rejudge; every comparison: exit code, regressions, host index) and prints the
false-alarm and detection rates. `--rejudge` recomputes every comparison from the reports an
earlier run left in OUT with this tree's gates (the same `compare_with_baseline` the CLI calls
on the same metrics), for runs that ended early or predate a gate change. Each audit is `python -m tfaudit MODEL --headless --budget
quick --json RUN.json [--baseline OLD.json]`, run in OUT so no pyproject budgets apply.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field

HERE = os.path.dirname(os.path.abspath(__file__))
SLOW_REPEAT = {"mlp": 6, "mobilenet": 2}  # bodies per call: about 2× the latency (see slowdown(); ×4 made the MLP 1.54-1.63× on a 2-core host)
LATENCY_UNIT = "ms"


@dataclass
class Comparison:
    model: str
    kind: str  # "self" (false alarm when exit 1) or "slow" (detection when a latency regressed)
    exit_code: int
    regressions: list[str]
    latency_regressions: list[str]
    not_comparable: list[str]
    unconfirmed: list[str]  # slower in their own process, not in the run's fresh processes together: not regressions
    host_index_ms: tuple[float | None, float | None]  # retracing's reference workload: baseline, new
    seconds: float
    extra: dict = field(default_factory=dict)


def build_models(out: str, kinds: list[str]) -> dict[str, dict]:
    """Build each model and its slowed twin in a subprocess (this process stays TensorFlow-free)."""
    info = {}
    for kind in kinds:
        base, slow = os.path.join(out, "models", kind), os.path.join(out, "models", f"{kind}_slow")
        code = (
            f"import sys; sys.path.insert(0, {HERE!r}); import models, json; "
            f"models.build({kind!r}, {base!r}, 1); models.build({kind!r}, {slow!r}, {SLOW_REPEAT[kind]}); "
            f"print(json.dumps([models.slowdown({base!r}, {slow!r}) for _ in range(3)]))"
        )
        result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
        info[kind] = {"base": base, "slow": slow, "slowdown_x3": json.loads(result.stdout.strip().splitlines()[-1])}
    return info


def audit(model: str, json_path: str, baseline: str | None, cwd: str) -> tuple[int, float]:
    args = [sys.executable, "-m", "tfaudit", model, "--headless", "--budget", "quick", "--json", json_path]
    if baseline:
        args += ["--baseline", baseline]
    started = time.monotonic()
    with open(json_path + ".log", "w") as log:
        code = subprocess.run(args, cwd=cwd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL).returncode
    return code, time.monotonic() - started


def describe(model: str, kind: str, code: int, seconds: float, new_json: str, old_json: str, rejudge: bool = False) -> Comparison:
    new, old = (json.load(open(p)) for p in (new_json, old_json))
    baseline = new.get("baseline") or {}
    if rejudge:
        from tfaudit.budget import BUDGETS
        from tfaudit.report.gates import compare_with_baseline

        confidence = BUDGETS[new.get("budget", "quick")].confidence
        baseline = compare_with_baseline(old_json, old, new["metrics"], [], new["environment"], confidence).to_dict()
        errored = any(c["status"] == "errored" for c in new["checks"])
        code = 1 if baseline["regressions"] else 3 if errored else 0
    regressions = [r["metric"] for r in baseline.get("regressions", [])]
    latency = [r["metric"] for r in baseline.get("regressions", []) if r.get("unit") == LATENCY_UNIT]
    index = lambda report: (report["metrics"].get("retracing.host_index_ms") or {}).get("value")  # noqa: E731
    return Comparison(
        model, kind, code, regressions, latency, [r["metric"] for r in baseline.get("not_comparable", [])],
        [r["metric"] for r in baseline.get("unconfirmed", [])], (index(old), index(new)), round(seconds, 1),
    )


class Hog:
    """Another process keeping one core busy."""

    def __init__(self) -> None:
        self.process: subprocess.Popen | None = None

    def set(self, on: bool) -> None:
        if on and self.process is None:
            self.process = subprocess.Popen([sys.executable, "-c", "while True: pass"])
        elif not on and self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None


def run(kinds: list[str], runs: int, out: str, hog_mode: str, log=print) -> dict:
    os.makedirs(out, exist_ok=True)
    models = build_models(out, kinds)
    hog = Hog()
    comparisons: list[Comparison] = []
    audits = 0

    def next_audit(*args) -> tuple[int, float]:
        nonlocal audits
        hog.set(hog_mode == "always" or (hog_mode == "alternate" and audits % 2 == 0))
        audits += 1
        return audit(*args)

    try:
        for kind in kinds:
            previous = os.path.join(out, f"{kind}-0.json")
            next_audit(models[kind]["base"], previous, None, out)
            for i in range(1, runs + 1):
                current = os.path.join(out, f"{kind}-{i}.json")
                code, seconds = next_audit(models[kind]["base"], current, previous, out)
                comparisons.append(describe(kind, "self", code, seconds, current, previous))
                log(f"{kind} self {i}: exit {code}, regressed {comparisons[-1].regressions}, not confirmed {comparisons[-1].unconfirmed}")
                slow = os.path.join(out, f"{kind}_slow-{i}.json")
                code, seconds = next_audit(models[kind]["slow"], slow, current, out)
                comparisons.append(describe(kind, "slow", code, seconds, slow, current))
                log(f"{kind} slow {i}: exit {code}, regressed {comparisons[-1].regressions}")
                previous = current
    finally:
        hog.set(False)
    return summarise(kinds, comparisons, models, hog_mode, runs, out)


def summarise(kinds: list[str], comparisons: list[Comparison], models: dict, hog_mode: str, runs: int, out: str, name: str = "results.json") -> dict:
    summary = {}
    for kind in kinds:
        own = [c for c in comparisons if c.model == kind]
        selfs, slows = [c for c in own if c.kind == "self"], [c for c in own if c.kind == "slow"]
        summary[kind] = {
            "false_alarms": sum(c.exit_code == 1 for c in selfs),
            "unconfirmed_in_self_compares": sum(bool(c.unconfirmed) for c in selfs),
            "self_compares": len(selfs),
            "detected": sum(c.exit_code == 1 and bool(c.latency_regressions) for c in slows),
            "slowdowns": len(slows),
            "measured_slowdown_x3": [round(x, 2) for x in models.get(kind, {}).get("slowdown_x3", [])],
            "slow_repeat": SLOW_REPEAT[kind],
        }
    result = {"hog": hog_mode, "runs": runs, "summary": summary, "comparisons": [asdict(c) for c in comparisons]}
    with open(os.path.join(out, name), "w") as f:
        json.dump(result, f, indent=1)
    return result


def rejudge(kinds: list[str], out: str) -> dict:
    comparisons = []
    for kind in kinds:
        i = 1
        while os.path.exists(os.path.join(out, f"{kind}_slow-{i}.json")):
            current, previous = (os.path.join(out, f"{kind}-{j}.json") for j in (i, i - 1))
            comparisons.append(describe(kind, "self", -1, 0.0, current, previous, rejudge=True))
            comparisons.append(describe(kind, "slow", -1, 0.0, os.path.join(out, f"{kind}_slow-{i}.json"), current, rejudge=True))
            i += 1
    return summarise(kinds, comparisons, {}, "see the original run", i - 1, out, "rejudged.json")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10, help="self-compares (and slowdowns) per model")
    parser.add_argument("--models", default="mlp,mobilenet")
    parser.add_argument("--hog", choices=("always", "alternate", "none"), default="always")
    parser.add_argument("--out", default="self-compare")
    parser.add_argument("--rejudge", action="store_true", help="recompute the comparisons from the reports in OUT; audit nothing")
    args = parser.parse_args()
    kinds = args.models.split(",")
    result = rejudge(kinds, args.out) if args.rejudge else run(kinds, args.runs, args.out, args.hog)
    for kind, s in result["summary"].items():
        print(
            f"{kind}: {s['false_alarms']}/{s['self_compares']} self-compares exited 1 (false alarms); "
            f"{s['detected']}/{s['slowdowns']} slowdowns detected (body ×{s['slow_repeat']}, measured "
            f"{', '.join(f'{x:.2f}×' for x in s['measured_slowdown_x3']) or 'see the original run'}); hog: {result['hog']}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
