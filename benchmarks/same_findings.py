"""Do two installations of tfaudit decide the same? Audits each model RUNS times with each, in turn, and prints
the finding ids and severities of every run side by side, marking what differs between installations and what
already varied between one installation's own runs.

    python benchmarks/same_findings.py --before /old/venv/bin/tfaudit --after .venv/bin/tfaudit \
        --runs 3 --out /tmp/same demo /path/to/model [model:--inputs:samples.npz …]

``demo`` stands for ``--demo``; ``PATH:ARG:ARG`` passes extra arguments. Each audit runs headless at the quick
budget from an empty folder (so neither installation's source tree is on its path). A report already in
``--out`` is read, not made again: give one side at a time (``--before`` alone, later ``--after`` alone, then
both) to spread the runs over time.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import tempfile
import time


def audit(tfaudit: str | None, model: str, out: str) -> dict[str, str] | None:
    if os.path.exists(out):
        return decided(out)
    if tfaudit is None:
        return None
    path, *extra = model.split(":")
    target = ["--demo"] if path == "demo" else [path]
    with tempfile.TemporaryDirectory() as empty:
        done = subprocess.run([tfaudit, *target, *extra, "--headless", "--budget", "quick", "--json", out], cwd=empty,
                              capture_output=True, text=True)
    if done.returncode not in (0, 1):
        return {"(exit)": f"{done.returncode}: {done.stderr.strip().splitlines()[-1] if done.stderr.strip() else ''}"}
    return decided(out)


def decided(out: str) -> dict[str, str]:
    report = json.loads(open(out, encoding="utf-8").read())
    found = {f["id"]: f["severity"] for f in report["findings"]}
    found.update({f"({c['id']})": c["status"] for c in report["checks"] if c["status"] in ("errored", "skipped")})
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before")
    parser.add_argument("--after")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--out", default=tempfile.mkdtemp(prefix="same-findings-"))
    parser.add_argument("models", nargs="+")
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    verdicts = {}
    for model in args.models:
        parts = model.split(":")[0].rstrip("/").split("/")
        name = "-".join(parts[-2:]) if parts[-1] in ("model", "saved_model") else parts[-1]
        runs: dict[str, list[dict[str, str]]] = {"before": [], "after": []}
        for run in range(args.runs):
            for side in ("before", "after"):
                started = time.monotonic()
                found = audit(getattr(args, side), model, os.path.join(args.out, f"{name}-{side}-{run}.json"))
                if found is not None:
                    runs[side].append(found)
                    print(f"{name} {side} run {run + 1}: {time.monotonic() - started:.0f} s", flush=True)
        if len(runs["before"]) < args.runs or len(runs["after"]) < args.runs:
            continue
        ids = sorted({i for side in runs.values() for found in side for i in found})
        print(f"\n## {name}\n\n| finding | " + " | ".join(f"{s} {r + 1}" for s in runs for r in range(args.runs)) + " | |")
        print("|---" * (2 * args.runs + 2) + "|")
        same = True
        for finding in ids:
            cells = [found.get(finding, "—") for side in runs.values() for found in side]
            before, after = set(cells[: args.runs]), set(cells[args.runs:])
            mark = "" if before == after and len(before) == 1 else ("varied before" if len(before) > 1 else "DIFFERS")
            same &= mark != "DIFFERS"
            print(f"| {finding} | " + " | ".join(cells) + f" | {mark} |")
        verdicts[name] = same
    print("\n" + "\n".join(f"{name}: {'same' if same else 'DIFFERS'}" for name, same in verdicts.items()))


if __name__ == "__main__":
    main()
