"""The compression variants' frontier, declared by each check that places variants (quantization, pruning): one chart per axis."""
from __future__ import annotations

from tfaudit.api import Chart

FIGURE_TITLE = "Compression variants (green: Pareto frontier on size, latency and fidelity)"
VARIANT_CHARTS = (
    Chart("variants_latency", "size MB vs latency ms", ("variant_latency_vs_size",), kind="frontier", x_label="latency (ms)",
          y_label="size (MB)", tab="compression", figure="compression", figure_title=FIGURE_TITLE),
    Chart("variants_fidelity", "size MB vs fidelity loss", ("variant_fidelity_vs_size",), kind="frontier",
          x_label="fidelity loss (relative L2)", y_label="size (MB)", tab="compression", figure="compression"),
)
