"""A session's validity limits (``benchmark.validity``), parsed without numpy: a recipe is read
with these and no more (the assessment itself is ``analysis.validity``)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Validity:
    """The recipe's limits (``benchmark.validity``), with defaults a session rarely needs to change."""
    send_lag_p99: float = 0.1        # seconds: the 99th percentile of the send lag may not exceed it
    achieved_rate: float = 0.9       # the actual sends' rate at least this share of the schedule's
    error_rate: float = 0.01         # failed requests of the window at most this share
    cross_check: bool = True         # counts that disagree with the engine's make the session invalid

    def to_dict(self) -> dict:
        return {"send_lag_p99": self.send_lag_p99, "achieved_rate": self.achieved_rate,
                "error_rate": self.error_rate, "cross_check": self.cross_check}


def parse_validity(raw, path: str) -> Validity:
    from orchestrator.schema import SchemaViolation, check_keys, expect_mapping, expect_number
    from orchestrator.times import parse_duration
    raw = expect_mapping(raw or {}, path)
    check_keys(raw, ["send_lag_p99", "achieved_rate", "error_rate", "cross_check"], path)
    lag = Validity.send_lag_p99
    if "send_lag_p99" in raw:
        try:
            lag = parse_duration(raw["send_lag_p99"])
        except ValueError:
            raise SchemaViolation(f"{path}.send_lag_p99", f"expected a duration such as 100ms, got "
                                  f"{raw['send_lag_p99']!r}") from None
    out = {}
    for key in ("achieved_rate", "error_rate"):
        if key in raw:
            v = expect_number(raw[key], f"{path}.{key}", 0)
            if v > 1:
                raise SchemaViolation(f"{path}.{key}", f"expected a share between 0 and 1, got {v!r}")
            out[key] = v
    check = raw.get("cross_check", True)
    if not isinstance(check, bool):
        raise SchemaViolation(f"{path}.cross_check", f"expected true or false, got {check!r}")
    return Validity(send_lag_p99=lag, cross_check=check, **out)


def validity_from(doc: dict | None) -> Validity:
    """The limits a report recorded (a re-render judges by the same)."""
    return Validity(**doc) if doc else Validity()
