"""Quantization: convert to TFLite variants and measure size, LiteRT latency and fidelity on this host.

Variants: float32 (the baseline), float16, dynamic-range int8, full-integer int8 (float I/O,
calibrated on ``--inputs`` rows or synthetic data) and 16x8. A variant that fails to convert
is reported with the converter's reason; when Flex ops are the cause it is retried with
``SELECT_TF_OPS`` and marked so. Nothing is taken from published tables: int8 can be slower
than float on x86, and the findings only claim a latency saving that the measurement shows.

``gather`` converts and measures (conversions, LiteRT runs and the debugger in a helper process,
``tfaudit.api.helper_process``); ``judge`` decides from the per-call samples; ``catalogue``
holds the findings' prose; ``fix`` writes --fix-dir's flatbuffers. When the helper dies (LiteRT
segfaults on a state variable of unknown shape), the variant reports the signal, and a crash on
float32 becomes ``quantization/not-convertible`` (low) with the likely trigger and a
reproduction; the other variants are then not attempted.

The recommendation is the variant within the fidelity bound (``max_fidelity_loss``; top-1 judged
with near ties apart and its interval, see ``tfaudit.checks._compression.agreement``) with the largest benefit as
tfaudit.report.priority counts it (latency % when the variant is decided faster than the float32
TFLite model past 10 % of a call and 0.05 ms in ABBA rounds, + ½ size %). Top-1 verdicts the first samples leave unresolved get more samples
(TOP1_MAX_SAMPLES, at most TOP1_SECONDS_FACTOR x the budget's time per measurement per
variant). Variants whose benefit intervals overlap the best's low end are tied within noise:
the lower measured fidelity loss wins, then the smaller file. When full-integer int8 breaks
the bound, the QuantizationDebugger names the layers with the largest rmse/scale, and a
selective variant keeps them in float. Full int8 is calibrated once: the debugger and the
selective variant start from that calibrated model, the one measured. float64 weights or
inputs get their own finding with the measured cost: the graph frozen as is and re-typed to
float32, timed call by call in turn; a latency saving is claimed only when its interval's low
end is at least MIN_FLOAT32_SAVING_PCT (else it came and went between runs of the demo).
When the selective variant is within the bound and smaller than float32, ``quantization/full-int8-fidelity``
claims its savings (its fix), and ``--fix-dir`` writes it beside the recommended variant.

The float32 TFLite model must reproduce the SavedModel (within the bound) before any variant
is compared with it: when it does not, the check says so (``quantization/float32-mismatch``,
high when the outputs are unrelated, e.g. the weights never made it into the flatbuffer) and
recommends nothing. One cause is fixed on the way: a SavedModel whose graph restores other
variable handles than its signature reads (a Keras 3 model tracked inside a tf.Module) is
converted from the loaded model saved again (``conversion_source``); a float32 model out of
the bound for any other reason gets one such re-export tried, and is used when it reproduces.

Metrics
-------

- ``tflite_float32_size_bytes`` (bytes): the float32 flatbuffer, when it converted.
- ``tflite_float32_latency_ms`` (ms): its median LiteRT latency per request, with the bootstrap
  95 % interval; only when LiteRT ran it.
- ``host_index_ms`` (ms): the host reference workload's median, timed call by call in turn with that latency in the
  same process: ``--baseline`` scales the latency by it.
- ``tflite_recommended_size_bytes`` (bytes) and ``tflite_recommended_fidelity_loss`` (relative
  L2 error against the SavedModel, lower is better): the recommended variant's, with the
  variant as ``subject``; only when a variant is recommended.
"""
from __future__ import annotations

import time
from typing import Iterator

from tfaudit.api import Check, CheckMeta, Measurements, Progress, Yielded, fix_dir, helper_process

from .._compression.charts import VARIANT_CHARTS
from .._compression.savedmodel import scratch_dir
from .fix import fix
from .gather import gather
from .judge import judge


class QuantizationCheck(Check):
    meta = CheckMeta(
        id="quantization",
        title="Quantization and TFLite variants",
        description=(
            "Converts the model to float32, float16, dynamic-range int8, full int8 and 16x8 TFLite; measures size, "
            "LiteRT latency and fidelity against the SavedModel; recommends the best variant within the fidelity bound."
        ),
    )
    judge = staticmethod(judge)
    charts = VARIANT_CHARTS

    def __init__(self):
        # Started now, the conversion process's start overlaps with the model's load in this process.
        self.started = time.monotonic()
        self.isolated = helper_process()

    def run(self, ctx) -> Iterator[Yielded]:
        with scratch_dir() as tmp, self.isolated as isolated:
            isolated.deadline_for(self.started, ctx.budget)
            measured, conversions = yield from gather(ctx, isolated, tmp)
            yield Measurements(measured)
            verdicts = list(self.judge(measured))
            if fix_dir(ctx):
                yield Progress(0.98, "writing the recommended variant to --fix-dir and measuring it again")
                verdicts = fix(ctx, conversions, verdicts)
        yield Progress(1.0, "done")
        yield from verdicts
