"""Variants on a frontier: the points ``frontier`` charts place (tfaudit.api.Chart), shared by the TUI and the report images.

A check declares one ``frontier`` chart per axis (the compression checks: latency and fidelity
loss, each against size); every check's samples of those series place the same labelled variants,
so quantization's and pruning's variants share one frontier.
"""
from __future__ import annotations

from tfaudit.api import Chart
from tfaudit.report.audit import AuditState

Placed = dict[str, list]  # label → [x on each frontier chart …, y]; None where not measured yet


def frontier_charts(state: AuditState) -> list[Chart]:
    """The frontier charts the checks declared, each once, in order."""
    seen: dict[str, Chart] = {}
    for _, chart in state.charts():
        if chart.kind == "frontier":
            seen.setdefault(chart.id, chart)
    return list(seen.values())


def frontier_points(state: AuditState, charts: list[Chart]) -> Placed:
    placed: Placed = {}
    for index, chart in enumerate(charts):
        for points in state.chart_points("", chart).values():
            for x, y, label in points:
                point = placed.setdefault(label, [None] * (len(charts) + 1))
                point[index], point[-1] = x, y
    return placed


def pareto_frontier(placed: Placed) -> set[str]:
    """Labels of the fully measured points that no other beats on every coordinate at once (lower is better)."""
    full = {label: point for label, point in placed.items() if None not in point}

    def dominates(a, b) -> bool:
        return all(x <= y for x, y in zip(a, b)) and any(x < y for x, y in zip(a, b))

    return {label for label, point in full.items() if not any(dominates(other, point) for other in full.values())}
