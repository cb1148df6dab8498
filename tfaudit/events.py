"""Events: the contract between worker processes and the front ends (JSON lines).

A recorded stream (``--record FILE.jsonl``) replays into any front end without
TensorFlow, which is how the TUI and the reports are tested.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, fields
from typing import Any, ClassVar, Union

CHECK_STATUSES = ("passed", "findings", "skipped", "errored")


@dataclass(frozen=True)
class ModelLoaded:
    kind: ClassVar[str] = "model_loaded"
    inventory: dict[str, Any]
    environment: dict[str, Any]


@dataclass(frozen=True)
class LoadFailed:
    """The model or the --inputs file cannot be used: the audit cannot start (exit 2)."""

    kind: ClassVar[str] = "load_failed"
    message: str


@dataclass(frozen=True)
class CheckStarted:
    kind: ClassVar[str] = "check_started"
    check: str
    title: str
    charts: tuple[dict[str, Any], ...] = ()  # tfaudit.api.Chart descriptors, as dicts


@dataclass(frozen=True)
class CheckProgress:
    kind: ClassVar[str] = "check_progress"
    check: str
    fraction: float
    message: str = ""


@dataclass(frozen=True)
class SampleEmitted:
    kind: ClassVar[str] = "sample"
    check: str
    series: str
    x: float
    y: float
    label: str = ""


@dataclass(frozen=True)
class MetricEmitted:
    kind: ClassVar[str] = "metric"
    check: str
    name: str
    value: float
    unit: str
    low: float | None = None
    high: float | None = None
    better: str = "lower"
    subject: str = ""
    decision: dict | None = None
    samples: int | None = None


@dataclass(frozen=True)
class MeasurementsEmitted:
    """What a check's gather measured (``tfaudit.api.Measurements``), kept in the JSON report."""

    kind: ClassVar[str] = "measurements"
    check: str
    data: dict[str, Any]


@dataclass(frozen=True)
class FindingEmitted:
    kind: ClassVar[str] = "finding"
    check: str
    finding: dict[str, Any]


@dataclass(frozen=True)
class CheckFinished:
    kind: ClassVar[str] = "check_finished"
    check: str
    status: str
    duration_s: float
    error: str = ""
    stderr_tail: str = ""

    def __post_init__(self) -> None:
        if self.status not in CHECK_STATUSES:
            raise ValueError(f"status must be one of {CHECK_STATUSES}")


Event = Union[
    ModelLoaded, LoadFailed, CheckStarted, CheckProgress, SampleEmitted, MetricEmitted, MeasurementsEmitted, FindingEmitted,
    CheckFinished,
]
EVENT_TYPES: dict[str, type] = {
    cls.kind: cls
    for cls in (
        ModelLoaded, LoadFailed, CheckStarted, CheckProgress, SampleEmitted, MetricEmitted, MeasurementsEmitted, FindingEmitted,
        CheckFinished,
    )
}


def event_of(check: str, item: Any) -> Event:
    """The event that carries what ``check`` yielded (a ``tfaudit.api`` Finding, Sample, Progress, Metric or Measurements)."""
    from tfaudit.api import Finding, Measurements, Metric, Progress, Sample

    if isinstance(item, Finding):
        return FindingEmitted(check, item.to_dict())
    if isinstance(item, Sample):
        return SampleEmitted(check, item.series, item.x, item.y, item.label)
    if isinstance(item, Progress):
        return CheckProgress(check, item.fraction, item.message)
    if isinstance(item, Metric):
        return MetricEmitted(check, item.name, item.value, item.unit, item.low, item.high, item.better, item.subject, item.decision, item.samples)
    if isinstance(item, Measurements):
        return MeasurementsEmitted(check, item.data)
    raise TypeError(f"check yielded {type(item).__name__}; expected Finding, Sample, Metric, Measurements or Progress")


def json_safe(value: Any) -> Any:
    """NaN and infinities become None: JSON has no spelling for them."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if hasattr(value, "item") and callable(value.item):  # numpy scalars
        return json_safe(value.item())
    return value


def to_json(event: Event) -> str:
    return json.dumps(json_safe({"event": event.kind, **asdict(event)}), separators=(",", ":"), allow_nan=False)


def from_json(line: str) -> Event:
    data = json.loads(line)
    cls = EVENT_TYPES.get(data.pop("event", None))
    if cls is None:
        raise ValueError(f"not a tfaudit event: {line[:80]!r}")
    names = {f.name for f in fields(cls)}
    return cls(**{k: tuple(v) if k == "charts" else v for k, v in data.items() if k in names})
