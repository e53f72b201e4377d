"""Prometheus HTTP API over curl on the login node: commands and parsing (pure).

PromQL reaches Prometheus through ``curl --data-urlencode query=...`` with the
whole argument shell-quoted, so quotes, braces, ``=~`` and spaces arrive as
written. Range queries beyond Prometheus's 11,000 points per series are split
into chunks (all sent in one remote command) and stitched back together.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field

from orchestrator.cluster.shell import command
from orchestrator.errors import OrchestratorError
from orchestrator.times import parse_duration, parse_time  # noqa: F401  (re-exported for callers of the PromQL API)

MAX_POINTS = 11_000


class PrometheusError(OrchestratorError):
    """Prometheus answered with an error (bad PromQL, timeout, ...)."""


@dataclass(frozen=True)
class Series:
    labels: dict
    values: list[tuple[float, float]]  # (unix seconds, value); NaN stays NaN

    @property
    def name(self) -> str:
        return self.labels.get("__name__", "")


@dataclass(frozen=True)
class QueryResult:
    query: str
    result_type: str
    series: list[Series]
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        """Prometheus's own JSON shape (``value: [ts, "1"]`` for instant results, ``values`` for ranges),
        so tools that read the HTTP API read this too."""
        if self.result_type == "matrix":
            result = [{"metric": s.labels, "values": [[t, prom_str(v)] for t, v in s.values]} for s in self.series]
        else:
            result = [{"metric": s.labels, "value": [s.values[-1][0], prom_str(s.values[-1][1])]}
                      for s in self.series if s.values]
        return {"query": self.query, "resultType": self.result_type, "warnings": self.warnings, "result": result}

    def api_response(self) -> dict:
        """The answer as Prometheus' HTTP API gives it (``{"status": "success", "data": {...}}``)."""
        d = self.to_dict()
        doc = {"status": "success", "data": {"resultType": d["resultType"], "result": d["result"]}}
        if self.warnings:
            doc["warnings"] = list(self.warnings)
        return doc

    def __getitem__(self, key: str):
        """``result["data"]["result"]``, as code written against the HTTP API reads it (seed 001)."""
        return self.api_response()[key]


# -- requests ---------------------------------------------------------------------
# Commands below run inside the probe, where the shell variable $BASE holds
# http://<node>:<port> of the monitor, resolved on the cluster.
BASE = '"$BASE"'


def curl_query(promql: str, at: float | None = None, timeout: float = 30) -> str:
    args = ["--data-urlencode", f"query={promql}"]
    if at is not None:
        args += ["--data-urlencode", f"time={at:.3f}"]
    return (command("curl", "-sS", "-G", "--max-time", str(int(timeout))) + f" {BASE}/api/v1/query "
            + command(*args))


def range_chunks(start: float, end: float, step: float, max_points: int = MAX_POINTS) -> list[tuple[float, float]]:
    """Split [start, end] so that no chunk has more than max_points steps."""
    if step <= 0:
        raise ValueError("step must be positive")
    if end < start:
        raise ValueError("end is before start")
    chunks = []
    span = (max_points - 1) * step
    s = start
    while s <= end:
        e = min(s + span, end)
        chunks.append((s, e))
        s = e + step
    return chunks


def checked_range(start: float, end: float, step, max_points: int) -> tuple[list[tuple[float, float]], float]:
    """(chunks, step in seconds) for a range query, or a one-line error: the step must be a positive
    duration, the window must not end before it starts, and the points must stay below ``max_points``
    (config.yaml limits.range_points) — checked before anything is built or sent."""
    try:
        step_s = parse_duration(step)
    except ValueError as exc:
        raise OrchestratorError(f"--step: {exc}") from None
    if not step_s > 0:
        raise OrchestratorError(f"--step: expected a positive duration such as 15s, got {step!r}")
    if end < start:
        raise OrchestratorError("--from/--to: the window ends before it starts")
    points = (end - start) / step_s + 1
    if points > max_points:
        raise OrchestratorError(f"--from/--to/--step: {points:,.0f} points per series, more than the limit of "
                                f"{max_points:,} (config.yaml limits.range_points): widen --step or shorten the window")
    return range_chunks(start, end, step_s), step_s


def curl_range(promql: str, start: float, end: float, step: float, timeout: float = 60) -> str:
    return (command("curl", "-sS", "-G", "--max-time", str(int(timeout))) + f" {BASE}/api/v1/query_range "
            + command("--data-urlencode", f"query={promql}", "--data-urlencode", f"start={start:.3f}",
                      "--data-urlencode", f"end={end:.3f}", "--data-urlencode", f"step={step:g}"))


def joined(commands: list[str], mark) -> str:
    """Several curls in one remote command, each answer in its own ``response`` section."""
    return "; ".join(f"{mark.echo('response')}; {c}; echo" for c in commands)


# -- responses ----------------------------------------------------------------------
def _value(v) -> float:
    return float(v)  # Prometheus sends "NaN", "+Inf" as strings; float() reads them


def parse_response(text: str, query: str) -> QueryResult:
    if not text.strip():
        raise PrometheusError(f"no answer from Prometheus for {query!r} (is the monitor running?)")
    try:
        doc = json.loads(text)
    except json.JSONDecodeError:
        first = text.strip().splitlines()[0][:300]
        raise PrometheusError(f"Prometheus did not answer with JSON for {query!r}: {first}") from None
    if doc.get("status") != "success":
        raise PrometheusError(f"Prometheus rejected {query!r}: {doc.get('errorType', 'error')}: "
                              f"{doc.get('error', 'unknown error')}")
    data = doc["data"]
    rtype = data["resultType"]
    series: list[Series] = []
    if rtype == "matrix":
        series = [Series(r["metric"], [(float(t), _value(v)) for t, v in r["values"]]) for r in data["result"]]
    elif rtype == "vector":
        series = [Series(r["metric"], [(float(r["value"][0]), _value(r["value"][1]))]) for r in data["result"]]
    elif rtype in ("scalar", "string"):
        t, v = data["result"]
        series = [Series({}, [(float(t), _value(v) if rtype == "scalar" else math.nan)])]
    return QueryResult(query, rtype, series, list(doc.get("warnings", [])))


def stitch(parts: list[QueryResult]) -> QueryResult:
    """Merge chunked range results: series matched by labels, points in time order, no duplicates."""
    merged: dict[tuple, dict[float, float]] = {}
    labels: dict[tuple, dict] = {}
    warnings: list[str] = []
    for part in parts:
        warnings += [w for w in part.warnings if w not in warnings]
        for s in part.series:
            key = tuple(sorted(s.labels.items()))
            labels[key] = s.labels
            merged.setdefault(key, {}).update(dict(s.values))
    series = [Series(labels[k], sorted(v.items())) for k, v in merged.items()]
    return QueryResult(parts[0].query if parts else "", "matrix", series, warnings)


def prom_str(v: float) -> str:
    """A sample value as Prometheus writes it: ``1``, ``0.25``, ``NaN``, ``+Inf``."""
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    if v == int(v) and abs(v) < 1e15:
        return str(int(v))
    text = repr(v)
    if "e" in text:
        from decimal import Decimal
        text = format(Decimal(text), "f")
    return text


def format_value(v: float) -> str:
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    return f"{v:.6g}" if abs(v) < 1e15 else f"{v:.6e}"


def label_text(labels: dict) -> str:
    name = labels.get("__name__", "")
    rest = ", ".join(f'{k}="{v}"' for k, v in sorted(labels.items()) if k != "__name__")
    return f"{name}{{{rest}}}" if rest or not name else name
