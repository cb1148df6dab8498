"""Project configuration: ``[tool.tfaudit]`` in ./pyproject.toml, or ``--config FILE.toml``.

    [tool.tfaudit]
    budget = "quick"
    fail_on = "high"
    checks = ["retracing", "memory"]
    max_fidelity_loss = 0.02
    import = ["my_ops"]             # modules that register the model's custom ops (--import)
    isolate = "fresh"               # a new interpreter per check instead of forks of a warm one
    trust_model = true              # audit models that write files, call Python or use unknown op libraries (--trust-model)
    profile = "server"              # what the ranking prices savings in: server, edge or batch (--profile)
    traffic = 500                   # server: requests a second (--traffic)

    [tool.tfaudit.prices]           # server: what a core and a GB cost (defaults: tfaudit.report.profiles.Prices)
    core_hour = 0.04
    gb_hour = 0.005
    scale_ups_per_day = 48
    currency = "€"

    [tool.tfaudit.edge_weights]     # edge: points per MB of download, per ms of latency, per MB of RAM
    download_mb = 2.0

    [tool.tfaudit.budgets]          # the worst acceptable value of each metric
    "retracing.serving_latency_ms" = 5.0
    "quantization.tflite_float32_size_bytes" = 20_000_000

A ``--config`` file may hold the same table as ``[tool.tfaudit]``, ``[tfaudit]``, or at
its top level. Command-line options win over the file.
"""
from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from typing import Any

from tfaudit.api import SEVERITIES
from tfaudit.budget import BUDGETS
from tfaudit.report.profiles import EDGE_KEYS, PRICE_KEYS, PROFILES

OPTION_TYPES: dict[str, tuple[type, ...]] = {
    "budget": (str,),
    "fail_on": (str,),
    "checks": (list,),
    "skip": (list,),
    "max_fidelity_loss": (int, float),
    "memory_limit": (int,),
    "signature": (str,),
    "import": (list,),
    "isolate": (str,),
    "latency_budget_ms": (int, float),
    "device": (str,),
    "trust_model": (bool,),
    "profile": (str,),
    "traffic": (int, float),
}
TABLES = {"prices": PRICE_KEYS, "edge_weights": EDGE_KEYS}  # sub-tables besides budgets, and their keys
ISOLATION = ("fork", "fresh")
# Metrics whose meaning changed with their name: a budget on the old name must be set again, not carried over.
RENAMED_METRICS = {
    "memory.peak_rss_mb": "memory.peak_memory_mb (anonymous memory, without TensorFlow's mapped libraries: lower than RSS)",
}
CHOICES = {"budget": tuple(BUDGETS), "fail_on": (*SEVERITIES[:-1], "never"), "isolate": ISOLATION, "profile": PROFILES}


class ConfigError(Exception):
    """A configuration file that cannot be used; the message is one line."""


@dataclass
class Config:
    options: dict[str, Any] = field(default_factory=dict)
    budgets: dict[str, float] = field(default_factory=dict)
    source: str | None = None
    prices: dict[str, Any] = field(default_factory=dict)
    edge_weights: dict[str, float] = field(default_factory=dict)


def _table(data: dict[str, Any], explicit: bool) -> dict[str, Any] | None:
    if isinstance(data.get("tool"), dict) and "tfaudit" in data["tool"]:
        return data["tool"]["tfaudit"]
    if "tfaudit" in data:
        return data["tfaudit"]
    return data if explicit else None


def load_config(path: str | None = None, directory: str = ".") -> Config:
    """The --config file, else ./pyproject.toml's [tool.tfaudit], else no configuration."""
    explicit = path is not None
    path = path or os.path.join(directory, "pyproject.toml")
    if not os.path.isfile(path):
        if explicit:
            raise ConfigError(f"--config file not found: {path}")
        return Config()
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from None
    table = _table(data, explicit)
    if table is None:
        return Config()
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: [tool.tfaudit] must be a table")
    return _validate(dict(table), path)


def _validate(table: dict[str, Any], path: str) -> Config:
    budgets = table.pop("budgets", {})
    tables = {name: table.pop(name, {}) for name in TABLES}
    unknown = sorted(set(table) - set(OPTION_TYPES))
    if unknown:
        raise ConfigError(f"{path}: unknown key {unknown[0]!r} in [tool.tfaudit]; known: budgets, {', '.join([*TABLES, *OPTION_TYPES])}")
    for name, keys in TABLES.items():
        if not isinstance(tables[name], dict):
            raise ConfigError(f"{path}: [tool.tfaudit.{name}] must be a table")
        for key, value in tables[name].items():
            if key not in keys:
                raise ConfigError(f"{path}: unknown key {key!r} in [tool.tfaudit.{name}]; known: {', '.join(keys)}")
            wanted = str if key == "currency" else (int, float)
            if not isinstance(value, wanted) or isinstance(value, bool) or (wanted is not str and value < 0):
                raise ConfigError(f"{path}: {name}.{key} = {value!r} must be {'a string' if wanted is str else 'a number at least 0'}")
    if "traffic" in table and not (isinstance(table["traffic"], (int, float)) and table["traffic"] > 0):
        raise ConfigError(f"{path}: traffic = {table['traffic']!r} must be a positive number of requests a second")
    for key, value in table.items():
        if not isinstance(value, OPTION_TYPES[key]) or (isinstance(value, bool) and bool not in OPTION_TYPES[key]):
            raise ConfigError(f"{path}: {key} = {value!r} has the wrong type")
        if key == "import" and not all(isinstance(name, str) and name for name in value):
            raise ConfigError(f"{path}: import must be a list of module names")
        if key in CHOICES and value not in CHOICES[key]:
            raise ConfigError(f"{path}: {key} = {value!r}; choose one of {', '.join(CHOICES[key])}")
    if not isinstance(budgets, dict):
        raise ConfigError(f"{path}: [tool.tfaudit.budgets] must be a table of metric = worst acceptable value")
    for metric, limit in budgets.items():
        if metric in RENAMED_METRICS:
            raise ConfigError(f"{path}: budget {metric!r} is now {RENAMED_METRICS[metric]}; set that budget again")
        if "." not in metric:
            raise ConfigError(f"{path}: budget {metric!r} must name a metric as check.name, e.g. retracing.serving_latency_ms")
        if not isinstance(limit, (int, float)) or isinstance(limit, bool):
            raise ConfigError(f"{path}: budget {metric!r} = {limit!r} must be a number")
    return Config(options=table, budgets={k: float(v) for k, v in budgets.items()}, source=path, prices=tables["prices"],
                  edge_weights={k: float(v) for k, v in tables["edge_weights"].items()})
