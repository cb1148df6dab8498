"""The input pipeline (``tfaudit data``): how fast a tf.data pipeline delivers, which stage limits it, and which fixes pay.

``first_pass`` times the pipeline's first pass (each GetNext, memory, reads); ``gather`` each prefix of its chain of
stages, and each fix applied to the returned dataset in turn against it (a map made parallel, a final prefetch, a
cache, options); ``judge`` names the slow stage
and the fixes that pay by at least the practical minimum; ``catalogue`` holds the findings' prose. The pipeline is the
user's factory, built in this worker by ``tfaudit.engine.pipeline``.
"""
from __future__ import annotations

from typing import Iterator

from tfaudit.api import Chart, Check, CheckMeta, Measurements, SkipCheck, Yielded

from .fix import write_fixes
from .gather import gather
from .judge import judge


class DataCheck(Check):
    meta = CheckMeta(
        id="data",
        title="Input pipeline",
        description="Elements/s, GetNext latency, the slow stage, and the fixes measured to pay (tf.data).",
    )
    charts = (
        Chart("getnext_ms", "GetNext latency, first pass (ms)", ("getnext_ms",), x_label="element", tab="data", figure="data_getnext"),
        Chart("stage_rate", "the pipeline's elements/s up to each stage", ("stage_rate",), kind="bars", x_label="stage", tab="data",
              figure="data_stages", log_y=True),
    )
    judge = staticmethod(judge)

    def run(self, ctx) -> Iterator[Yielded]:
        if ctx.pipeline is None:
            raise SkipCheck("no input pipeline: run it as `tfaudit data MODULE:FUNCTION`")
        measured = yield from gather(ctx)
        yield Measurements(measured)
        yield from write_fixes(ctx, measured, list(self.judge(measured)))
