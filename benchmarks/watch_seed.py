"""Seed 002's traces-before/after table, from watched runs of the scenario programs in tests/watch_programs.

Each scenario runs as written and with its fix (the program's ``fixed`` argument), N times each,
interleaved, under ``tfaudit watch --headless --json``. Traces are the watch's count
(``watch.traces``: every tf.function trace in the program, TensorFlow's and Keras' included);
the time is the program's own loop, as it prints it (``loop_ms=…``). Medians [min–max].

    python benchmarks/watch_seed.py --repeats 3
"""
from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROGRAMS = os.path.join(ROOT, "tests", "watch_programs")
SCENARIOS = [
    ("Basic prediction (predict() per batch)", "predict_per_request.py"),
    ("Input signatures", "varying_batch.py"),
    ("Python vs tensors", "python_steps.py"),
    ("Monte Carlo", "monte_carlo.py"),
]


def watched(script: str, fixed: bool, out: str) -> tuple[int, int, float, list[str]]:
    report = os.path.join(out, "watch.json")
    command = [sys.executable, "-m", "tfaudit", "watch", "--headless", "--json", report, "--", sys.executable, os.path.join(PROGRAMS, script)]
    done = subprocess.run(command + (["fixed"] if fixed else []), capture_output=True, text=True, cwd=out)
    loop = re.search(r"loop_ms=([\d.]+)", done.stdout)
    data = json.load(open(report))
    rows = next(f for f in data["findings"] if f["id"] == "watch/summary")["evidence"]["functions"]
    user_traces = sum(r["traces"] for r in rows if not r["library"])
    findings = [f["id"] for f in data["findings"] if f["severity"] != "info"]
    return int(data["metrics"]["watch.traces"]["value"]), user_traces, float(loop.group(1)) if loop else float("nan"), findings


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):.1f} [{min(values):.1f}–{max(values):.1f}]"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    results: dict[tuple[str, bool], list] = {}
    with tempfile.TemporaryDirectory() as out:
        for _ in range(args.repeats):
            for _, script in SCENARIOS:
                for fixed in (False, True):
                    results.setdefault((script, fixed), []).append(watched(script, fixed, out))
    print("| Test case | Traces before (all / yours) | Traces after (all / yours) | Time before ms | Time after ms | Improvement | Findings before → after |")
    print("|---|---|---|---|---|---|---|")
    for name, script in SCENARIOS:
        before, after = results[(script, False)], results[(script, True)]
        traces = lambda runs: "/".join(sorted({f"{r[0]} / {r[1]}" for r in runs}))  # noqa: E731
        times_before, times_after = [r[2] for r in before], [r[2] for r in after]
        ratio = statistics.median(times_before) / statistics.median(times_after)
        found = lambda runs: ", ".join(sorted({i.split("/")[1] for r in runs for i in r[3]})) or "none"  # noqa: E731
        print(f"| {name} | {traces(before)} | {traces(after)} | {spread(times_before)} | {spread(times_after)} | {ratio:.2f}× | {found(before)} → {found(after)} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
