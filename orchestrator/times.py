"""Durations and points in time as users write them (pure), and the one clock format we store."""

from __future__ import annotations

import re
import time
from datetime import datetime, timezone

DURATION_RE = re.compile(r"^(\d+(ms|s|m|h|d|w|y))+$")   # Prometheus' duration syntax: 15s, 1m30s, 24h

_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w|y)")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}


def parse_duration(text: str | float | int) -> float:
    """``15s``, ``1m30s``, ``2h``, or a number of seconds."""
    if isinstance(text, bool):
        raise ValueError(f"expected a duration such as 15s, 5m or 1h30m, got {text!r}")
    if isinstance(text, (int, float)):
        return float(text)
    s = str(text).strip()
    if re.fullmatch(r"\d+(\.\d+)?", s):
        return float(s)
    parts = _DURATION.findall(s)
    if not parts or "".join(n + u for n, u in parts) != s:
        raise ValueError(f"expected a duration such as 15s, 5m or 1h30m, got {text!r}")
    return sum(float(n) * _UNITS[u] for n, u in parts)


def parse_time(text: str | float | int, now: float | None = None) -> float:
    """Unix seconds, ISO 8601, ``now``, or relative like ``-15m``."""
    now = time.time() if now is None else now
    if isinstance(text, (int, float)):
        return float(text)
    s = str(text).strip()
    if s == "now":
        return now
    if s.startswith("-"):
        return now - parse_duration(s[1:])
    if re.fullmatch(r"\d+(\.\d+)?", s):
        return float(s)
    try:
        dt = datetime.fromisoformat(s.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"expected unix seconds, ISO 8601, 'now' or a relative time like -15m, got {text!r}") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return dt.timestamp()


def now_iso() -> str:
    """UTC now, to the second: what every record stores."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def iso(t: float | None) -> str:
    """Unix seconds as UTC ISO 8601 with milliseconds ("-" for none)."""
    return datetime.fromtimestamp(t, timezone.utc).isoformat(timespec="milliseconds") if t else "-"
