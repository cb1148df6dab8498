"""Pruning: magnitude-prune the kernels at a sweep of sparsities and measure what it buys and costs.

``gather`` (with ``pruner``) measures in the worker and returns plain data; ``judge`` decides from
it without TensorFlow; ``catalogue`` holds the findings' prose; ``fix`` writes --fix-dir's
artifacts from what the gather left behind.

Per sparsity, the kernels (float variables of rank >= 2; those whose shape is only known at run
time are skipped and named) are pruned one-shot, layer by layer, to that fraction of zeros by
magnitude, in place in the loaded model; every other variable (state a serving call may grow)
is put back before each run; then:

- fidelity: the serving signature on the same inputs, against its outputs before pruning;
- size: the float32 TFLite flatbuffer, zipped, as tfmot's pruning guide measures it (dense
  flatbuffers do not shrink; zip shows what the zeros are worth on the wire and on disk);
- latency: the flatbuffer with its sparse tensors encoded (the converter's sparsity pass) in
  the LiteRT interpreter, against the dense float32 flatbuffer in ABBA rounds. Only a decision
  "faster" past 10 % of a call and 0.05 ms (``_compression.variants.LATENCY_MINIMUM``) becomes a latency saving.

Method: tfmot (``prune_low_magnitude`` with a ConstantSparsity schedule, masks applied once,
``strip_pruning``; plus 2:4 ``sparsity_m_by_n``) for tf_keras SavedModels, so the numbers match
what the user would run; direct magnitude pruning of the variables for Keras 3 and plain
SavedModels. The recommendation is the largest sparsity within the fidelity bound (one-shot:
hours); when none is, pruning needs fine-tuning (days, with the tfmot training snippet).
The recommended sparsity is also converted with weight quantization and measured together.
Conversions and LiteRT runs happen in a separate process, as for quantization: a crash there
leaves the sweep's fidelity measured and says why size or latency is missing.

Metrics
-------

Only when a sparsity is recommended (none is when every swept sparsity breaks the bound):

- ``recommended_sparsity_pct`` (%, higher is better): the largest swept sparsity within the
  fidelity bound.
- ``pruned_zipped_size_bytes`` (bytes): the zipped float32 TFLite model at that sparsity; only
  when it converted.
"""
from __future__ import annotations

import time
from typing import Iterator

from tfaudit.api import Check, CheckMeta, Measurements, Progress, Yielded, fix_dir, helper_process

from .._compression import scratch_dir
from .._compression.charts import VARIANT_CHARTS
from .fix import write_fixes
from .gather import gather
from .judge import judge


class PruningCheck(Check):
    meta = CheckMeta(
        id="pruning",
        title="Magnitude pruning",
        description=(
            "Prunes the kernels by magnitude at 50/75/90 % (tfmot on tf_keras models, directly otherwise); measures "
            "fidelity, zipped TFLite size and sparse LiteRT latency; recommends the largest sparsity within the bound."
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
            measured, workspace = yield from gather(ctx, isolated, tmp)
            yield Measurements(measured)
            decided = list(self.judge(measured))
            if fix_dir(ctx) and workspace.fixable:
                yield Progress((workspace.steps - 0.5) / workspace.steps, "writing the pruned models to --fix-dir and measuring them again")
                decided = write_fixes(ctx, workspace, decided)
        yield Progress(1.0, "done")
        yield from decided
