"""The check API: what a check is, what it yields, and what it is given.

A check is a class with a ``meta`` and a ``run(ctx)`` generator that yields
``Progress``, ``Sample``, ``Metric``, ``Measurements`` and ``Finding`` objects. It runs
inside a worker process; it imports TensorFlow inside ``run`` (never at module top) so that
``tfaudit --list-checks`` stays fast and TensorFlow-free.

A check reads best in three parts (``checks/safety/`` is the smallest example): ``gather``
measures, in the worker, and returns plain data; ``judge`` turns that data into findings,
metrics and samples without TensorFlow; a catalogue of ``Rule`` entries holds each finding's
prose and estimates once. ``run`` yields the gathered ``Measurements``, then what the judge
decided, so the report keeps the data a verdict came from.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from statistics import NormalDist
from string import Template
from typing import TYPE_CHECKING, Any, Iterator, Sequence, Union

if TYPE_CHECKING:  # pragma: no cover
    from tfaudit.budget import Budget
    from tfaudit.engine.inputs import InputFactory
    from tfaudit.engine.measure import Comparison, Timing
    from tfaudit.engine.model import LoadedModel
    from tfaudit.engine.resources import ResourceSampler
    from tfaudit.engine.helpers import Helper
    from tfaudit.engine.sequential import Decision

SEVERITIES = ("critical", "high", "medium", "low", "info")
EFFORT_LEVELS = ("minutes", "hours", "days")
RISK_LEVELS = ("none", "low", "medium", "high")
SAVING_KEYS = ("latency_ms", "latency_pct", "size_bytes", "size_pct", "memory_bytes")
# A latency saving counts only from here: 70 % of a 10-microsecond call is real, but nobody's bottleneck.
MIN_PRACTICAL_LATENCY_MS = 0.05
# The level of the intervals compare() and bootstrap() give (every "[low–high]" a report prints), and the level a stored
# record that names neither its level nor its budget is judged at (record_confidence).
INTERVAL_LEVEL = 0.95
BASELINE_MODEL_METRIC = "latency_vs_baseline_model"  # --baseline-model's ratio: compared within each run, never across runs
DEFAULT_BATCH_SIZES = (1, 2, 4, 8, 16, 32)  # the batch sizes checks sweep (ctx.inputs.make(batch=…))
DEFAULT_SEQUENCE_LENGTH = 16  # what ctx.inputs.make() gives a dynamic sequence dimension
# What a finding is (Finding.kind): an opportunity prices a saving this run measured and carries the support for it
# (Finding.confidence); a fact was found in the model or its run and is certain; advice is about code or serving
# the audit cannot see, and says when it applies (applies_if). Facts and advice carry no confidence number.
# An undecided finding is a comparison the budget's cap (or the spread between processes) left undecided: no claim, listed
# apart with what was measured, never ranked or gated (Rule.undecided).
FINDING_KINDS = ("opportunity", "fact", "advice", "undecided")
# Where a finding's saving is had (Finding.runtime): serving the model with TensorFlow, or its LiteRT flatbuffer (a phone's
# download and on-device latency). A deployment profile prices a saving only on its runtime (tfaudit.report.profiles).
RUNTIMES = ("tensorflow", "litert")
# Reviewing and deploying an artifact --fix-dir wrote, against writing the fix by hand: an estimate, as every effort is.
WRITTEN_FIX_EFFORT_SHARE = 0.5


HOST_INDEX_METRIC = "host_index_ms"  # the host reference's median, emitted beside a check's latencies (see host_reference)
# A call ÷ the host reference timed in turn with it, over fresh processes (process_ratios): its geometric mean, and as
# NAME + SPREAD_SUFFIX the sd of its log in %; per kind of timed metric: batch 1 for latencies, the serving batch (every
# core) for throughput. tfaudit.report.gates believes a slower latency or throughput only when these show it too.
# The serving check's CPU time (every thread of the process) of a call at its first batch, and per row at the serving batch
# (serving.<name>, subject "batch N"): what a deployment profile prices saved latency in (tfaudit.report.profiles).
CPU_PER_CALL_METRIC, CPU_PER_ROW_METRIC = "cpu_ms_per_call", "cpu_ms_per_row"
PER_REFERENCE_METRICS = {"latency": "batch_1_per_reference", "throughput": "serving_batch_per_reference"}
SPREAD_SUFFIX = "_spread_pct"


class InputError(Exception):
    """Sample inputs that do not fit the signature (from ``ctx.inputs.make``); the message names the mismatch."""


def severity_rank(severity: str) -> int:
    """0 for critical … 4 for info; lower is worse."""
    return SEVERITIES.index(severity)


@dataclass(frozen=True)
class CheckMeta:
    id: str
    title: str
    description: str


@dataclass(frozen=True)
class Measure:
    """A measured quantity, with its interval when repeated runs allow one."""

    value: float
    low: float | None = None
    high: float | None = None
    projected: bool = False  # computed from measured numbers (a week of growth at the measured rate), not measured itself

    def excludes_zero(self) -> bool:
        return self.low is not None and self.high is not None and (self.low > 0 or self.high < 0)


@dataclass(frozen=True)
class Slope:
    """A fitted slope (bytes per call, per element …) with its interval, always known: a single point's is 0 [0, 0]."""

    value: float
    low: float
    high: float

    def excludes_zero(self) -> bool:
        return self.low > 0 or self.high < 0


@dataclass(frozen=True)
class PracticalMinimum:
    """The least difference a finding is worth: ``relative`` of a call (0.10: 10 %), and at least ``absolute_ms``.

    A catalogue states it once per finding, with ``why`` in the user's terms; ``compare_in_turn``
    stops once its interval is wholly past it, or wholly within it.
    """

    relative: float
    absolute_ms: float = 0.0
    why: str = ""

    @property
    def percent(self) -> str:
        """The relative minimum as a catalogue writes it: "10 %"."""
        return f"{100 * self.relative:g} %"

    def band(self, base_ms: float) -> float:
        """The band's half-width in log space for a side whose median call takes ``base_ms``."""
        relative = max(self.relative, self.absolute_ms / base_ms if base_ms > 0 else 0.0)
        return math.log1p(relative)


REGRESSION_MINIMUM = PracticalMinimum(0.10, why="10 % of a call, the least slowdown worth failing a merge for")


@dataclass(frozen=True)
class Support:
    """The evidence for an opportunity's claim, "the saving is at least the practical minimum": ``value`` in 0..1 and
    ``basis``, the method that gave it, in words. It becomes the finding's confidence."""

    value: float
    basis: str

    @classmethod
    def exact(cls, saving: float, minimum: float, what: str) -> "Support":
        """A saving counted rather than sampled (bytes on disk): certain when it reaches the minimum."""
        return cls(1.0 if saving >= minimum else 0.0, f"exact: {what}, counted rather than sampled")

    @classmethod
    def interval(cls, saving: Measure, minimum: float, method: str, level: float = INTERVAL_LEVEL) -> "Support":
        """From a ``level`` interval of the saving (``method`` names it): a normal approximation, P(saving >= minimum)."""
        if saving.low is None or saving.high is None:
            raise ValueError("Support.interval needs a saving with an interval")
        se = (saving.high - saving.low) / (2 * NormalDist().inv_cdf(0.5 + level / 2))
        value = float(saving.value >= minimum) if se <= 0 else NormalDist().cdf((saving.value - minimum) / se)
        return cls(round(value, 4), f"normal approximation to the saving's {level:.0%} {method} interval, against the minimum {minimum:g}")

    @classmethod
    def decided(cls, decision: "Decision") -> "Support":
        """From the comparison engine's decision: 1 - p of "within the practical minimum" at the deciding look."""
        return cls(round(decision.support, 4), decision.method or "the comparison engine's decision")

    @classmethod
    def ordered(cls, slower: Sequence[float], faster: Sequence[float], what: str) -> "Support":
        """Every one of ``slower`` above every one of ``faster``: an exact permutation test, p = 1 / C(n + m, n)."""
        arrangements = math.comb(len(slower) + len(faster), len(slower))
        return cls(round(1 - 1 / arrangements, 4), f"exact permutation test: all {len(slower)} {what} (p = 1/{arrangements})")


@dataclass(frozen=True)
class Effort:
    """How long the fix takes. ``hours`` is the estimate the ranking divides by.

    Scale (seed 002): input signature ~0.5 h, tensor conversion 1-2 h,
    function caching 4-8 h, fine-tuning or QAT days (>= 16 h).
    """

    level: str
    hours: float
    note: str

    def __post_init__(self) -> None:
        if self.level not in EFFORT_LEVELS:
            raise ValueError(f"effort level must be one of {EFFORT_LEVELS}, not {self.level!r}")
        if self.hours <= 0:
            raise ValueError("effort hours must be positive")


@dataclass(frozen=True)
class Risk:
    level: str = "none"
    note: str = ""
    fidelity_loss: float | None = None  # measured, e.g. relative L2 error of outputs

    def __post_init__(self) -> None:
        if self.level not in RISK_LEVELS:
            raise ValueError(f"risk level must be one of {RISK_LEVELS}, not {self.level!r}")


@dataclass(frozen=True)
class Fix:
    text: str
    code: str = ""
    language: str = "python"


@dataclass(frozen=True)
class Finding:
    id: str  # stable, "check/slug"
    check: str
    severity: str
    title: str
    summary: str
    evidence: dict[str, Any]
    effort: Effort
    fix: Fix
    savings: dict[str, Measure] = field(default_factory=dict)
    risk: Risk = field(default_factory=Risk)
    kind: str = "fact"  # one of FINDING_KINDS
    confidence: float | None = None  # an opportunity's support (0..1); None for facts and advice
    basis: str = ""  # how the confidence was reached
    applies_if: str = ""  # when the finding matters at all (advice, or a saving only some deployments see); ranked after the rest
    fix_writer: str = ""  # what --fix-dir writes for it, whether or not this run passed --fix-dir
    runtime: str = "tensorflow"  # one of RUNTIMES: where the saving is had
    per: str = "request"  # what a latency_ms saving is per: "request", "8 requests", "replica start", "stream of 60 requests"
    why: str = ""  # why it matters, for the report
    verify: str = ""  # how to verify the fix
    priority: float = 0.0  # filled by tfaudit.report.priority
    worth: dict[str, Any] = field(default_factory=dict)  # the saving in the deployment profile's currency (tfaudit.report.profiles.Worth)
    # --fix-dir: the fixed artifact this run wrote and re-measured. ``verified`` has the keys of
    # ``savings``, measured on the artifact; ``artifact`` says where it is, what it is, the code
    # that made it and what was measured.
    verified: dict[str, Measure] = field(default_factory=dict)
    artifact: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.severity not in SEVERITIES:
            raise ValueError(f"severity must be one of {SEVERITIES}, not {self.severity!r}")
        if not self.id.startswith(self.check + "/"):
            raise ValueError(f"finding id {self.id!r} must start with '{self.check}/'")
        unknown = (set(self.savings) | set(self.verified)) - set(SAVING_KEYS)
        if unknown:
            raise ValueError(f"unknown savings keys {sorted(unknown)}; allowed: {SAVING_KEYS}")
        if self.kind not in FINDING_KINDS:
            raise ValueError(f"kind must be one of {FINDING_KINDS}, not {self.kind!r}")
        if self.runtime not in RUNTIMES:
            raise ValueError(f"runtime must be one of {RUNTIMES}, not {self.runtime!r}")
        if self.confidence is not None and (self.kind != "opportunity" or not self.basis or not 0.0 <= self.confidence <= 1.0):
            raise ValueError(f"{self.id}: only an opportunity carries a confidence, within 0..1 and with its basis")
        if self.kind == "opportunity" and self.savings and self.confidence is None:
            raise ValueError(f"{self.id}: an opportunity that prices a saving needs the support for it (a Support)")
        if self.kind == "advice" and not self.applies_if:
            raise ValueError(f"{self.id}: advice says when it applies (applies_if)")
        if self.kind == "undecided" and (self.savings or self.confidence is not None or self.severity != "info"):
            raise ValueError(f"{self.id}: an undecided finding claims nothing: no savings, no confidence, severity info")

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for key in ("savings", "verified"):  # "projected" only where a number is one
            data[key] = {k: {n: v for n, v in m.items() if n != "projected" or v} for k, m in data[key].items()}
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Finding":
        data = dict(data)
        data["effort"] = Effort(**data["effort"])
        data["fix"] = Fix(**data["fix"])
        data["risk"] = Risk(**data.get("risk") or {})
        data["savings"] = {k: Measure(**v) for k, v in (data.get("savings") or {}).items()}
        data["verified"] = {k: Measure(**v) for k, v in (data.get("verified") or {}).items()}
        if "kind" not in data:  # a report from before confidence was computed: its number was set by hand
            set_by_hand = data.get("confidence") is not None and bool(data["savings"])
            data.update(kind="opportunity" if set_by_hand else "fact", confidence=data.get("confidence") if set_by_hand else None,
                        basis="set by hand (a report from before tfaudit computed confidence)" if set_by_hand else "")
        return cls(**data)


@dataclass(frozen=True)
class Sample:
    """One point of a time series for the live charts (``series`` names the chart line)."""

    series: str
    x: float
    y: float
    label: str = ""


CHART_KINDS = ("lines", "curve", "bars", "frontier")


@dataclass(frozen=True)
class Chart:
    """How the front ends draw some of a check's samples without knowing the check: a TUI tab and a report image.

    ``series`` names the sample series drawn, one line each; a name ending (starting) in ``*`` takes
    every series with that prefix (suffix), the rest of its name labelling the line. Kinds: ``lines``, y over x (the
    points whose label is ``mark`` are marked); ``curve``, a line with markers per series, each
    point labelled; ``bars``, the latest y per x; ``frontier``, labelled points placed by two series
    (x of the first against y, then x of the second), the ones nothing beats on all three in green
    (checks declaring the same frontier ``id`` share one). Charts with the same ``figure`` are panels of
    one image named by it (titled by the first panel's ``figure_title``); ``tab`` is the TUI tab that shows them. ``headline``: a finding id whose
    title, once found, titles the chart; ``empty``: what a panel without points says.
    """

    id: str
    title: str
    series: tuple[str, ...]
    kind: str = "lines"
    x_label: str = ""
    y_label: str = ""
    tab: str = ""
    figure: str = ""
    log_y: bool = False
    mark: str = ""
    headline: str = ""
    empty: str = "not measured"
    figure_title: str = ""  # the title of the image its ``figure`` names (on the first panel's chart)

    def __post_init__(self) -> None:
        if self.kind not in CHART_KINDS:
            raise ValueError(f"{self.id}: chart kind must be one of {CHART_KINDS}, not {self.kind!r}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Chart":
        return cls(**{**data, "series": tuple(data["series"])})

    def matches(self, series: str) -> str | None:
        """The line label of ``series`` in this chart (its name, or what follows a ``*`` prefix); None when not drawn here."""
        for name in self.series:
            if name.endswith("*") and series.startswith(name[:-1]):
                return series[len(name) - 1:]
            if name.startswith("*") and series.endswith(name[1:]):
                return series[: len(series) - len(name) + 1]
            if series == name:
                return series
        return None


@dataclass(frozen=True)
class Metric:
    """A key number of this model, kept for baselines (``--baseline``) and budgets.

    ``name`` is stable across runs (e.g. ``serving_latency_ms``); the report keys it as
    ``check.name``. ``low``/``high`` give its 95 % interval when repeated runs allow one,
    which baselines use as the noise tolerance. ``better`` is "lower" or "higher".
    ``subject`` names what the value is of when that is itself a choice the check made (the
    recommended variant "float16", say): a baseline compares two values only when their
    subjects are equal, so a changed choice is never read as a regression.
    ``decision`` is what ``compare_in_turn`` decided when the value is such a comparison
    (``Decision.to_json()``): a gate acts on its outcome, not on the value. ``samples`` counts the
    independent measurements a value rests on (the processes of a ``*_per_reference`` ratio and its spread): a gate weighs it.
    """

    name: str
    value: float
    unit: str
    low: float | None = None
    high: float | None = None
    better: str = "lower"
    subject: str = ""
    decision: dict[str, Any] | None = None
    samples: int | None = None

    def __post_init__(self) -> None:
        if self.better not in ("lower", "higher"):
            raise ValueError("Metric.better must be 'lower' or 'higher'")


@dataclass(frozen=True)
class Measurements:
    """What a check's ``gather`` measured: plain, JSON-serialisable data its ``judge`` decides from.

    The report keeps it per check (``measurements`` in the JSON), so a verdict can be traced to
    its numbers and judged again without TensorFlow.
    """

    data: dict[str, Any]


@dataclass(frozen=True)
class Rule:
    """One finding's catalogue entry: its prose and estimates, stated once as data.

    ``title``, ``summary``, ``fix``, ``example`` and ``verify`` are templates whose ``$name``
    placeholders (``string.Template``, so code examples keep their braces) the judge fills with
    what was measured. ``severity`` is the default; ``severity_rule`` says in words when the judge
    decides another. ``minimum`` is the practical minimum effect the finding needs, in the user's
    terms ("" for facts that need none).
    """

    id: str
    severity: str
    title: str
    summary: str
    why: str
    fix: str
    effort: Effort
    example: str = ""
    verify: str = ""
    risk: Risk = field(default_factory=Risk)
    severity_rule: str = ""
    minimum: str = ""
    kind: str = "opportunity"  # one of FINDING_KINDS
    applies_if: str = ""
    fix_writer: str = ""  # what --fix-dir writes for this finding; its effort is then WRITTEN_FIX_EFFORT_SHARE of the catalogue's
    runtime: str = "tensorflow"  # one of RUNTIMES: where the saving is had
    per: str = "request"  # what a latency_ms saving is per (a template): "request", "$rows requests", "replica start"

    def __post_init__(self) -> None:
        if self.severity not in SEVERITIES:
            raise ValueError(f"{self.id}: severity must be one of {SEVERITIES}, not {self.severity!r}")
        if self.runtime not in RUNTIMES:
            raise ValueError(f"{self.id}: runtime must be one of {RUNTIMES}, not {self.runtime!r}")
        if self.kind not in FINDING_KINDS:
            raise ValueError(f"{self.id}: kind must be one of {FINDING_KINDS}, not {self.kind!r}")
        if self.kind == "advice" and not self.applies_if:
            raise ValueError(f"{self.id}: advice says when it applies (applies_if)")

    @property
    def check(self) -> str:
        return self.id.split("/", 1)[0]

    def finding(self, evidence: dict[str, Any], *, severity: str | None = None, savings: dict[str, Measure] | None = None,
                risk: Risk | None = None, effort: Effort | None = None, support: Support | None = None, **facts: Any) -> Finding:
        """The finding this rule describes, its templates filled with ``facts``; ``support``, an opportunity's evidence."""
        def fill(text: str) -> str:
            return Template(text).substitute(facts)

        effort = effort or self.effort
        if self.fix_writer:
            hours = effort.hours * WRITTEN_FIX_EFFORT_SHARE
            level = "minutes" if hours < 1 else "hours" if hours < 16 else "days"
            effort = Effort(level, hours, f"{effort.note} tfaudit --fix-dir writes {self.fix_writer}.")
        return Finding(
            id=self.id, check=self.check, severity=severity or self.severity, title=fill(self.title), summary=fill(self.summary),
            evidence=evidence, effort=effort, fix=Fix(fill(self.fix), fill(self.example)), savings=savings or {},
            risk=risk or self.risk, kind=self.kind, confidence=None if support is None else support.value,
            basis="" if support is None else support.basis, applies_if=fill(self.applies_if), fix_writer=self.fix_writer,
            why=self.why, verify=fill(self.verify), runtime=self.runtime, per=fill(self.per),
        )


UNDECIDED_FIX = ("Nothing to change yet: audit again with a larger --budget (more rounds before the cap) or on a quieter host; "
                 "the comparison then decides, or says that it is the same.")


def undecided(rule: Rule, what: str, decision_text: str, evidence: dict[str, Any], suffix: str = "") -> Finding:
    """What ``rule``'s comparison could not decide within the budget (``decision_text``: ``Decision.describe``): listed with
    what was measured, never a claim."""
    return Finding(
        id=rule.id + suffix, check=rule.check, severity="info", title=f"Undecided: {what}",
        summary=f"{decision_text}. Not decided within the budget, so no saving is claimed.",
        evidence={**evidence, "decision": decision_text}, effort=rule.effort, fix=Fix(UNDECIDED_FIX), kind="undecided",
        why=rule.why, runtime=rule.runtime,
    )


def catalogue(*rules: Rule) -> dict[str, Rule]:
    """A check's rules by finding id; an id given twice is an error."""
    by_id: dict[str, Rule] = {}
    for rule in rules:
        if rule.id in by_id:
            raise ValueError(f"finding id {rule.id} is in the catalogue twice")
        by_id[rule.id] = rule
    return by_id


@dataclass(frozen=True)
class Progress:
    fraction: float  # 0..1
    message: str = ""


class SkipCheck(Exception):
    """Raise from ``run`` when the check does not apply; the message is the reason."""


class HelperFailed(Exception):
    """A call in a helper process did not answer: it crashed, or ran into the check's time limit."""


class HelperCrashed(HelperFailed):
    """The helper process died (a native crash): a fact about what it ran, not a tool failure."""

    def __init__(self, message: str, signal: str):
        super().__init__(message)
        self.signal = signal


class HelperTimeout(HelperFailed):
    """A call ran into the check's deadline; its process was stopped."""


Yielded = Union[Progress, Sample, Finding, Metric, Measurements]


class Check:
    """Base class for checks. Subclasses set ``meta`` and implement ``run``.

    A check that yields its ``Measurements`` also sets ``judge`` (a static method: the
    measurements' dict → what ``run`` yields after them, without TensorFlow), so that
    ``tfaudit rejudge REPORT.json`` can decide again from the stored measurements.
    """

    meta: CheckMeta
    judge: Any = None
    charts: tuple[Chart, ...] = ()  # how front ends draw this check's samples

    def run(self, ctx: "Context") -> Iterator[Yielded]:  # pragma: no cover - interface
        raise NotImplementedError


@dataclass
class Context:
    """What a check is given inside its worker."""

    model: "LoadedModel"
    inputs: "InputFactory"
    budget: "Budget"
    options: dict[str, Any] = field(default_factory=dict)
    # Shared by this audit's checks (e.g. a conversion one check can reuse), removed when the
    # audit ends; None when a check runs on its own.
    scratch_dir: str | None = None
    # ``tfaudit data``: the user's tf.data pipeline (tfaudit.engine.pipeline.Pipeline); model and inputs are then None.
    pipeline: Any = None

    @property
    def inventory(self) -> dict[str, Any]:
        return self.pipeline.inventory() if self.pipeline is not None else self.model.inventory

    def timer(self, fn, *, warmup: int | None = None, repeats: int | None = None) -> "Timing":
        """Time ``fn()`` with warm-up and repetitions from the budget; see tfaudit.engine.measure."""
        from tfaudit.engine.measure import time_call

        return time_call(
            fn,
            warmup=self.budget.warmup if warmup is None else warmup,
            repeats=self.budget.repeats if repeats is None else repeats,
            max_seconds=self.budget.timing_seconds,
        )

    def sampler(self, interval_s: float = 0.05) -> "ResourceSampler":
        """A background sampler of RSS, anonymous memory and GPU memory (NVML, when present; ``options["nvml"]`` in tests)."""
        from tfaudit.engine.resources import ResourceSampler

        return ResourceSampler(interval_s=interval_s, nvml=self.options.get("nvml"))


def reset_peak_memory() -> bool:
    """Reset this process's resident high-water mark; False where the platform cannot."""
    from tfaudit.engine.resources import reset_peak

    return reset_peak()


def peak_anonymous_bytes() -> int | None:
    """Anonymous memory at this process's high-water mark since ``reset_peak_memory()``; None where it is not known."""
    from tfaudit.engine import resources

    return resources.peak_anonymous_bytes()


def gpu_memory_total_bytes(nvml: Any = None) -> int | None:
    """The largest GPU's memory (NVML), None without a GPU."""
    from tfaudit.engine.resources import gpu_status

    gpus = gpu_status(nvml).gpus
    return max(g.memory_total_bytes for g in gpus) if gpus else None


# --- Measuring, in the worker, and the statistics judges use anywhere ---------------------------------
# Each imports its engine module when called, so that importing the API stays cheap and TensorFlow-free.

def __getattr__(name: str) -> Any:
    """``Timing`` (per-call times of one measurement), ``Comparison`` (what switching saves, with intervals), ``Decision``
    (what ``compare_in_turn`` decided), ``Helper`` and ``UNSAFE_OPS``."""
    if name in ("Timing", "Comparison"):
        from tfaudit.engine import measure

        return getattr(measure, name)
    if name == "Decision":
        from tfaudit.engine import sequential

        return sequential.Decision
    if name == "Helper":
        from tfaudit.engine import helpers

        return getattr(helpers, name)
    if name == "UNSAFE_OPS":  # {kind: op names}: what the audit refuses without --trust-model, and what it reports
        from tfaudit.engine import trust

        return {"python": trust.PYTHON_OPS, "file-write": trust.FILE_WRITE_OPS, "network": trust.NETWORK_OPS,
                "file-read": trust.FILE_READ_OPS, "asset-read": trust.ASSET_READ_OPS}
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def time_call(fn, *, warmup: int, repeats: int, max_seconds: float) -> "Timing":
    """``fn()`` timed ``repeats`` times after ``warmup`` untimed calls (at least 5, stopping after ``max_seconds``)."""
    from tfaudit.engine.measure import time_call as timed

    return timed(fn, warmup=warmup, repeats=repeats, max_seconds=max_seconds)


def time_in_turn(*calls, warmup: int, max_seconds: float, max_rounds: int | None = None, precision: float | None = None,
                 min_seconds: float = 0.0) -> tuple["Timing", ...]:
    """Time ``calls`` call by call in turn, round after round, so every one sees the same moments of the host's contention;
    with ``precision`` (a share: 0.02), stop once ``min_seconds`` passed and every median's 95 % interval is within ± it."""
    from tfaudit.engine.host_index import time_interleaved

    return time_interleaved(*calls, warmup=warmup, max_seconds=max_seconds, max_rounds=max_rounds, precision=precision,
                            min_seconds=min_seconds)


def host_reference():
    """A fixed TensorFlow workload to time in turn with the model; its median is the ``HOST_INDEX_METRIC``."""
    from tfaudit.engine.host_index import reference_workload

    return reference_workload()


def process_ratios(in_turn: Sequence[dict[str, Any]]) -> list[dict[str, float]] | None:
    """Per call timed in turn with the host reference in several processes: the geometric mean of call ÷ reference
    (``ratio``), the sd of its log in % (``spread_pct``) and the ``processes``; None with fewer than two (pure: for judges)."""
    from tfaudit.engine.host_index import process_ratios as ratios

    return ratios(in_turn)


def compare(before: "Timing", after: "Timing", confidence: float = INTERVAL_LEVEL, seed: int = 0) -> "Comparison":
    """What switching from ``before`` to ``after`` saves (ms, %, speedup), with bootstrap intervals."""
    from tfaudit.engine.measure import compare as compared

    return compared(before, after, confidence, seed)


def bootstrap(values, statistic=None, confidence: float = 0.95, seed: int = 0) -> Measure:
    """``statistic`` (the median by default) of ``values`` with a percentile-bootstrap interval."""
    import numpy as np

    from tfaudit.engine.measure import bootstrap as resampled

    return resampled(values, np.median if statistic is None else statistic, confidence, seed)


def theil_sen(x, y, confidence: float = INTERVAL_LEVEL) -> Slope:
    """The slope of ``y`` against ``x``: the median of pairwise slopes, with Sen's rank-based interval (robust to outliers)."""
    from tfaudit.engine.measure import theil_sen as fitted

    return fitted(x, y, confidence)


def compare_in_turn(a, b, minimum: "PracticalMinimum | Sequence[PracticalMinimum]", *, warmup: int, max_seconds: float,
                    confidence: float = 0.95, calibration=None, self_timed: bool = False,
                    between_sd: float = 0.0) -> tuple["Decision", Any]:
    """Time ``b`` against ``a`` in ABBA rounds until a planned look decides (slower, faster, the same) or the cap (undecided).

    ``calibration`` (A again: a second load, the same call) widens the band to the bias identical sides show.
    ``self_timed``: each side returns its own time in ms (work in another process, timed there, without the pipe).
    ``between_sd``: the sides run in two processes, and a process's log speed spreads this much between processes
    (``process_ratios``' spread_pct / 100, measured in the run): the interval holds against another pair of processes.
    Returns the decision and the rounds (``.to_json()`` for the measurements, ``decide`` replays them).
    """
    from tfaudit.engine.sequential import compare_in_turn as compared

    return compared(a, b, minimum, warmup=warmup, max_seconds=max_seconds, confidence=confidence, calibration=calibration,
                    self_timed=self_timed, between_sd=between_sd)


def decide(rounds: dict[str, Any], minimum: PracticalMinimum, confidence: float = 0.95) -> "Decision":
    """The decision ``compare_in_turn`` reached, replayed from its rounds' JSON (pure: for judges)."""
    from tfaudit.engine.sequential import decide as decided

    return decided(rounds["a_ms"], rounds["b_ms"], minimum, confidence, rounds.get("calibration_ms"), rounds.get("between_sd", 0.0))


def rounds_of_calls(a_ms, b_ms, per_round: int = 5) -> dict[str, Any]:
    """Rounds for ``decide`` made of calls timed one by one in turn (``time_in_turn``), ``per_round`` pairs a round: how a
    record from before the rounds is judged."""
    from tfaudit.engine.sequential import rounds_of_calls as made

    return made(a_ms, b_ms, per_round)


def percentile(q: float):
    """The ``q``-th percentile as a ``bootstrap`` statistic (``bootstrap(values, percentile(99))``): resampled exactly, in O(rounds)."""
    from tfaudit.engine.measure import percentile as statistic

    return statistic(q)


def process_memory_bytes() -> int:
    """This process's resident memory now."""
    from tfaudit.engine.resources import process_memory_bytes as resident

    return resident()


def helper_process(env: dict[str, str] | None = None) -> "Helper":
    """A started helper process, where no op has run yet, at any time (see tfaudit.engine.helpers); ``env`` makes it a fresh interpreter with those variables."""
    from tfaudit.engine.helpers import Helper

    return Helper(env).start()


def budget_confidence(budget: str) -> float:
    """The confidence ``--budget`` decides every comparison at: the level of a record made at it (``Measurements`` keep
    the budget's name)."""
    from tfaudit.budget import BUDGETS

    return BUDGETS[budget].confidence


def record_confidence(record: dict, budget: str | None = None) -> float:
    """The confidence a stored record decides at: its own level, else the level of the budget it was measured at (its
    ``budget``, else ``budget``), else INTERVAL_LEVEL."""
    from tfaudit.budget import BUDGETS

    if "confidence" in record:
        return record["confidence"]
    name = record.get("budget") or budget
    return BUDGETS[name].confidence if name in BUDGETS else INTERVAL_LEVEL


def one_line(exc: BaseException) -> str:
    """An exception's first useful line (TensorFlow's run to pages of locations), clipped."""
    from tfaudit.engine.helpers import one_line as first_line

    return first_line(exc)


# --- Fixes: --fix-dir's artifacts ----------------------------------------------------------------------

def fix_dir(ctx: "Context") -> str | None:
    """Where fixed artifacts go (``--fix-dir``); None when the user asked for none."""
    return ctx.options.get("fix_dir")


def publish_fix(ctx: "Context", name: str, files: dict[str, str]) -> str:
    """Copy ``files`` ({name in the folder: source file or folder}) into FIX_DIR/name at once; the folder's path."""
    from tfaudit.engine.artifacts import publish

    root = fix_dir(ctx)
    if root is None:
        raise ValueError("publish_fix needs --fix-dir")
    return publish(root, name, files)


def with_artifact(finding: Finding, folder: str, what: str, made_by: str, verified: dict[str, Measure], measured: dict[str, Any],
                  remeasured: bool = True) -> Finding:
    """The finding with its written artifact attached, its savings corrected to what the artifact measured.

    ``remeasured`` False: a file nothing here can run (a TF Serving configuration); the savings stand as measured.
    """
    from tfaudit.engine.artifacts import attach

    return attach(finding, folder, what, made_by, verified, measured, remeasured)


# --- Loading and sampling outside a Context (helper processes; a GPU sweep point) ---------------------

def load_model(path: str, signature: str | None = None) -> "LoadedModel":
    """A SavedModel or .keras file loaded as the worker loads it (``serving_fn()`` gives the signature): for a helper process."""
    from tfaudit.engine.model import load_model as loaded

    return loaded(path, signature)


def import_user_modules(names: list[str]) -> None:
    """``--import``'s modules (they register custom ops), imported before a model is loaded; the load error names the one that failed."""
    from tfaudit.engine.model import import_modules

    import_modules(names)


def resource_sampler(interval_s: float = 0.05, nvml: Any = None) -> "ResourceSampler":
    """A background sampler of RSS, anonymous memory and GPU memory (NVML when present), where there is no Context to ask."""
    from tfaudit.engine.resources import ResourceSampler

    return ResourceSampler(interval_s=interval_s, nvml=nvml)
