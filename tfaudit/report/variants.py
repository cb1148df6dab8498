"""Compression variants as the quantization and pruning checks report them (shared by the TUI and the report images)."""
from __future__ import annotations

from dataclasses import dataclass

from tfaudit.report.audit import AuditState

COMPRESSION_CHECKS = ("quantization", "pruning")


@dataclass
class Variant:
    name: str
    size_mb: float | None = None
    latency_ms: float | None = None
    fidelity_loss: float | None = None

    def metrics(self) -> tuple[float, float, float] | None:
        values = (self.size_mb, self.latency_ms, self.fidelity_loss)
        return None if None in values else values  # type: ignore[return-value]


def compression_variants(state: AuditState) -> list[Variant]:
    variants: dict[str, Variant] = {}
    for check in COMPRESSION_CHECKS:
        for x, y, label in state.samples.get((check, "variant_latency_vs_size"), []):
            variant = variants.setdefault(label, Variant(label))
            variant.latency_ms, variant.size_mb = x, y
        for x, y, label in state.samples.get((check, "variant_fidelity_vs_size"), []):
            variant = variants.setdefault(label, Variant(label))
            variant.fidelity_loss, variant.size_mb = x, y
    return list(variants.values())


def pareto_frontier(variants: list[Variant]) -> set[str]:
    """Names of the fully measured variants no other variant beats on size, latency and fidelity loss at once."""
    measured = [(v.name, v.metrics()) for v in variants if v.metrics() is not None]

    def dominates(a, b) -> bool:
        return all(x <= y for x, y in zip(a, b)) and any(x < y for x, y in zip(a, b))

    return {name for name, m in measured if not any(dominates(other, m) for _, other in measured)}
