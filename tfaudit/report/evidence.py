"""A finding's evidence as readable tables: no JSON in any cell (the JSON report keeps the raw numbers).

- Scalars go to one Measure / Value table; a list of scalars reads ``16, 32, 64``.
- A list of rows, or a mapping of names to rows (variants, sparsities, patterns), becomes a table
  of its own: one row per item, the name first.
- Units move into the header (``latency_ms`` → "latency (ms)", ``size_bytes`` → "size", in KiB/MiB).
- An interval joins its value: ``p50_ms`` with ``p50_ci_ms`` reads ``0.52 [0.50–0.55]``; a timing
  summary (``median_ms``, ``median_ci_ms``, p10, p90, n) reads ``0.52 ms [0.50–0.55] (p10 0.49, p90 0.61, n 50)``.
- Anything nested deeper inside a cell reads ``name value · name value``.
"""
from __future__ import annotations

from typing import Any

from tfaudit.report.format import human_bytes

UNITS = (("_bytes", ""), ("_ms", "ms"), ("_pct", "%"), ("_mb", "MB"), ("_s", "s"), ("_kib", "KiB"))
CI_MARKERS = ("_ci95", "_ci")


def is_scalar(value: Any) -> bool:
    return value is None or isinstance(value, (str, int, float, bool))


def is_rows(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(row, dict) for row in value)


def is_table(value: Any) -> bool:
    """A mapping of names to rows: {"float32": {...}, "int8": {...}}."""
    return isinstance(value, dict) and len(value) > 0 and all(isinstance(v, dict) and v for v in value.values()) and not is_timing(value)


def is_timing(value: Any) -> bool:
    return isinstance(value, dict) and "median_ms" in value and not isinstance(value["median_ms"], dict)


def is_interval(value: Any) -> bool:
    return isinstance(value, list) and len(value) == 2 and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)


def number(value: float) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}" if abs(value) >= 10_000 else str(value)
    return f"{value:.4g}"


def header(key: str) -> str:
    for suffix, unit in UNITS:
        if key.endswith(suffix) and len(key) > len(suffix):
            name = key[: -len(suffix)].replace("_", " ")
            return f"{name} ({unit})" if unit else name
    return key.replace("_", " ")


def ci_base(key: str) -> str | None:
    for marker in CI_MARKERS:
        if marker in key:
            return key.replace(marker, "", 1)
    return None


def timing_text(timing: dict) -> str:
    text = f"{number(timing['median_ms'])} ms"
    ci = timing.get("median_ci_ms")
    if is_interval(ci):
        text += f" [{number(ci[0])}–{number(ci[1])}]"
    extra = [f"{name} {number(timing[key])}" for key, name in (("p10_ms", "p10"), ("p90_ms", "p90"), ("n", "n")) if key in timing]
    return text + (f" ({', '.join(extra)})" if extra else "")


def text(key: str, value: Any) -> str:
    """One cell: never JSON."""
    if value is None:
        return "—"
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float)):
        return human_bytes(value) if key.endswith("_bytes") and not isinstance(value, bool) else number(value)
    if is_timing(value):
        return timing_text(value)
    if is_interval(value) and ci_base(key) is not None:
        return f"[{number(value[0])}–{number(value[1])}]"
    if isinstance(value, (list, tuple)):
        return ", ".join(text(key, v) for v in value) if value else "none"
    if isinstance(value, dict):
        return " · ".join(f"{k} {text(k, v)}" if is_scalar(v) else f"{k} ({text(k, v)})" for k, v in merged(value).items()) or "none"
    return str(value)


def merged(row: dict) -> dict:
    """The row with each interval joined to its value: {"p50_ms": 0.5, "p50_ci_ms": [0.4, 0.6]} → {"p50_ms": "0.5 [0.4–0.6]"}."""
    out = dict(row)
    for key, value in row.items():
        base = ci_base(key)
        if base and base in out and is_interval(value) and isinstance(out[base], (int, float)):
            out[base] = f"{text(base, out[base])} [{number(value[0])}–{number(value[1])}]"
            del out[key]
    return out


def markdown_table(columns: list[str], rows: list[list[str]]) -> list[str]:
    cell = lambda value: str(value).replace("|", "\\|").replace("\n", " ")  # noqa: E731
    lines = ["| " + " | ".join(cell(c) for c in columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    return lines + ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows] + [""]


def flattened(row: dict) -> dict:
    """One level of nesting into columns: {"fidelity": {"cosine": 1}} → {"fidelity cosine": 1}."""
    out = {}
    for key, value in merged(row).items():
        if isinstance(value, dict) and value and not is_timing(value):
            out.update({f"{key} {sub}": v for sub, v in merged(value).items()})
        else:
            out[key] = value
    return out


def rows_table(rows: list[dict], name_column: str | None = None, names: list[str] | None = None) -> list[str]:
    rows = [flattened(r) for r in rows]
    keys = list(dict.fromkeys(k for r in rows for k in r))
    columns = ([name_column] if name_column is not None else []) + [header(k) for k in keys]
    body = [([names[i]] if names else []) + [text(k, r[k]) if k in r else "" for k in keys] for i, r in enumerate(rows)]
    return markdown_table(columns, body)


def evidence_lines(evidence: dict, prefix: str = "") -> list[str]:
    scalars, sections = [], []
    for key, value in merged(evidence).items():
        name = f"{prefix}{key}"
        if is_rows(value):
            sections += [f"*{header(name)}*", ""] + rows_table(value)
        elif is_table(value):
            sections += [f"*{header(name)}*", ""] + rows_table(list(value.values()), name_column=header(key), names=[str(k) for k in value])
        elif isinstance(value, dict) and any(is_rows(v) or is_table(v) for v in value.values()):
            sections += evidence_lines(value, prefix=f"{name} · ")
        else:
            scalars.append([header(name), text(key, value)])
    return (markdown_table(["Measure", "Value"], scalars) if scalars else []) + sections
