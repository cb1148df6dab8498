"""Predicted against verified savings of the fixes `--fix-dir` writes, over repeated audits.

    python benchmarks/fix_dir_verified.py --runs 3 --out /tmp/fix-dir-verified

Audits the demo, a tf_keras MobileNetV2 (α0.35/96, random weights, logits, fixed batch 1: the
relaxed re-export and the TFLite variants apply) and the same network as a Keras 3 model tracked
in a tf.Module (benchmarks/models.py, dynamic batch, softmax) `--runs` times with
`--headless --budget quick --fix-dir`, loads every artifact back in a fresh interpreter, and
prints one row per run and fixed finding: predicted, verified, agreement. Exits 1 when an artifact
does not load and run, or a verified saving is outside ±25 % of its prediction without the
prediction having been corrected.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
CHECKS = "retracing,quantization,pruning"

LOAD_AND_RUN = """
import os, sys, numpy as np
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
folder = sys.argv[1]
saved = os.path.join(folder, "saved_model")
if os.path.isdir(saved):
    import tensorflow as tf
    serve = tf.saved_model.load(saved).signatures["serving_default"]
    (name, spec), = serve.structured_input_signature[1].items()
    shape = [3 if d is None else d for d in spec.shape.as_list()]
    print("saved_model", {k: v.shape.as_list() for k, v in serve(**{name: tf.zeros(shape, spec.dtype)}).items()})
for file in ("model.tflite", "model_sparse.tflite"):
    if os.path.isfile(os.path.join(folder, file)):
        from ai_edge_litert.interpreter import Interpreter
        runner = Interpreter(model_path=os.path.join(folder, file)).get_signature_runner("serving_default")
        (name, detail), = runner.get_input_details().items()
        print(file, {k: list(v.shape) for k, v in runner(**{name: np.zeros(detail["shape"], detail["dtype"])}).items()})
"""


def build_mobilenet(path: str) -> str:
    sys.path.insert(0, os.path.join(HERE, "..", "tests"))
    import odd_models

    return odd_models.build_tf_keras_mobilenet_fixed_batch(path)


def build_mobilenet_module(path: str) -> str:
    import models

    return models.build("mobilenet", path)


BUILDERS = {"mobilenet": "build_mobilenet", "mobilenet-module": "build_mobilenet_module"}


def fmt(measures: dict) -> str:
    parts = []
    for key, m in measures.items():
        interval = "" if m.get("low") is None else f" [{m['low']:.3g}–{m['high']:.3g}]"
        parts.append(f"{key} {m['value']:.4g}{interval}")
    return "; ".join(parts) or "—"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--out", default="/tmp/fix-dir-verified")
    parser.add_argument("--models", default="demo,mobilenet,mobilenet-module")
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    failures = 0
    for name in args.models.split(","):
        target = ["--demo"]
        if name in BUILDERS:
            model = os.path.join(args.out, name)
            if not os.path.exists(model):
                subprocess.run([sys.executable, "-c", f"import sys; sys.path.insert(0, {HERE!r}); import fix_dir_verified as f; f.{BUILDERS[name]}({model!r})"], check=True)
            target = [model]
        for run in range(1, args.runs + 1):
            fixes, report = os.path.join(args.out, f"{name}-{run}-fixes"), os.path.join(args.out, f"{name}-{run}.json")
            command = [sys.executable, "-m", "tfaudit", *target, "--headless", "--budget", "quick", "--checks", CHECKS,
                       "--fix-dir", fixes, "--json", report, "--report", report.replace(".json", ".md")]
            done = subprocess.run(command, capture_output=True, text=True)
            if done.returncode not in (0, 1):
                print(f"{name} run {run}: exit {done.returncode}: {done.stderr[-500:]}")
                failures += 1
                continue
            with open(report, encoding="utf-8") as f:
                findings = [x for x in json.load(f)["findings"] if x.get("artifact")]
            for finding in findings:
                artifact = finding["artifact"]
                ran = subprocess.run([sys.executable, "-c", LOAD_AND_RUN, artifact["path"]], capture_output=True, text=True)
                loads = ran.returncode == 0 and ran.stdout.strip()
                corrected = bool(artifact.get("corrected"))
                print(f"{name} | run {run} | {finding['id']} | {os.path.basename(artifact['path'])}/ | predicted {fmt(artifact['predicted'])} | "
                      f"verified {fmt(finding['verified'])} | {'corrected: ' + ', '.join(artifact['corrected']) if corrected else 'within ±25 %'} | "
                      f"{'loads and runs' if loads else 'DOES NOT RUN: ' + ran.stderr[-300:]}")
                failures += not loads
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
