"""Deployment profiles: every measured saving in one currency, the profile's (pure; no TensorFlow).

- ``server``: money a month at ``traffic`` requests a second. Saved latency becomes the cores it frees, counted in CPU time
  (every thread of the serving process, measured by the serving check: intra-op threads run in parallel); bytes become
  memory held by each replica; a faster cold start, the cores a starting replica holds before it serves.
- ``edge``: points for the LiteRT flatbuffer a device runs: MB a phone downloads, ms of on-device latency (this host's
  LiteRT time, a proxy) and MB of RAM, each weighted as stated.
- ``batch``: core-hours per billion rows.

An input pipeline's audit (``tfaudit data``, ``Profile.subject`` "pipeline") prices in its own units: the share of the
pipeline's time per element a fix saves (the same share of an epoch), or under ``batch`` the hours of this host per
billion elements.

A saving of another runtime than the profile's (a TF Serving setting under ``edge``, a smaller flatbuffer under ``batch``)
is worth nothing there and says why. Each worth keeps its saving's interval: ``low`` and ``high`` come from the saving's
interval ends and the measured CPU time's.
"""
from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field
from typing import Any

from tfaudit.api import CPU_PER_CALL_METRIC, CPU_PER_ROW_METRIC, Finding, Measure

PROFILES = ("server", "edge", "batch")
SUBJECTS = ("model", "pipeline")  # what the audit measured: a model (tfaudit MODEL) or an input pipeline (tfaudit data)
ELEMENTS_PER_BATCH_JOB = 1e9
PIPELINE_ELEMENTS_METRIC = "data.elements_per_second"
DEFAULT_PROFILE = "server"
DEFAULT_TRAFFIC_RPS = 100.0
HOURS_PER_MONTH = 730.0  # 365 × 24 / 12
DAYS_PER_MONTH = 30.4
ROWS_PER_BATCH_JOB = 1e9
GB = 1e9
MB = 1e6
LITERT_LATENCY_METRIC = "quantization.tflite_float32_latency_ms"  # the float32 flatbuffer's median per request, on this host


@dataclass(frozen=True)
class Prices:
    """What ``server`` prices with; ``[tool.tfaudit.prices]`` sets each.

    The defaults are Google Compute Engine's on-demand list prices for the N2 family in us-central1 (a vCPU-hour and a
    GB-hour of memory priced apart, as a custom machine is billed): the cost of a core and of a GB that a saving frees."""

    core_hour: float = 0.031611  # USD per vCPU-hour
    gb_hour: float = 0.004237  # USD per GB-hour of memory
    scale_ups_per_day: float = 24.0  # replica starts a day an autoscaled service makes: what a cold start is paid per
    currency: str = "$"
    source: str = "Google Compute Engine N2 on-demand, us-central1 (vCPU and memory billed apart)"


@dataclass(frozen=True)
class EdgeWeights:
    """What ``edge`` scores with, in points per unit saved; ``[tool.tfaudit.edge_weights]`` sets each."""

    download_mb: float = 1.0
    latency_ms: float = 1.0
    ram_mb: float = 1.0


PRICE_KEYS = ("core_hour", "gb_hour", "scale_ups_per_day", "currency")
EDGE_KEYS = ("download_mb", "latency_ms", "ram_mb")


@dataclass(frozen=True)
class Profile:
    name: str = DEFAULT_PROFILE
    traffic_rps: float = DEFAULT_TRAFFIC_RPS
    prices: Prices = field(default_factory=Prices)
    edge: EdgeWeights = field(default_factory=EdgeWeights)
    subject: str = "model"  # one of SUBJECTS

    def __post_init__(self) -> None:
        if self.name not in PROFILES:
            raise ValueError(f"profile must be one of {PROFILES}, not {self.name!r}")
        if self.subject not in SUBJECTS:
            raise ValueError(f"subject must be one of {SUBJECTS}, not {self.subject!r}")

    @property
    def unit(self) -> str:
        if self.subject == "pipeline":
            return "h per 1e9 elements" if self.name == "batch" else "% of the pipeline's time"
        return {"server": f"{self.prices.currency}/month", "edge": "edge points", "batch": "core-h per 1e9 rows"}[self.name]

    @property
    def label(self) -> str:
        """The profile in a few words, for the verdict: "server at 100 req/s"."""
        if self.subject == "pipeline":
            return "batch job" if self.name == "batch" else "pipeline"
        return f"server at {self.traffic_rps:g} req/s" if self.name == "server" else self.name

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "traffic_rps": self.traffic_rps, "prices": asdict(self.prices), "edge_weights": asdict(self.edge),
                "unit": self.unit, "subject": self.subject}

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> "Profile":
        data = data or {}
        prices = {k: v for k, v in (data.get("prices") or {}).items() if k in Prices.__dataclass_fields__}
        edge = {k: v for k, v in (data.get("edge_weights") or {}).items() if k in EdgeWeights.__dataclass_fields__}
        return cls(data.get("name", DEFAULT_PROFILE), float(data.get("traffic_rps", DEFAULT_TRAFFIC_RPS)), Prices(**prices), EdgeWeights(**edge),
                   data.get("subject", "model"))


@dataclass(frozen=True)
class Basis:
    """What this run measured that a profile prices with (each None when its check did not run)."""

    cpu_ms_per_row: Measure | None = None  # CPU time per row at the serving batch
    cpu_ms_per_call: Measure | None = None  # CPU time of a call at the first batch ...
    wall_ms_per_call: float | None = None  # ... and its wall time (the median): their ratio is the cores a call keeps busy
    cores: int = 1  # the host's logical cores: a replica's size
    litert_ms: float | None = None
    elements_per_second: float | None = None  # an input pipeline's (tfaudit data)

    @classmethod
    def of(cls, metrics: dict[str, dict[str, Any]], environment: dict[str, Any]) -> "Basis":
        def measure(name: str) -> Measure | None:
            m = metrics.get(name)
            return None if m is None else Measure(m["value"], m.get("low"), m.get("high"))

        wall = metrics.get("serving.p50_ms_batch_1")
        litert = metrics.get(LITERT_LATENCY_METRIC)
        elements = metrics.get(PIPELINE_ELEMENTS_METRIC)
        return cls(measure(f"serving.{CPU_PER_ROW_METRIC}"), measure(f"serving.{CPU_PER_CALL_METRIC}"),
                   wall["value"] if wall else None, int(environment.get("cores_logical") or 1), litert["value"] if litert else None,
                   elements["value"] if elements else None)

    @property
    def busy_cores(self) -> float | None:
        """Cores a call keeps busy: its CPU time over its wall time (intra-op threads in parallel)."""
        if self.cpu_ms_per_call is None or not self.wall_ms_per_call:
            return None
        return self.cpu_ms_per_call.value / self.wall_ms_per_call


@dataclass(frozen=True)
class Worth:
    """A finding's saving in the profile's currency: ``value`` [``low``–``high``] ``unit``; ``physical`` says it in the units
    it was measured in (cores at the traffic, MB, ms); ``why_not`` says why a saving is worth nothing under this profile."""

    value: float
    low: float
    high: float
    unit: str
    physical: str = ""
    why_not: str = ""

    @property
    def priced(self) -> bool:
        return self.value > 0 and not self.why_not

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Worth":
        return cls(**data)


Ends = tuple[float, ...]  # (value, low, high) of a saving carried through a conversion


def _priced(ends: Ends, unit: str, physical: str) -> "Worth":
    return Worth(ends[0], ends[1], ends[2], unit, physical)


def _ends(measure: Measure) -> Ends:
    """value, low, high of a saving, never below zero."""
    low = measure.value if measure.low is None else measure.low
    high = measure.value if measure.high is None else measure.high
    return max(0.0, measure.value), max(0.0, min(low, measure.value)), max(0.0, high, measure.value)


def _product(*factors: Ends) -> Ends:
    value, low, high = 1.0, 1.0, 1.0
    for v, lo, hi in factors:
        value, low, high = value * v, low * lo, high * hi
    return value, low, high


def requests_per(per: str) -> int | None:
    """How many requests a latency_ms saving is per ("request", "8 requests", "stream of 60 requests"); None for another unit."""
    if per == "request":
        return 1
    found = re.search(r"(\d+) requests$", per)
    return int(found.group(1)) if found else None


def _fmt(value: float) -> str:
    return f"{value:.3g}" if value < 1000 else f"{value:,.0f}"


def _span(ends: Ends, unit: str) -> str:
    value, low, high = ends
    return f"{_fmt(value)} {unit} [{_fmt(low)}–{_fmt(high)}]" if (low, high) != (value, value) else f"{_fmt(value)} {unit}"


def worth(finding: Finding, profile: Profile, basis: Basis) -> Worth | None:
    """The finding's savings in ``profile``'s currency; None when it prices no saving."""
    if not finding.savings:
        return None
    if profile.subject == "pipeline":
        return _pipeline(finding, profile, basis)
    if profile.name == "edge":
        return _edge(finding, profile, basis)
    return _server_or_batch(finding, profile, basis)


def _cpu_saved_ms_per_row(finding: Finding, basis: Basis) -> tuple[Ends | None, str]:
    """CPU ms a request saves: a share of the serving call's CPU time, or saved wall ms × the cores a call keeps busy."""
    s = finding.savings
    if "latency_pct" in s:
        if basis.cpu_ms_per_row is None:
            return None, "the serving check's CPU time per request was not measured in this run"
        pct = _ends(s["latency_pct"])
        return _product(_ends(basis.cpu_ms_per_row), (pct[0] / 100, pct[1] / 100, pct[2] / 100)), ""
    if "latency_ms" in s:
        per = requests_per(finding.per)
        if per is None:
            return None, ""
        if basis.busy_cores is None:
            return None, "the serving check's CPU time per call was not measured in this run"
        busy = basis.busy_cores / per
        return _product(_ends(s["latency_ms"]), (busy, busy, busy)), ""
    return None, ""


def _server_or_batch(finding: Finding, profile: Profile, basis: Basis) -> Worth:
    s, unit, prices = finding.savings, profile.unit, profile.prices
    if finding.runtime != "tensorflow" and not ({"size_bytes", "memory_bytes"} & set(s) and profile.name == "server"):
        return Worth(0.0, 0.0, 0.0, unit, why_not=f"a saving of the {finding.runtime} flatbuffer, not of a TensorFlow {profile.name}")
    cpu, why = _cpu_saved_ms_per_row(finding, basis) if finding.runtime == "tensorflow" else (None, "")
    if profile.name == "batch":
        if cpu is None:
            return Worth(0.0, 0.0, 0.0, unit, why_not=why or "no CPU time saved per row: not a cost of a batch job")
        hours = tuple(ms / 1000 * ROWS_PER_BATCH_JOB / 3600 for ms in cpu)
        return _priced(hours, unit, f"{_span(cpu, 'CPU ms')} per row")
    total: Ends = (0.0, 0.0, 0.0)
    physical: list[str] = []
    if cpu is not None:
        cores = tuple(ms / 1000 * profile.traffic_rps for ms in cpu)
        total = tuple(t + c * prices.core_hour * HOURS_PER_MONTH for t, c in zip(total, cores))
        physical.append(f"frees {_span(cores, 'cores')} at {profile.traffic_rps:g} req/s")
    elif finding.per == "replica start" and "latency_ms" in s:
        seconds = tuple(ms / 1000 for ms in _ends(s["latency_ms"]))
        core_hours = tuple(sec * prices.scale_ups_per_day * DAYS_PER_MONTH * basis.cores / 3600 for sec in seconds)
        total = tuple(t + h * prices.core_hour for t, h in zip(total, core_hours))
        physical.append(f"{_span(tuple(x * 1000 for x in seconds), 'ms')} less per replica start: {_span(core_hours, 'core-h')} "
                        f"a month at {prices.scale_ups_per_day:g} starts a day of a {basis.cores}-core replica")
    held = [_ends(s[k]) for k in ("memory_bytes", "size_bytes") if k in s]
    if held:
        replicas = replicas_at(profile, basis)
        gb = tuple(sum(h[i] for h in held) / GB for i in range(3))
        total = tuple(t + g * replicas * prices.gb_hour * HOURS_PER_MONTH for t, g in zip(total, gb))
        physical.append(f"{_span(tuple(g * 1000 for g in gb), 'MB')} per replica × {replicas}")
    if not physical:
        return Worth(0.0, 0.0, 0.0, unit, why_not=why or f"nothing a {profile.name} pays for in {', '.join(sorted(s))}")
    return _priced(total, unit, "; ".join(physical))


def _pipeline(finding: Finding, profile: Profile, basis: Basis) -> Worth:
    """A saving of the pipeline's time per element: its share, or under ``batch`` the hours per 1e9 elements."""
    s, unit = finding.savings, profile.unit
    if finding.per != "element" or "latency_pct" not in s or "latency_ms" not in s:
        return Worth(0.0, 0.0, 0.0, unit, why_not="not a saving of the pipeline's time per element")
    ms, pct = _ends(s["latency_ms"]), _ends(s["latency_pct"])
    physical = f"{_span(ms, 'ms')} less per element"
    if basis.elements_per_second:
        faster = tuple(basis.elements_per_second / (1 - min(p, 99.0) / 100) for p in pct)
        physical += f": {_fmt(basis.elements_per_second)} → {_span(faster, 'elements/s')}"
    if profile.name == "batch":
        return _priced(tuple(x / 1000 * ELEMENTS_PER_BATCH_JOB / 3600 for x in ms), unit, physical)
    return _priced(pct, unit, physical)


def replicas_at(profile: Profile, basis: Basis) -> int:
    """Replicas of this host's size the traffic keeps busy, at least one (one when the CPU time was not measured)."""
    if basis.cpu_ms_per_row is None:
        return 1
    return max(1, math.ceil(profile.traffic_rps * basis.cpu_ms_per_row.value / 1000 / basis.cores))


def _edge(finding: Finding, profile: Profile, basis: Basis) -> Worth:
    s, w, unit = finding.savings, profile.edge, profile.unit
    if finding.runtime != "litert":
        return Worth(0.0, 0.0, 0.0, unit, why_not="a saving of TensorFlow serving, not of the LiteRT model a device runs")
    total: Ends = (0.0, 0.0, 0.0)
    physical: list[str] = []
    if "size_bytes" in s:
        mb = tuple(b / MB for b in _ends(s["size_bytes"]))
        total = tuple(t + x * w.download_mb for t, x in zip(total, mb))
        physical.append(f"{_span(mb, 'MB')} less to download")
    latency: Ends | None = None
    if "latency_ms" in s and requests_per(finding.per) == 1:
        latency = _ends(s["latency_ms"])
    elif "latency_pct" in s and basis.litert_ms:
        latency = tuple(p / 100 * basis.litert_ms for p in _ends(s["latency_pct"]))
    if latency is not None:
        total = tuple(t + x * w.latency_ms for t, x in zip(total, latency))
        physical.append(f"{_span(latency, 'ms')} less per inference (this host's LiteRT, a proxy for a device)")
    if "memory_bytes" in s:
        mb = tuple(b / MB for b in _ends(s["memory_bytes"]))
        total = tuple(t + x * w.ram_mb for t, x in zip(total, mb))
        physical.append(f"{_span(mb, 'MB')} less RAM")
    if not physical:
        return Worth(0.0, 0.0, 0.0, unit, why_not="no download, latency or RAM saving on a device")
    return _priced(total, unit, "; ".join(physical))


def assumptions(profile: Profile, basis: Basis) -> list[str]:
    """What the profile's currency rests on, each stated once: the report prints them under its ranking."""
    p = profile.prices
    if profile.subject == "pipeline":
        consumer = "timed with a consumer that pulls as fast as it can (no model between elements), on this host"
        return [f"the pipeline's time per element, {consumer}"] + (["hours of this host per 1e9 elements"] if profile.name == "batch" else [])
    if profile.name == "edge":
        w = profile.edge
        return [f"edge points = {w.download_mb:g} per MB of download + {w.latency_ms:g} per ms of on-device latency + "
                f"{w.ram_mb:g} per MB of RAM ([tool.tfaudit.edge_weights])",
                "on-device latency is this host's LiteRT time: a proxy, measure on the device"]
    cpu = ("not measured in this run (the serving check did not run): latency savings are not priced" if basis.cpu_ms_per_row is None
           else f"{basis.cpu_ms_per_row.value:.3g} CPU ms per request at the serving configuration the serving check found"
           + (f", a call keeping {basis.busy_cores:.2g} cores busy" if basis.busy_cores is not None else ""))
    if profile.name == "batch":
        return [f"CPU time: {cpu}", "a latency share saves the same share of CPU time", "core-hours per 1e9 rows"]
    return [
        f"traffic {profile.traffic_rps:g} req/s (--traffic); CPU time: {cpu}",
        "a latency share saves the same share of CPU time",
        f"{p.currency}{p.core_hour:g} per core-hour and {p.currency}{p.gb_hour:g} per GB-hour ({p.source}; [tool.tfaudit.prices])",
        f"bytes saved are held by each of {replicas_at(profile, basis)} replica(s) of {basis.cores} cores; "
        f"a cold start is paid {p.scale_ups_per_day:g} times a day",
    ]


def worth_text(w: Worth | None, unit: bool = True, interval: bool = True) -> str:
    """A worth in words: "$12.3/month [$10.1–$14.2]", "4.1 edge points [3.9–4.4]"; "—" when it is worth nothing here
    (``why_not`` says why). A table whose header names the unit leaves it out (``unit``); a narrow cell, the interval."""
    if w is None or not w.priced:
        return "—"
    ends = (w.value, w.low, w.high) if interval else (w.value, w.value, w.value)
    if w.unit.endswith("/month"):
        currency = w.unit.removesuffix("/month")
        money = lambda x: f"{currency}{x:,.2f}" if x >= 0.01 else f"{currency}{x:.2g}"  # noqa: E731
        span = f" [{money(ends[1])}–{money(ends[2])}]" if ends[1:] != (ends[0], ends[0]) else ""
        return f"{money(ends[0])}{'/month' if unit else ''}{span}"
    return _span(ends, w.unit) if unit else _span(ends, "").replace(" [", "[").strip()
