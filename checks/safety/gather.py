"""What the safety check measures: the serving graph's op histogram, from the inventory (nothing runs)."""
from __future__ import annotations

from typing import Any


def gather(ctx) -> dict[str, Any]:
    """``signature``: the audited signature; ``ops``: op type → count in its graph, nested functions included."""
    return {"signature": ctx.inventory.get("signature", "serving_default"), "ops": dict(ctx.inventory.get("ops", {}))}
