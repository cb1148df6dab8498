"""Check discovery through the ``tfaudit.checks`` entry-point group.

Built-in checks come through the same door as third-party ones. Loading a
check class must not import TensorFlow (checks import it inside ``run``).
"""
from __future__ import annotations

from dataclasses import dataclass
from importlib import import_module
import os
from importlib.metadata import entry_points

from tfaudit.engine.launch import adopt_user_path

ENTRY_POINT_GROUP = "tfaudit.checks"
DATA_ENTRY_POINT_GROUP = "tfaudit.data_checks"  # checks of an input pipeline (tfaudit data), not of a model
EXTRA_CHECKS_VARIABLE = "TFAUDIT_EXTRA_CHECKS"  # "module:Class,module:Class": checks under development
BUILTIN_DISTRIBUTION = "tfaudit"


@dataclass(frozen=True)
class CheckSpec:
    id: str
    title: str
    description: str
    target: str  # "module:Class", imported again inside the worker
    origin: str  # "built-in" or "plugin <distribution>"
    load_error: str = ""
    charts: tuple[dict, ...] = ()  # the check's Chart descriptors, as dicts (they travel in events)


def load_target(target: str):
    module_name, _, attr = target.partition(":")
    obj = import_module(module_name)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


def spec_for(target: str, origin: str = "built-in", fallback_id: str = "") -> CheckSpec:
    try:
        check = load_target(target)
        meta, charts = check.meta, tuple(chart.to_dict() for chart in getattr(check, "charts", ()))
    except Exception as exc:  # a broken plugin must not take the others down
        name = fallback_id or target
        return CheckSpec(name, name, "", target, origin, load_error=f"{type(exc).__name__}: {exc}")
    return CheckSpec(meta.id, meta.title, meta.description, target, origin, charts=charts)


def discover_checks(group: str = ENTRY_POINT_GROUP) -> list[CheckSpec]:
    specs = []
    for ep in entry_points(group=group):
        dist = ep.dist.name if ep.dist is not None else "unknown"
        origin = "built-in" if dist == BUILTIN_DISTRIBUTION else f"plugin {dist}"
        specs.append(spec_for(ep.value, origin, fallback_id=ep.name))
    if group != ENTRY_POINT_GROUP:
        return specs
    if os.environ.get(EXTRA_CHECKS_VARIABLE):
        adopt_user_path()  # the user's checks import from the user's folders, after the installation (tfaudit.engine.launch)
    for target in filter(None, os.environ.get(EXTRA_CHECKS_VARIABLE, "").split(",")):
        specs.append(spec_for(target.strip(), f"from {EXTRA_CHECKS_VARIABLE}"))
    unique = {spec.id: spec for spec in specs}  # an editable + regular install can list one twice
    return sorted(unique.values(), key=run_order)


BUILTIN_ORDER = ("safety", "retracing", "memory", "quantization", "pruning", "serving")  # fast and static first


def run_order(spec: CheckSpec) -> tuple:
    builtin = spec.origin == "built-in"
    position = BUILTIN_ORDER.index(spec.id) if spec.id in BUILTIN_ORDER else len(BUILTIN_ORDER)
    return (not builtin, position, spec.id)
