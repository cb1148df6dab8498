"""Where does a leak rank? Audits a model that keeps ~3.3 KiB per call and prints the ranking.

    python benchmarks/leak_ranking.py --runs 3 --out /tmp/leak-ranking

The model (a tf.Module) inserts 845 float32 of each request into a hash table (3,380 bytes a
call, the leak issue 10 measured), and is otherwise a clean dynamic-batch model; the audit runs
`retracing,memory` (quick budget), so the leak competes with the wrapper guidance.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

FLOATS_PER_CALL = 845

BUILD = f"""
import os, sys
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"
import tensorflow as tf

class Leaky(tf.Module):
    def __init__(self):
        super().__init__()
        self.table = tf.lookup.experimental.MutableHashTable(tf.int64, tf.float32, default_value=tf.zeros([{FLOATS_PER_CALL}]))
        self.calls = tf.Variable(0, dtype=tf.int64)
        self.w = tf.Variable(tf.random.stateless_normal([{FLOATS_PER_CALL}, 16], seed=[0, 0]))

    @tf.function(input_signature=[tf.TensorSpec([None, {FLOATS_PER_CALL}], tf.float32, name="x")])
    def serve(self, x):
        key = self.calls.assign_add(1)
        self.table.insert(tf.reshape(key, [1]), x[:1])
        return {{"y": tf.matmul(x, self.w)}}

module = Leaky()
tf.saved_model.save(module, sys.argv[1], signatures={{"serving_default": module.serve}})
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--out", default="leak-ranking")
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    model = os.path.join(args.out, "leaky")
    subprocess.run([sys.executable, "-c", BUILD, model], check=True)
    for i in range(args.runs):
        path = os.path.join(args.out, f"run-{i}.json")
        with open(path + ".log", "w") as log:
            subprocess.run(
                [sys.executable, "-m", "tfaudit", model, "--headless", "--budget", "quick", "--checks", "retracing,memory", "--json", path],
                cwd=args.out, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            )
        with open(path) as f:
            findings = [f for f in json.load(f)["findings"] if f["severity"] != "info"]
        print(f"run {i}: " + "; ".join(f"{f['id']} ({f['severity']}) {f['priority']:g}" for f in findings))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
