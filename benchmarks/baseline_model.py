"""Does `--baseline-model` call an unchanged model the same, and catch a 2x slower twin every time?

Builds a model and its twin computing its body several times (self_compare.build_models), then
audits `--checks retracing --baseline-model` N times with the model against itself and N times
with the twin against the model, alternately, and prints each run's decision: outcome, the
new/old ratio with its interval, the rounds it took, the band and the bias the old export's second
load showed. An unchanged model must never read "slower"; every interval must contain 1 or lie
within the band; the twin must read "slower" every time.

    python benchmarks/baseline_model.py --runs 10 --models mlp --budget quick
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from self_compare import build_models  # noqa: E402

METRIC = "retracing.latency_vs_baseline_model"


def audit(model: str, old: str, budget: str, json_path: str, cwd: str) -> dict:
    args = [sys.executable, "-m", "tfaudit", model, "--headless", "--checks", "retracing", "--budget", budget,
            "--baseline-model", old, "--json", json_path]
    started = time.monotonic()
    code = subprocess.run(args, cwd=cwd, capture_output=True, text=True, stdin=subprocess.DEVNULL).returncode
    seconds = time.monotonic() - started
    metric = json.load(open(json_path))["metrics"].get(METRIC, {}) if os.path.exists(json_path) else {}
    decision = metric.get("decision") or {}
    return {"exit": code, "seconds": round(seconds, 1), "ratio": [metric.get(k) for k in ("value", "low", "high")],
            "outcome": decision.get("outcome"), "rounds": decision.get("rounds"), "band": decision.get("band"),
            "bias": decision.get("bias")}


def line(kind: str, run: dict) -> str:
    value, low, high = run["ratio"]
    ratio = f"{value:.3f} [{low:.3f}–{high:.3f}]" if value is not None else "none"
    bias = f"{run['bias']:.3f}" if run["bias"] is not None else "–"
    band = f"{run['band']:.3f}" if run["band"] is not None else "–"
    return f"{kind:<5} exit {run['exit']}  {run['outcome'] or 'no decision':<10} ratio {ratio}  rounds {run['rounds']}  band ±{band}  bias {bias}  {run['seconds']} s"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--models", default="mlp")
    parser.add_argument("--budget", default="quick")
    parser.add_argument("--out", help="default: a new temp dir")
    args = parser.parse_args()
    out = args.out or tempfile.mkdtemp(prefix="tfaudit-baseline-model-")
    failures = 0
    for kind, paths in build_models(out, args.models.split(",")).items():
        print(f"{kind}: the twin measured {', '.join(f'{x:.2f}' for x in paths['slowdown_x3'])}x slower in its own process")
        runs: dict[str, list[dict]] = {"self": [], "slow": []}
        for i in range(args.runs):
            for name, model in (("self", paths["base"]), ("slow", paths["slow"])):
                run = audit(model, paths["base"], args.budget, os.path.join(out, f"{kind}-{name}-{i}.json"), out)
                runs[name].append(run)
                print(line(name, run), flush=True)
        within = [r for r in runs["self"] if r["ratio"][0] is not None
                  and (r["ratio"][1] <= 1 <= r["ratio"][2] or max(abs(r["ratio"][1] - 1), abs(r["ratio"][2] - 1)) <= (r["band"] or 0))]
        false_alarms = sum(r["outcome"] == "slower" for r in runs["self"])
        caught = sum(r["outcome"] == "slower" for r in runs["slow"])
        print(f"{kind}: unchanged {len(runs['self'])} runs: {false_alarms} read slower, "
              f"{sum(r['outcome'] == 'same' for r in runs['self'])} the same, {len(within)} with 1 or the band around the interval; "
              f"twin: {caught} of {len(runs['slow'])} caught")
        failures += false_alarms + (len(runs["slow"]) - caught)
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
