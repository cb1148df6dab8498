"""Do repeated audits of the demo give the same verdicts?

    python benchmarks/demo_stability.py --runs 5 --out /tmp/demo-stability

Audits the demo `--runs` times (`--headless --budget quick --json`) and compares what a reader
acts on: the recommendation ids with their severities, the notes (info findings), and the order
of the top 3 opportunities. A comparison left undecided is no verdict (it may be decided in another run, never the other
way), so the undecided ones are printed, not compared. Prints each run's top 3 and every difference; exits 1 when any run differs from
the first.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys


def verdict(report: dict) -> dict:
    findings = report["findings"]  # opportunities first, highest priority first
    recommendations = [f for f in findings if f["severity"] != "info"]
    return {
        "recommendations": sorted(f"{f['id']} ({f['severity']})" for f in recommendations),
        "notes": sorted(f["id"] for f in findings if f["severity"] == "info" and f.get("kind") != "undecided"),
        "undecided": sorted(f["id"] for f in findings if f.get("kind") == "undecided"),
        "top3": report["sections"]["opportunities"][:3],
        "priorities": {f["id"]: f["priority"] for f in recommendations},
        "errored": [c["id"] for c in report["checks"] if c["status"] == "errored"],
    }


def differences(first: dict, other: dict) -> list[str]:
    return [f"{key}: {first[key]} → {other[key]}" for key in ("recommendations", "notes", "top3", "errored") if first[key] != other[key]]


def run(runs: int, out: str) -> list[dict]:
    out = os.path.abspath(out)  # the audits run in it
    os.makedirs(out, exist_ok=True)
    verdicts = []
    for i in range(runs):
        path = os.path.join(out, f"demo-{i}.json")
        with open(path + ".log", "w") as log:
            subprocess.run(
                [sys.executable, "-m", "tfaudit", "--demo", "--headless", "--budget", "quick", "--json", path],
                cwd=out, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, check=False,
            )
        with open(path) as f:
            verdicts.append(verdict(json.load(f)))
    return verdicts


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--out", default="demo-stability")
    args = parser.parse_args()
    verdicts = run(args.runs, args.out)
    flips = 0
    for i, v in enumerate(verdicts):
        print(f"run {i}: top 3 {v['top3']}; priorities {v['priorities']}; undecided {v['undecided']}")
        for line in differences(verdicts[0], v):
            flips += 1
            print(f"  differs from run 0: {line}")
    print(f"{args.runs} runs: {'the same finding ids, severities and top-3 order' if not flips else f'{flips} differences'}")
    return 1 if flips else 0


if __name__ == "__main__":
    raise SystemExit(main())
