"""Validation shared by several kinds' options (pure)."""

from __future__ import annotations

from orchestrator.schema import SchemaViolation, expect_mapping, expect_number


def ratio(raw, path: str, ops: tuple[str, ...], default: dict) -> dict:
    """``ratio: {op: share}`` over the kind's operations, shares adding up to more than 0."""
    shares = expect_mapping(raw.get("ratio") or default, f"{path}.ratio")
    for op, share in shares.items():
        if op not in ops:
            raise SchemaViolation(f"{path}.ratio.{op}", f"unknown operation {op!r}: expected {' or '.join(ops)}")
        expect_number(share, f"{path}.ratio.{op}", 0)
    if sum(shares.values()) <= 0:
        example = ", ".join(f"{op}: {share}" for op, share in default.items())
        raise SchemaViolation(f"{path}.ratio", f"expected shares that add up to more than 0, e.g. {{{example}}}")
    return dict(shares)
