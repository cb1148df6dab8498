"""Memory: does serving memory grow per call, per new input shape, and how big is each batch size?

``gather`` runs the phases below and returns what they read; ``judge`` fits the slopes
(``growth``: Theil–Sen, numpy only) and decides; ``catalogue`` holds the findings' prose.

The check calls the serving signature in phases, after a warm-up:

1. ``fixed``: one input shape, repeatedly, for ``FIXED_SECONDS[budget]`` (at most
   ``FIXED_MAX_CALLS``), or until an early look (``EARLY_LOOKS`` of that time) decides no
   growth: over calls enough to see 1 MiB at 1 KiB a call, the slope's whole interval below
   1 KiB a call (``no_growth_decided``). Growth here is state the model keeps per call, or a leak.
2. ``heap``: a short repeat of the fixed phase under tracemalloc (it doubles the cost of a
   call, so it is kept short) to tell growth in Python objects from native/TF memory.
3. ``batch``: each batch size for ``BATCH_SECONDS[budget]`` at most, until its peak settled; the peak memory per batch size.
4. ``varied``: a stream of input shapes never seen before (new batch sizes, or new sequence
   lengths), all no larger than shapes already run so the working set cannot explain growth.
   Then the first ``WRAPPER_SHAPES`` of them again through a plain ``tf.function`` wrapper
   (how Python servers often call a model): each new shape retraces it, and what a retrace
   keeps is measured too.

Memory is anonymous resident memory (``RssAnon``: what the process allocated, without the
mapped TensorFlow libraries, so a worker forked from the zygote and a fresh interpreter read the
same; see tfaudit.engine.resources), read from a ``ResourceSampler`` (with this process's GPU memory via
NVML) on a background thread for the timeline and peaks, and at ~``FIT_POINTS`` checkpoints
per phase from the calling loop, so each reading is paired with an exact call count.
On a GPU that TensorFlow sees, ``tf.config.experimental.get_memory_info`` adds the TF
allocator's current and peak bytes per phase.

Growth per call (or per new shape) is the Theil–Sen slope of memory against calls, with
Sen's rank-based 95 % interval. A slope is reported as growth only when it is

- significant: its interval excludes zero;
- practically significant: the interval's low end is at least ``MIN_BYTES_PER_CALL``
  (1 KiB per call is ~1 GB per million calls), and the phase grew by at least
  ``MIN_PHASE_GROWTH_BYTES`` in total, well above page/allocator noise;
- persistent: the second half of the phase still grows at ``PERSISTENCE`` of the full rate,
  so a one-off allocator step (which Theil–Sen can mistake for a slope) is not a leak.

Findings:

- ``memory/growth-fixed-shape`` (RAM) and ``memory/gpu-growth-fixed-shape`` (NVML): severity
  from the hours until the growth, at the measured back-to-back call rate (the 90th percentile over
  the phase's checkpoint intervals: what the host sustains when other processes leave it alone,
  which a shared host's average swings far from), exhausts the memory available now: < 1 h critical, < 24 h high, < 7 days medium, else low. Savings
  ``memory_bytes`` = what the growth takes over ``SERVING_HORIZON_HOURS`` (a week) of serving at
  the measured call rate, at most the memory available now (a leak cannot take more: the server
  is OOM-killed first). A leak is priced by what it costs a server, not by what grew during the
  test, so one that exhausts memory within the week is priced at all of it and ranks first.
- ``memory/growth-per-new-shape``: the signature itself keeps memory per new input shape (the
  fixed-shape slope subtracted). Severity by bytes per new shape: < 1 MiB info, < 10 MiB low,
  < 100 MiB medium, else high. The wrapper's retrace cost is evidence only: it is the
  caller's code, not the model.
- ``memory/stable`` (info): nothing grew; carries the measured numbers.

Metrics
-------

- ``growth_bytes_per_1000_calls`` (bytes, lower is better): the fixed-shape Theil–Sen slope of
  anonymous memory × 1000, with its 95 % interval × 1000; emitted after the fixed phase, growth or not. When
  the slope is not growth (above), the interval reaches from 0 to the phase's resolution, the
  smallest slope it could report (``MIN_BYTES_PER_CALL``, or ``MIN_PHASE_GROWTH_BYTES`` over the
  calls made when that is larger): "no growth" is a measurement at a resolution, not exactly 0.
- ``peak_memory_mb`` (MB): the highest anonymous-memory peak over the batch-size phase (samples,
  and the kernel's high-water mark between them).
- ``gpu_growth_bytes_per_1000_calls`` (bytes): the same slope for this process's GPU memory
  (NVML); only when every fixed-phase reading has a GPU value.
"""
from __future__ import annotations

from typing import Iterator

from tfaudit.api import Chart, Check, CheckMeta, Measurements, Yielded

from .gather import gather
from .judge import judge


class MemoryCheck(Check):
    meta = CheckMeta(
        id="memory",
        title="Memory growth and peak per batch size",
        description=(
            "Calls the model repeatedly with one shape, with new shapes and per batch size; fits memory growth per "
            "call and per new shape (Theil–Sen with an interval) and reports peaks per batch size."
        ),
    )
    judge = staticmethod(judge)
    charts = (
        Chart("ram_mb", "anonymous memory (MB)", ("ram_mb",), x_label="s", tab="memory", figure="memory_timeline",
              figure_title="Memory over the memory check's phases"),
        Chart("gpu_mb", "GPU memory (MB)", ("gpu_mb",), x_label="s", tab="memory", figure="memory_timeline", empty="no GPU"),
        Chart("delta_mb", "growth from the baseline (MB)", ("delta_mb",), x_label="s", tab="memory", figure="memory_timeline"),
        Chart("peak_mb_by_batch", "peak by batch size (MB)", ("peak_mb_by_batch",), kind="bars", x_label="batch size", tab="memory",
              figure="memory_timeline"),
    )

    def run(self, ctx) -> Iterator[Yielded]:
        measured = yield from gather(ctx)
        yield Measurements(measured)
        yield from self.judge(measured)
