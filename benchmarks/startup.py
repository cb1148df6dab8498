"""How much of an audit's wall time is process start-up, not measurement?

For each model (a small MLP, MobileNetV2 α0.35/96, random weights; `--models efficientnet` adds EfficientNetB0)
this times, interleaved N times over, three fresh processes from start to exit:

- floor: `startup.py --floor MODEL`, the minimal work an audit does, in one Python process:
  import TensorFlow, load the model, 3 tf.function wrappers (plain, input_signature with a None
  batch, reduce_retracing) × batch 1–6, 500 batch-1 calls of the serving signature, 4 TFLite
  conversions (float32, float16, dynamic-range int8, full int8) each run 55 times in LiteRT, and
  the kernels magnitude-pruned to 50/75/90 % with one serving call each; and serving's work: a
  batch sweep 1–32 (20 calls a batch), 1–4 concurrent callers (20 calls each), the signature
  under XLA (compile and 20 calls), and three processes forked before the first op, run one
  after another: two thread settings (intra-op 1, and all cores) that load the model and make
  20 calls, and a cold start (load and first request);
- quick and standard: `python -m tfaudit MODEL --headless --budget quick|standard --json RUN.json
  [EXTRA]`, run in an empty temp directory so no pyproject budgets apply (exit 0 or 1 is fine,
  1 only with the JSON report written).

Then it times the demo audit (`--demo --headless --budget quick [EXTRA]`; target under 12 s).

    python benchmarks/startup.py --repeats 3 --out /tmp/startup
    python benchmarks/startup.py --models mlp -- --isolate fresh   # EXTRA goes to every audit

Prints per model the median [min–max] seconds of each and quick/floor, standard/floor (median
over median); writes OUT/results.json with every raw time and exit code. Models are built in a
subprocess: this process never imports TensorFlow.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.abspath(__file__)
BATCHES = range(1, 7)
DIRECT_CALLS = 500
LITERT_RUNS = 55
CALIBRATION_SAMPLES = 8
SPARSITIES = (0.5, 0.75, 0.9)
SWEEP_BATCHES = (1, 2, 4, 8, 16, 32)
SERVING_CALLS = 20  # per batch, per caller, under XLA, per thread setting
CALLERS = range(1, 5)
KINDS = ("floor", "quick", "standard")


def forked_before_any_op(model_dir: str, intra: int | None, calls: int) -> tuple[int, int]:
    """Fork a child now (no op has run: a fork is safe) that waits for a byte on the returned pipe, then sets its
    threads, loads the model and makes ``calls`` requests (a cold start with ``calls`` = 1) and exits."""
    go_read, go_write = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(go_write)
            os.read(go_read, 1)
            import numpy as np
            import tensorflow as tf

            if intra is not None:
                tf.config.threading.set_intra_op_parallelism_threads(intra)
            serve = tf.saved_model.load(model_dir).signatures["serving_default"]
            (key, spec), = serve.structured_input_signature[1].items()
            x = tf.constant(np.zeros([1, *spec.shape[1:]], "float32"))
            for _ in range(calls):
                [y.numpy() for y in serve(**{key: x}).values()]
        finally:
            os._exit(0)
    os.close(go_read)
    return pid, go_write


def run_forked(children) -> None:
    """Start each child forked by ``forked_before_any_op`` in turn, and wait for it."""
    for pid, go in children:
        os.write(go, b"g")
        os.close(go)
        os.waitpid(pid, 0)


def floor(model_dir: str) -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import numpy as np
    import tensorflow as tf
    from ai_edge_litert.interpreter import Interpreter

    children = [forked_before_any_op(model_dir, intra, calls) for intra, calls in ((1, SERVING_CALLS), (os.cpu_count(), SERVING_CALLS), (None, 1))]
    rng = np.random.default_rng(0)
    loaded = tf.saved_model.load(model_dir)  # the signature's variables live as long as this
    serve = loaded.signatures["serving_default"]
    (key, spec), = serve.structured_input_signature[1].items()
    sample = lambda batch: rng.standard_normal([batch, *spec.shape[1:]]).astype("float32")  # noqa: E731
    call = lambda x: serve(**{key: x})  # noqa: E731

    wrappers = [
        tf.function(call),
        tf.function(call, input_signature=[tf.TensorSpec([None, *spec.shape[1:]], tf.float32)]),
        tf.function(call, reduce_retracing=True),
    ]
    for fn in wrappers:
        for batch in BATCHES:
            [y.numpy() for y in fn(tf.constant(sample(batch))).values()]

    x = tf.constant(sample(1))
    for _ in range(DIRECT_CALLS):
        [y.numpy() for y in call(x).values()]

    for batch in SWEEP_BATCHES:
        xb = tf.constant(sample(batch))
        for _ in range(SERVING_CALLS):
            [y.numpy() for y in call(xb).values()]
    for callers in CALLERS:
        threads = [threading.Thread(target=lambda: [[y.numpy() for y in call(x).values()] for _ in range(SERVING_CALLS)])
                   for _ in range(callers)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    compiled = tf.function(call, jit_compile=True)
    for _ in range(SERVING_CALLS + 1):
        [y.numpy() for y in compiled(x).values()]

    for variant in ("float32", "float16", "dynamic-range-int8", "full-int8"):
        converter = tf.lite.TFLiteConverter.from_saved_model(model_dir)
        if variant != "float32":
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
        if variant == "float16":
            converter.target_spec.supported_types = [tf.float16]
        if variant == "full-int8":
            converter.representative_dataset = lambda: ([sample(1)] for _ in range(CALIBRATION_SAMPLES))
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        try:  # as in the audit, a variant that fails to convert is reported, not fatal
            interpreter = Interpreter(model_content=converter.convert(), num_threads=os.cpu_count() or 1)
        except Exception as exc:
            print(f"floor: {variant} did not convert: {str(exc).splitlines()[-1]}", file=sys.stderr)
            continue
        interpreter.allocate_tensors()
        interpreter.set_tensor(interpreter.get_input_details()[0]["index"], sample(1))
        for _ in range(LITERT_RUNS):
            interpreter.invoke()
        interpreter.get_tensor(interpreter.get_output_details()[0]["index"])

    kernels = [v for v in serve.variables if v.dtype.is_floating and len(v.shape) >= 2]
    originals = [v.numpy() for v in kernels]
    for sparsity in SPARSITIES:
        for variable, value in zip(kernels, originals):
            cut = np.partition(np.abs(value).ravel(), int(sparsity * value.size) - 1)[int(sparsity * value.size) - 1]
            variable.assign(np.where(np.abs(value) > cut, value, 0).astype(value.dtype))
        [y.numpy() for y in call(x).values()]
    run_forked(children)


def build_models(out: str, kinds: list[str]) -> dict[str, str]:
    """Build each model in a subprocess (this process stays TensorFlow-free)."""
    paths = {}
    for kind in kinds:
        path = os.path.join(out, "models", kind)
        code = f"import sys; sys.path.insert(0, {os.path.dirname(HERE)!r}); import models; models.build({kind!r}, {path!r}, 1)"
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
        paths[kind] = path
    return paths


def timed(args: list[str], cwd: str, log_path: str) -> tuple[int, float]:
    started = time.monotonic()
    with open(log_path, "w") as log:
        code = subprocess.run(args, cwd=cwd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL).returncode
    return code, time.monotonic() - started


def audit(target: list[str], budget: str, json_path: str, extra: list[str], cwd: str) -> dict:
    if os.path.exists(json_path):
        os.remove(json_path)
    args = [sys.executable, "-m", "tfaudit", *target, "--headless", "--budget", budget, "--json", json_path, *extra]
    code, seconds = timed(args, cwd, json_path + ".log")
    ok = code == 0 or (code == 1 and os.path.exists(json_path))  # a traceback exits 1 too, without a report
    with open(json_path + ".log") as log:
        built_demo = "building the demo model" in log.read()
    return {"seconds": round(seconds, 2), "exit": code, "ok": ok, "log": json_path + ".log", "built_demo": built_demo}


def stats(runs: list[dict]) -> tuple[float, float, float] | None:
    times = [r["seconds"] for r in runs if r["ok"]]
    return (statistics.median(times), min(times), max(times)) if times else None


def cell(s) -> str:
    return f"{s[0]:.1f} [{s[1]:.1f}–{s[2]:.1f}]" if s else "failed"


def ratio(a, b) -> str:
    return f"{a[0] / b[0]:.1f}×" if a and b else "–"


def run(kinds: list[str], repeats: int, demo_repeats: int, out: str, extra: list[str]) -> dict:
    os.makedirs(out, exist_ok=True)
    models = build_models(out, kinds)
    cwd = tempfile.mkdtemp(prefix="tfaudit-startup-cwd-")
    results = {"repeats": repeats, "extra": extra, "models": {k: {t: [] for t in KINDS} for k in kinds}, "demo": []}
    for i in range(repeats):
        for kind in kinds:
            own = results["models"][kind]
            log = os.path.join(out, f"{kind}-floor-{i}.log")
            code, seconds = timed([sys.executable, HERE, "--floor", models[kind]], cwd, log)
            with open(log) as f:
                notes = [line.strip() for line in f if line.startswith("floor: ")]
            own["floor"].append({"seconds": round(seconds, 2), "exit": code, "ok": code == 0, "log": log, "notes": notes})
            for budget in ("quick", "standard"):
                own[budget].append(audit([models[kind]], budget, os.path.join(out, f"{kind}-{budget}-{i}.json"), extra, cwd))
            print(f"{kind} run {i + 1}/{repeats}: " + ", ".join(f"{t} {own[t][-1]['seconds']:.1f} s (exit {own[t][-1]['exit']})" for t in KINDS), flush=True)
    for i in range(demo_repeats):
        results["demo"].append(audit(["--demo"], "quick", os.path.join(out, f"demo-{i}.json"), extra, cwd))
        print(f"demo run {i + 1}/{demo_repeats}: {results['demo'][-1]['seconds']:.1f} s (exit {results['demo'][-1]['exit']})", flush=True)
    with open(os.path.join(out, "results.json"), "w") as f:
        json.dump(results, f, indent=1)
    return results


def report(results: dict, out: str) -> None:
    if results["repeats"]:
        print(f"\n{'model':<12}{'floor s':<17}{'quick s':<19}{'standard s':<19}{'quick/floor':<13}standard/floor")
        for kind, own in results["models"].items():
            s = {t: stats(own[t]) for t in KINDS}
            print(f"{kind:<12}{cell(s['floor']):<17}{cell(s['quick']):<19}{cell(s['standard']):<19}"
                  f"{ratio(s['quick'], s['floor']):<13}{ratio(s['standard'], s['floor'])}")
    for note in sorted({f"{kind} {n}" for kind, own in results["models"].items() for r in own["floor"] for n in r["notes"]}):
        print(note)
    demo = [r for r in results["demo"] if not r["built_demo"]]
    if results["demo"]:
        built = len(results["demo"]) - len(demo)
        note = f"; {built} run(s) that built the demo model left out" if built else ""
        print(f"\ndemo audit (--budget quick): {cell(stats(demo))} s over {sum(r['ok'] for r in demo)} run(s), target < 12 s{note}")
    failed = [r for own in results["models"].values() for runs in own.values() for r in runs if not r["ok"]]
    failed += [r for r in results["demo"] if not r["ok"]]
    for r in failed:
        print(f"FAILED: exit {r['exit']}, see {r['log']}")
    print(f"raw times: {os.path.join(out, 'results.json')}")


def main() -> int:
    argv = sys.argv[1:]
    extra = argv[argv.index("--") + 1:] if "--" in argv else []
    argv = argv[:argv.index("--")] if "--" in argv else argv
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="times each of floor, quick, standard is run per model")
    parser.add_argument("--models", default="mlp,mobilenet")
    parser.add_argument("--demo-repeats", type=int, default=3, help="times the demo audit is run (0: not at all)")
    parser.add_argument("--out", help="where the models, reports and results.json go (default: a new temp dir)")
    parser.add_argument("--floor", metavar="MODEL_DIR", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.floor:
        floor(args.floor)
        return 0
    out = args.out or tempfile.mkdtemp(prefix="tfaudit-startup-")
    results = run(args.models.split(","), args.repeats, args.demo_repeats, out, extra)
    report(results, out)
    runs = [r for own in results["models"].values() for each in own.values() for r in each] + results["demo"]
    return 0 if all(r["ok"] for r in runs) else 1


if __name__ == "__main__":
    raise SystemExit(main())
