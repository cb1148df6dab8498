"""Retracing: duplicated graphs in the export, and what tracing costs when serving.

``gather`` reads the saved functions and measures (TensorFlow, in the worker; ``probe`` replays
the request streams); ``judge`` decides from those measurements alone (no TensorFlow);
``catalogue`` holds the findings' prose; ``fix`` writes ``--fix-dir``'s artifact. ``traces``
holds the saved functions as data, shared by all three.

Functions restored from a SavedModel never retrace (a call matching no saved
concrete function raises), so the check has two halves.

A. What the saved model reveals (static, plus a few cheap measurements):

- ``retracing/retraced-before-export``: a restored function holds several
  concrete functions that differ only in input shape (or dtype). Each is a copy
  of the graph, and any shape not saved raises. Severity **medium**; **high**
  when the duplicated graph bytes reach ``DUPLICATE_HIGH_BYTES`` or
  ``DUPLICATE_HIGH_SHARE`` of saved_model.pb.
- ``retracing/python-argument``: concrete functions that differ by a Python
  value (``steps=1, 2, 3``). Each value is a separate graph; any other value
  raises. Severity **medium**. Keras' own ``training``/``mask`` arguments are
  not flagged: saving one trace per training mode is by design.
- ``retracing/fixed-batch-dim``: the serving signature fixes the batch
  dimension, so a server cannot batch requests. Per-call latency is measured,
  and so is the per-call overhead (a trivial tf.function with the same
  signature, called the same way, alternately with the model, in the
  same rounds as the latency, so both see the same host). Severity **medium**;
  **high** when batching measured (below) is decided to at least halve the
  requests' time (``catalogue.BATCHING_HIGH``); without that measurement,
  when the overhead is at least ``FIXED_BATCH_HIGH_OVERHEAD_SHARE`` of the call,
  judged on the fast calls (10th percentiles of both), which other processes'
  load disturbs least.
  The saving claimed is measured: the signature relaxed in memory (the same code
  ``--fix-dir`` writes with: traced again from Keras for Keras models, else the
  graph imported with ``None`` as its batch dimension) answers
  ROWS_PER_EXAMPLE_REQUEST requests in one call, compared row by row with the
  original and timed against one call per row in ABBA rounds until the saving
  is decided past ``catalogue.BATCHING_MINIMUM`` (and the halving decided either
  way) or the budget's time runs out; a graph that hard-codes its batch size
  says so instead, and no saving is claimed.
- ``retracing/fixed-dims``: integer (token-id) inputs with a fixed non-batch
  dimension: every request is padded to it. Severity **info**.

B. What serving costs (a measured probe). A request stream of varying batch
sizes (and sequence lengths where a non-batch dim is ``None``) is replayed
through the wrappers users write around the serving function: a plain
``@tf.function`` (retraces per new shape), the same with the model's
``input_signature``, and with ``reduce_retracing=True``; and a per-request
option (the model's own baked Python argument, else ``top_k``) passed as a
Python int against a tensor. Each request is timed alone; traces are counted
with ``experimental_get_tracing_count()`` and TF's retracing warning is
captured. For Keras-loadable models, ``model.predict()`` per small batch is
timed against a direct call on the same requests, in ABBA rounds until decided (``catalogue.PREDICT_MINIMUM``).

- ``retracing/wrapper-retraces``: **low** when a fix saves at least
  ``WRAPPER_MINIMUM`` (10 %) of the stream's total time (the median share over
  the replays: the low end of an interval from a few replays, or its
  significance, swung with the host's load between runs), else **info**. Never above low: the wrapper is the user's code, not the
  model's. Only the saved milliseconds over the stream are claimed, no
  latency_pct: that share depends on the stream length we chose; they are claimed when the replays (each a round, in
  the order they ran, one look at the budget's confidence) decide the fixed wrapper faster past ``WRAPPER_MINIMUM``.
- ``retracing/predict-in-loop``: only when the direct call is decided faster
  by 10 % of a request and 0.05 ms (a record from before the rounds: when its saving is significant); **low** when its median share >=
  ``PREDICT_MINIMUM``'s 10 %, else **info**. Like the wrapper finding, it claims
  saved milliseconds only (the share is evidence), so guidance about the
  caller's code never outranks a fix to the model.

With ``--fix-dir`` (``options["fix_dir"]``) the check writes the model re-exported with relaxed
signatures (``fix``: the batch axis of a fixed-batch signature, the varied axes of a function
traced per shape), checks every output against the original's and times it in turn
(``relaxed_export`` writes and runs the code), which is how the fixed-batch finding's prediction
is verified: that prediction was measured in memory by the same relaxation (see above).

Savings are claimed only when the 95 % interval excludes zero
(``measure.compare(...).significant``). Inputs that cannot be synthesised
(strings without ``--inputs``, unknown ranks) skip the probe with a reason; when
nothing else was found either, the check reports itself skipped (``judge.skip_reason``).
The thresholds named here are constants of ``judge`` (``streams`` for the probe's findings).

Metrics
-------

- ``serving_latency_ms`` (ms, lower is better): median per-call latency of the serving
  signature at batch 1 (at the fixed batch when the signature fixes it), with the bootstrap
  95 % interval of the median; timed call by call alternately with the host's reference
  workload until every median is known within ± ``gather.LATENCY_PRECISION`` (2 %), over a quarter
  of the budget's measurement time at least and all of it at most. Not emitted when the inputs cannot be
  synthesised.
- ``host_index_ms`` (ms): the reference workload's median over the same time
  (tfaudit.engine.host_index); a baseline comparison scales ``serving_latency_ms`` by the ratio of
  the two runs' values, so a busier host is not read as a slower model.
- ``latency_vs_baseline_model`` (× baseline model, lower is better): with
  ``options["baseline_model"]`` (``--baseline-model OLD_MODEL``), the serving latency divided by
  the old export's, both timed call by call in ABBA turns on the same inputs until the engine decides
  (``tfaudit.api.compare_in_turn``); its subject is the old model's path. An old model that
  does not load with the same signature, or does not answer the same inputs, stops the audit before
  it starts (exit 2); one that fails later makes this check errored (exit 3), never a gate passed
  unmeasured.
- ``concrete_functions_max`` (count): the most concrete functions one restored function
  holds (1 is ideal), from the model inventory. Not emitted when no function is restored.
- ``plain_wrapper_traces`` (count): traces per request stream of the plain ``@tf.function``
  wrapper (median over the replays; exact, so no interval). Only when the probe ran with
  varying request shapes.
"""
from __future__ import annotations

from typing import Iterator

from tfaudit.api import BASELINE_MODEL_METRIC, Chart, Check, CheckMeta, Measurements, Progress, SkipCheck, Yielded, fix_dir

from .fix import relaxes_anything, write_relaxed_fix
from .gather import gather
from .judge import judge, skip_reason

__all__ = ["BASELINE_MODEL_METRIC", "BaselineModelNotCompared", "RetracingCheck"]


class BaselineModelNotCompared(Exception):
    """--baseline-model was given and its timing failed: the check errors (exit 3) with what it measured reported."""


class RetracingCheck(Check):
    meta = CheckMeta(
        id="retracing",
        title="Retracing and fixed shapes",
        description=(
            "Finds functions traced many times before export, Python arguments baked into graphs and fixed batch "
            "dimensions, then measures what retracing wrappers cost on a realistic request stream."
        ),
    )
    judge = staticmethod(judge)
    charts = (
        Chart("latency", "Per-call latency of each request stream", ("latency_ms:*",), x_label="request",
              y_label="latency per call (ms, log)", tab="latency", log_y=True, mark="trace"),
    )

    def run(self, ctx) -> Iterator[Yielded]:
        measured = yield from gather(ctx)
        yield Measurements(measured)
        judged = list(self.judge(measured))
        if fix_dir(ctx) and relaxes_anything(measured):
            judged = yield from write_relaxed_fix(ctx, measured, judged)
        yield from judged
        yield Progress(1.0, "done")
        baseline = measured["baseline_model"] or {}
        if "error" in baseline:  # after everything else is reported: a gate asked for and not measured fails loudly
            raise BaselineModelNotCompared(f"--baseline-model {baseline['path']} not compared: {baseline['error']}")
        skipped = skip_reason(measured, judged)
        if skipped:
            raise SkipCheck(skipped)
