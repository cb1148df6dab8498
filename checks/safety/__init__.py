"""Safety: ops in the serving graph that reach beyond the tensors it is given.

Auditing (and serving) a model executes its graph. A graph can hold ops that read or write
files, call back into Python, or talk to other machines; a model from an untrusted source can
use them. ``gather`` reads the op histogram of the serving graph (nested functions included)
from the inventory, running nothing; ``judge`` names each kind of op found; ``catalogue``
holds the findings' prose.
"""
from __future__ import annotations

from typing import Iterator

from tfaudit.api import Check, CheckMeta, Measurements, Yielded

from .gather import gather
from .judge import judge


class SafetyCheck(Check):
    meta = CheckMeta(
        id="safety",
        title="File, Python and network ops",
        description="Ops in the serving graph that read or write files, run Python or reach the network.",
    )
    judge = staticmethod(judge)

    def run(self, ctx) -> Iterator[Yielded]:
        measured = gather(ctx)
        yield Measurements(measured)
        yield from self.judge(measured)
