"""Writes tests/data/measurements/serving/: real audits' measurements thinned, and synthetic ones for what this host cannot produce.

    python tests/data/make_serving_measurements.py NAME=REPORT.json=SOURCE …

Each NAME=REPORT.json=SOURCE stores the ``measurements`` of a JSON report (``tfaudit MODEL --checks serving --json
REPORT.json``) as NAME.json, its sample lists thinned to KEEP, and fails when the judge then decides other findings than
the report holds. The synthetic cases are rebuilt every run (seeded), each checked against the findings it is meant to
produce.
"""
import copy
import json
import os
import sys

import numpy as np

from tfaudit.api import Finding
from tfaudit.checks.serving.judge import judge
from tfaudit.checks.serving.stats import timing_of, timing_stats

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "measurements", "serving")
KEEP = 30  # samples per list in a stored case


def thin(x, keep=KEEP):
    if isinstance(x, list) and x and all(isinstance(v, float) for v in x) and len(x) > keep:
        step = -(-len(x) // keep)
        return x[::step]
    if isinstance(x, list):
        return [thin(v, keep) for v in x]
    if isinstance(x, dict):  # a comparison's rounds stay whole: its decision replays from every one of them
        return {k: v if k == "rounds" else thin(v, keep) for k, v in x.items()}
    return x


def expected(m):
    return {i.id: i.severity for i in judge(m) if isinstance(i, Finding)}


def save(name, source, m, want=None):
    got = expected(m)
    if want is not None and got != want:
        sys.exit(f"{name}: judged {got}, wanted {want}")
    with open(os.path.join(OUT, name + ".json"), "w", encoding="utf-8") as f:
        json.dump({"source": source, "measurements": m, "expected": got}, f, separators=(",", ":"))
        f.write("\n")
    print(name, got, os.path.getsize(os.path.join(OUT, name + ".json")))


def real(name, report, source):
    with open(report) as f:
        r = json.load(f)
    m = thin(r["measurements"]["serving"])
    want = {f["id"]: f["severity"] for f in r["findings"] if f["check"] == "serving"}
    save(name, source, m, want)


# --- synthetic -------------------------------------------------------------------------------------

RNG = np.random.default_rng(0)


def samples(median, n=24, spread=0.04):
    return [round(float(median * np.exp(RNG.normal(0, spread))), 5) for _ in range(n)]


def sweep(per_call_ms, bound_batches=(1, 2, 4)):
    """per_call_ms: {batch: median ms per call}."""
    points, kept = [], []
    for batch, ms in per_call_ms.items():
        s = samples(ms)
        points.append({**timing_stats(timing_of(s), batch), "first_call_ms": round(ms * 20, 3), "memory_mb": round(0.5 * batch, 1)})
        kept.append(s)
    return {"points": points, "samples_ms": kept, "stop": "throughput stopped growing: two doublings added less than 10% each"}


def concurrency(rows_per_s, batch=1, calls=8, turns=20):
    """rows_per_s: {callers: mean rows/s}; per count past one, ABBA turns of ``calls`` calls against one caller; latencies
    from the rows/s each caller sees."""
    one = {"callers": 1, "rows_per_s_windows": [], "latencies_ms": []}
    levels = [one]
    for callers, rows in rows_per_s.items():
        if callers == 1:
            continue
        a = [calls * batch * 1000.0 / rows_per_s[1] * float(np.exp(RNG.normal(0, 0.03))) for _ in range(turns)]
        b = [calls * batch * 1000.0 / rows * float(np.exp(RNG.normal(0, 0.03))) for _ in range(turns)]
        one["rows_per_s_windows"] += [round(calls * batch * 1000.0 / ms, 1) for ms in a]
        levels.append({"callers": callers, "calls_per_turn": calls, "rows_per_s_windows": [round(calls * batch * 1000.0 / ms, 1) for ms in b],
                       "latencies_ms": samples(1000.0 * batch * callers / rows, 30),
                       "rounds": {"a_ms": [float(np.median(a[i:i + 2])) for i in range(0, turns, 2)],
                                  "b_ms": [float(np.median(b[i:i + 2])) for i in range(0, turns, 2)], "quads": 1},
                       "confidence": 0.95})
    one["latencies_ms"] = samples(1000.0 * batch / rows_per_s[1], 30)
    return levels


def litert(ms_by_count, default_ms, turns=10, spread=0.03):
    """LiteRT's default against each count, ABBA rounds of per-round medians, ``turns`` rounds each."""
    compared = []
    for ms in ms_by_count.values():
        a, b = samples(default_ms, turns, spread), samples(ms, turns, spread)
        compared.append({"rounds": {"a_ms": a, "b_ms": b, "quads": 5}, "default_ms": samples(default_ms, 30), "ms": samples(ms, 30)})
    return {"threads": [None, *ms_by_count], "compared": compared, "confidence": 0.95}


def xla(plain_ms, xla_ms, relative_l2=1e-6):
    return {"compiles": True, "first_ms": 300.0, "warmup": 3, "relative_l2": relative_l2,
            "plain_ms": samples(plain_ms, 40), "xla_ms": samples(xla_ms, 40)}


def setting(intra=None, inter=None, precision="float32", onednn=None):
    return {"intra": intra, "inter": inter, "precision": precision, "onednn": onednn}


THREADS = [setting(a, b) for a in (1, 2) for b in (1, 2)]


def in_turns(a_ms, b_ms, turns=10, spread=0.03):
    """ABBA rounds (per-round medians of two turns a side) of turns taking ``a_ms`` and ``b_ms``."""
    return {"a_ms": [float(np.median(samples(a_ms, 2, spread))) for _ in range(turns)],
            "b_ms": [float(np.median(samples(b_ms, 2, spread))) for _ in range(turns)], "quads": 1}


def setting_row(which, median, default_ms=1.0, calls=4):
    """A setting's process against the defaults', in turns of ``calls`` calls."""
    return {"setting": which, "batch": 1, "calls_per_turn": calls, "rounds": in_turns(calls * default_ms, calls * median),
            "confidence": 0.95, "default_ms": samples(default_ms), "ms": samples(median)}


def base(budget="quick"):
    """CPU only, 2 cores, nothing pays: batching costs per row, callers share the cores, XLA and every setting as fast as the defaults."""
    settings = [setting_row(s, 1.0) for s in THREADS]
    processes = {
        "precision_support": "the CPU has none of avx512_bf16, amx_bf16: bfloat16 would be emulated, slower than float32",
        "settings": settings, "precision_fidelity": {}, "settings_failed": {},
        "cold_start": {"first_requests": [{"load_ms": 300.0, "first_ms": 4.0, "second_ms": 1.1}, {"load_ms": 310.0, "first_ms": 4.5, "second_ms": 1.0}],
                       "warm_p50_ms": 1.0, "saved_model": True},
        "combined": {}, "combined_error": "",
    }
    if budget == "quick":
        processes["onednn"] = "not measured at --budget quick (it needs a fresh interpreter, ~4 s of import)"
    else:
        settings.append(setting_row(setting(onednn="0"), 1.0))
    return {
        "budget": budget, "cores": 2, "latency_budget_ms": None, "max_fidelity_loss": 0.01, "signature": "serving_default",
        "input_names": ["x"], "devices": ["CPU"], "devices_note": "no GPU visible to TensorFlow: CPU only",
        "phase_seconds": {"CPU batch sweep": 1.0, "CPU concurrency": 2.0, "CPU XLA": 1.0, "processes started": 2.0, "settings timed": 2.0,
                          "cold start": 1.0, "combined": 0.5, "LiteRT threads": 2.0},
        "sweeps": {"CPU": {**sweep({1: 1.0, 2: 2.0, 4: 4.0}), "host_index_ms": samples(0.9),
                           "concurrency": concurrency({1: 1000.0, 2: 1050.0, 4: 1000.0}), "xla": xla(1.0, 1.0)}},
        "processes": processes,
        "litert": litert({1: 0.05, 2: 0.05}, 0.05),
        "check_seconds": 15.0,
    }


def set_rounds(m, which, median):
    rows = m["processes"]["settings"]
    rows[:] = [setting_row(which, median) if row["setting"] == which else row for row in rows]


def combined(m, setting_, factor, batch=1, xla_on=False, calls=4):
    """The combined run: the defaults at batch 1 against ``setting_`` at ``batch``, ``factor`` × the throughput, in turns of
    the same rows (``calls`` calls at ``batch``, ``calls`` × ``batch`` at batch 1)."""
    m["processes"]["combined"] = {"first_batch": 1, "batch": batch, "setting": setting_, "xla": xla_on,
                                  "default_ms": samples(1.0, 48), "best_ms": samples(batch / factor, 48),
                                  "rounds": in_turns(calls * batch * 1.0, calls * batch / factor), "confidence": 0.95}


def main():
    os.makedirs(OUT, exist_ok=True)
    for name, report, source in (a.split("=", 2) for a in sys.argv[1:]):
        real(name, report, source)

    m = base()
    save("synthetic_nothing_pays", "synthetic: every knob as fast as the defaults (a shared host's noise rarely lets all stay this flat)", m,
         {"serving/configuration": "info"})

    m = base()
    m["sweeps"]["CPU"] = {**m["sweeps"]["CPU"], **sweep({1: 1.0, 2: 1.55, 4: 3.2})}
    combined(m, setting(), 1.29, batch=2)
    save("synthetic_batching_low", "synthetic: batch 2 saves 20-25 % a row (between the 10 % minimum and medium's 50 %)", m,
         {"serving/batch-size": "low", "serving/configuration": "info"})

    m = base()
    m["sweeps"]["CPU"] = {**m["sweeps"]["CPU"], **sweep({1: 1.0, 2: 1.2, 4: 1.25, 8: 1.45})}
    m["latency_budget_ms"] = 1.5
    combined(m, setting(), 3.2, batch=4)
    save("synthetic_batching_latency_budget", "synthetic: --latency-budget-ms 1.5 bounds the p99, batch 4 fits and saves ~69 % a row (medium)", m,
         {"serving/batch-size": "medium", "serving/configuration": "info"})

    m = base()
    m["cores"] = 4
    m["sweeps"]["CPU"]["concurrency"] = concurrency({1: 1000.0, 2: 1900.0, 4: 2600.0, 8: 2500.0})
    save("synthetic_concurrency", "synthetic: a 4-core host (this one has 2, shared): 4 callers serve 2.6× the rows/s within the bound, 8 go past it", m,
         {"serving/concurrency": "medium", "serving/configuration": "info"})

    m = base()
    m["sweeps"]["CPU"]["xla"] = {"compiles": False, "why": "XLA (XLA_CPU_JIT) has no kernel for op Identity with T=DT_STRING"}
    set_rounds(m, setting(1, 1), 0.7)
    combined(m, setting(1, 1), 1.4)
    save("synthetic_threads_below_load_minimum",
         "synthetic: intra 1 saves ~30 %, a candidate the combined run confirms (the headline), but a thread count must halve a call", m,
         {"serving/configuration": "info"})

    m = base("standard")
    set_rounds(m, setting(1, 2), 0.4)
    set_rounds(m, setting(onednn="0"), 0.75)
    combined(m, setting(1, 2), 2.4)
    save("synthetic_threads_and_onednn", "synthetic: standard budget; intra 1, inter 2 saves ~60 % (medium) and oneDNN off ~25 % (low)", m,
         {"serving/threads": "medium", "serving/onednn": "low", "serving/configuration": "info"})

    m = base()
    m["processes"]["precision_support"] = "the CPU has avx512_bf16"
    m["processes"]["settings"].append(setting_row(setting(precision="bfloat16"), 0.6))
    m["processes"]["precision_fidelity"] = {"bfloat16": {"relative_l2": 0.004, "max_abs": 0.006, "cosine": 0.99999}}
    m["sweeps"]["CPU"]["xla"] = xla(1.0, 0.7, 2e-7)
    combined(m, setting(precision="bfloat16"), 2.3, xla_on=True)
    save("synthetic_precision_and_xla", "synthetic: bfloat16 saves ~40 % within the fidelity bound, XLA ~30 %, confirmed together", m,
         {"serving/precision": "low", "serving/xla": "low", "serving/configuration": "info"})

    m["processes"]["precision_fidelity"] = {"bfloat16": {"relative_l2": 0.03, "max_abs": 0.05, "cosine": 0.9995}}
    m["sweeps"]["CPU"]["xla"]["relative_l2"] = 0.02
    m["processes"]["combined"] = {}
    save("synthetic_precision_and_xla_past_fidelity", "synthetic: bfloat16 and XLA are faster but move the outputs past --max-fidelity-loss", m,
         {"serving/configuration": "info"})

    m["processes"]["precision_fidelity"] = {}
    m["processes"]["settings_failed"] = {"bfloat16 compute": "outputs not compared: the helper process died (SIGSEGV)"}
    save("synthetic_precision_not_compared", "synthetic: bfloat16 is faster but its process died before its outputs were compared: no fidelity, no claim", m,
         {"serving/configuration": "info"})

    m = base()
    m["sweeps"]["CPU"]["xla"] = xla(1.0, 0.45)
    set_rounds(m, setting(1, 1), 0.7)
    combined(m, setting(1, 1), 1.02, xla_on=True)
    save("synthetic_not_confirmed_together", "synthetic: XLA won alone (~55 %) but the combined run with intra 1 measured ~1.0×: neither is claimed", m,
         {"serving/configuration": "info"})

    m = base()
    set_rounds(m, setting(2, 1), 0.6)
    m["processes"]["combined_error"] = "the helper process died (SIGKILL) while timing the best configuration"
    save("synthetic_combined_error", "synthetic: the combined run's process died; the settings stand as measured one by one", m,
         {"serving/configuration": "info"})

    m = base()
    m["litert"] = litert({1: 0.52, 2: 0.2}, 0.5)
    save("synthetic_litert_threads", "synthetic: LiteRT with 2 threads saves ~60 % of a 0.5 ms call, decided in rounds (this host's flatbuffers run in µs)", m,
         {"serving/litert-threads": "medium", "serving/configuration": "info"})
    m["litert"] = litert({1: 0.52, 2: 0.47}, 0.5, spread=0.2)
    save("synthetic_litert_threads_undecided", "synthetic: 2 threads ~6 % faster in rounds as noisy as a shared host's: no claim", m,
         {"serving/configuration": "info"})
    m["litert"] = {"error": "not measured: LiteRT cannot run the float32 model: unsupported op"}
    m["processes"]["cold_start"] = {
        "first_requests": [{"load_ms": 9000.0, "first_ms": 1400.0, "second_ms": 12.0}, {"load_ms": 9100.0, "first_ms": 1600.0, "second_ms": 11.0}],
        "warm_p50_ms": 1.0, "saved_model": True, "warmup_batches": [1],
        "after_warmup": [{"load_ms": 9200.0, "warmup_requests": 1, "warmup_ms": 1500.0, "first_ms": 3.0, "second_ms": 1.2},
                         {"load_ms": 9150.0, "warmup_requests": 1, "warmup_ms": 1450.0, "first_ms": 2.5, "second_ms": 1.1}]}
    save("synthetic_cold_start_medium", "synthetic: a first request of 1.4-1.6 s (a large model's graph optimisation), 3 ms after the warm-up replay", m,
         {"serving/cold-start": "medium", "serving/configuration": "info"})
    keras = copy.deepcopy(m)
    keras["processes"]["cold_start"] = {k: v for k, v in m["processes"]["cold_start"].items() if k in ("first_requests", "warm_p50_ms")}
    keras["processes"]["cold_start"]["saved_model"] = False
    save("synthetic_cold_start_keras_file", "synthetic: the same slow first request from a .keras file: no warm-up file is written (TF Serving serves SavedModels)", keras,
         {"serving/configuration": "info"})
    m["processes"]["cold_start"]["after_warmup"] = [{**r, "first_ms": 1500.0} for r in m["processes"]["cold_start"]["after_warmup"]]
    save("synthetic_cold_start_warmup_no_help", "synthetic: the replayed warm-up did not make the first request faster than every cold one", m,
         {"serving/configuration": "info"})

    m = base()
    m["devices"], m["devices_note"] = ["CPU", "GPU:0"], ""
    gpu = sweep({1: 0.5, 2: 0.52, 4: 0.55, 8: 0.6, 16: 0.9})
    for point in gpu["points"]:
        point.update(gpu_utilization_pct=round(20.0 + 4 * point["batch"], 1), gpu_memory_mb=512.0, tf_allocator_peak_mb=2.0)
    m["sweeps"]["GPU:0"] = {**gpu, "concurrency": concurrency({1: 2000.0, 2: 2100.0, 4: 2000.0}), "xla": xla(0.5, 0.3)}
    m["sweeps"]["CPU"] = {**m["sweeps"]["CPU"], **sweep({1: 1.0, 2: 1.6, 4: 3.3})}
    combined(m, setting(), 1.25, batch=2)
    save("synthetic_gpu", "synthetic: a GPU host (none here): batching on GPU:0 saves ~89 % a row (medium), XLA there ~40 %; the CPU batches too (low)", m,
         {"serving/batch-size": "low", "serving/batch-size-gpu0": "medium", "serving/xla-gpu0": "low", "serving/configuration": "info"})


main()
