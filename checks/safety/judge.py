"""Which ops reach beyond the tensors: one finding per kind found (pure: no TensorFlow)."""
from __future__ import annotations

from typing import Any, Iterator

from tfaudit.api import UNSAFE_OPS, Finding

from .catalogue import RULES

OPS_BY_FINDING = {f"safety/{kind}-ops": ops for kind, ops in UNSAFE_OPS.items()}  # python, file-write, network refused at load


def judge(measured: dict[str, Any]) -> Iterator[Finding]:
    ops, signature = measured["ops"], measured["signature"]
    for finding_id, names in OPS_BY_FINDING.items():
        found = {op: ops[op] for op in sorted(names & set(ops))}
        if found:
            yield RULES[finding_id].finding(
                {"signature": signature, "ops": found},
                signature=signature, listed=", ".join(f"`{op}` ×{count}" for op, count in found.items()),
                signature_repr=repr(signature), wanted=repr(set(found)),
            )
