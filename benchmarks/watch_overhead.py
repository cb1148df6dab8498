"""What `tfaudit watch` costs a program that does not retrace: per-call time with and without the hook.

One process, one traced function per workload, called in blocks of CALLS; blocks alternate
between hooked (tfaudit.watch started) and plain, ROUNDS times, so the host's drift hits both
alike. Prints the median per-call time of each and their ratio, with the range of the per-round
ratios.

    python benchmarks/watch_overhead.py --rounds 10
"""
from __future__ import annotations

import argparse
import statistics
import time


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--calls", type=int, default=500)
    args = parser.parse_args()
    import keras
    import tensorflow as tf

    import tfaudit.watch

    mlp = keras.Sequential([keras.Input((256,)), keras.layers.Dense(1024, activation="relu"), keras.layers.Dense(1024, activation="relu"), keras.layers.Dense(10)])
    workloads = {
        "tiny (x * 2 on 4 floats)": (tf.function(lambda x: x * 2.0), tf.ones([4])),
        "MLP 256-1024-1024-10, batch 1": (tf.function(lambda x: mlp(x, training=False)), tf.ones([1, 256])),
    }
    for name, (function, x) in workloads.items():
        function(x)
        per_call = {"plain": [], "watched": []}
        for _ in range(args.rounds):
            for mode in ("plain", "watched"):
                watch = tfaudit.watch.Watch().start() if mode == "watched" else None
                started = time.perf_counter()
                for _ in range(args.calls):
                    function(x)
                per_call[mode].append((time.perf_counter() - started) / args.calls * 1e6)
                if watch:
                    watch.stop()
        ratios = [w / p for w, p in zip(per_call["watched"], per_call["plain"])]
        plain, watched = (statistics.median(per_call[m]) for m in ("plain", "watched"))
        print(f"{name}: plain {plain:.1f} µs/call, watched {watched:.1f} µs/call, overhead {(watched / plain - 1) * 100:+.1f} % "
              f"(per-round ratio {min(ratios):.3f}–{max(ratios):.3f}, {args.rounds} rounds × {args.calls} calls)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
