"""Serving: the batch size, concurrency, threads, XLA and precision that serve this model fastest here.

``gather`` measures (the phases below, in the worker and in helper processes) and returns each timing's samples;
``judge`` decides from them (numpy only; the process settings' and LiteRT threads' verdicts in ``knobs``, how a
finding is written in ``findings``); ``catalogue`` holds the findings' prose; ``fix`` writes ``--fix-dir``'s
TF Serving files. Everything is measured through the serving signature, warm, on this host. On each device
(``--device CPU|GPU:0|…``, default all that TensorFlow sees; no GPU → CPU only, said once):

- **Batch size** (``sweep``): back-to-back calls at batch 1, 2, 4, … for ``POINT_SECONDS`` each (at least
  ``MIN_POINT_CALLS``): p50, p99 and throughput (rows/s, from the median call, with the
  bootstrap interval of the median). The sweep stops when two doublings in a row add less than
  ``THROUGHPUT_GROWTH`` throughput, at ``MAX_BATCH``, when the next point would not fit the
  sweep's time (``SWEEP_SECONDS``) or ``MEMORY_SHARE`` of the available memory (anonymous memory
  of this process, doubling from the last point), or when a batch fails; each stop is said.
  The **knee** is the smallest batch with ``KNEE_SHARE`` of the best throughput. The **serving
  batch** is the batch with the highest throughput whose p99 (its whole interval) stays within
  ``--latency-budget-ms``; without one, whose p50 (its whole interval) stays within 2 × the batch-1
  p50 (what a server may add to a request by waiting for a batch to fill, as a rule of thumb; set
  the bound your service has). A
  signature with a fixed batch dimension skips the sweep (the retracing check reports it).
- **Concurrency** (``concurrency``): 2, 4, … callers (threads; TensorFlow releases the GIL) at the serving batch,
  up to 2 × the cores, each against one caller doing the same calls, in ABBA turns through the comparison engine
  (``compare_in_turn``) until decided or the cap; more callers while a doubling adds ``THROUGHPUT_GROWTH``.
  Throughput per turn, p50 and p99 per call, judged against the bound like the serving batch; a finding when
  decided to serve at least ``CONCURRENCY_MINIMUM`` more rows/s than one caller.
- **XLA**: the signature wrapped in ``tf.function(jit_compile=True)`` at the serving batch:
  compile time (first call minus the warm median), outputs against the plain call (relative L2),
  and the steady-state latency timed call by call in turn with the plain call. A model XLA
  cannot compile is said with the compiler's reason.
- **Threads, precision, oneDNN** (CPU, ``processes``): each setting in a process of its own, since
  ``tf.config.threading`` and Grappler's options take effect only before the first op:
  intra-op 1, cores/2, cores × inter-op 1, 2, against a process with the defaults; bfloat16
  compute (Grappler's ``auto_mixed_precision_onednn_bfloat16``) where the CPU has AVX512-BF16
  or AMX, float16 (``auto_mixed_precision``) on GPUs of compute capability ≥ 7; oneDNN off/on
  (``TF_ENABLE_ONEDNN_OPTS``, read at import: a fresh interpreter, so at standard and thorough
  only). Each setting's process against the defaults' in ABBA turns of ``TURN_MS`` of calls, each turn timed in
  its process, until decided (``compare_in_turn``), so they share the host's moments.
  Precision is judged for fidelity against float32 on the same inputs (``--max-fidelity-loss``).
- **LiteRT threads** (``litert``): the float32 TFLite model (reused from the quantization check when it ran)
  at ``num_threads`` 1 … cores, each against LiteRT's default in ABBA rounds until decided, in the conversion process.
- **Cold start** (``cold_start``): ``cold_starts`` processes (the fewest whose exact permutation test holds at the budget's
  confidence: 3 at quick) that load the model and serve their first request
  (what an autoscaled replica pays after its import). When the first request is at least
  ``COLD_FACTOR`` × the warm median and ``COLD_MIN_MS`` slower, a copy of the SavedModel gets
  the TF Serving warm-up file (``assets.extra/tf_serving_warmup_requests``: PredictionLog
  records of the serving batch sizes), and as many processes replay it as TF Serving does on
  load before their first request is timed again.
- **Combined**: the best setting of each knob that paid, together (the serving batch, the
  threads/precision process, XLA when it paid) against the default (batch 1, default threads,
  no XLA), per row, in ABBA turns in their two processes until decided: the headline's number
  is this measurement.

A comparison of two processes (the settings, the combined run) allows for how far fresh processes' speeds spread in
this run (``between_processes``: the cold-start processes, each timed against the host reference, run first): each
process is one draw of where its threads landed, which no number of rounds averages away, so a claim must hold against
the next pair of processes too.
A comparison in turns (the serving batch against its rows one call at a time, concurrency, XLA, the settings,
LiteRT threads, the combined run) claims a gain only when decided past its catalogue's practical minimum
(``BATCH_MINIMUM``, ``SETTING_MINIMUM``: 10 %); the sweep's curve itself is a measurement, not a claim. Thread settings answer the host's other load
as much as the model: they are findings only when decided to halve a call (``SETTING_HALVES``), and below it
the headline's configuration.

Findings: ``serving/batch-size``, ``serving/concurrency``, ``serving/threads``, ``serving/xla``,
``serving/precision``, ``serving/onednn``, ``serving/litert-threads``, ``serving/cold-start``
(each low, medium when it saves ≥ 50 %), and ``serving/configuration`` (info): the headline
("best measured configuration: … — N× the throughput of the default at p99 ≤ X ms", or
"defaults are best here") with every table measured.

Metrics: ``throughput_rows_per_s_best`` (higher is better), ``p99_ms_batch_1``, ``p50_ms_batch_1``
(ms), ``best_batch`` (its subject is the batch, so a baseline compares it only with itself),
``host_index_ms`` (the reference workload timed in turn with batch 1: gates scale the latencies);
``batch_1_per_reference`` and ``serving_batch_per_reference`` (×: the geometric mean, over every fresh process the
check starts, of the call ÷ the reference timed in turn with it) with ``…_spread_pct`` (the sd of its log, %) and
their process counts: a baseline believes a slower latency or throughput only when these show it too.
"""
from __future__ import annotations

from typing import Iterator

from tfaudit.api import Chart, Check, CheckMeta, Measurements, Yielded, helper_process

from .fix import with_fixes
from .gather import gather
from .judge import judge


class ServingCheck(Check):
    meta = CheckMeta(
        id="serving",
        title="Serving configuration",
        description="Sweeps batch size, concurrency, threads, XLA, precision, LiteRT threads and cold start; "
                    "names the configuration that serves this model fastest here.",
    )
    judge = staticmethod(judge)
    charts = (
        Chart("serving", "Serving throughput and latency", ("* batch",), kind="curve", x_label="p50 latency per call (ms)",
              y_label="throughput (rows/s)", tab="serving", headline="serving/configuration"),
    )

    def __init__(self):
        # Started now, its start overlaps with the model's load in this process.
        self.isolated = helper_process()

    def run(self, ctx) -> Iterator[Yielded]:
        try:
            measured = yield from gather(ctx, self.isolated)
        finally:
            self.isolated.close()
        yield Measurements(measured)
        yield from with_fixes(ctx, self.judge(measured))
