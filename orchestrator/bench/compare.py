"""`report compare A B` and `rerun SESSION`: regressions gated by noise, exact reruns."""

from __future__ import annotations

import json
from pathlib import Path

from orchestrator.bench.experiments import Comparison, compare, interval_noise, quantile_noise
from orchestrator.errors import OrchestratorError
from orchestrator.bench.records import RequestTable

DEFAULT_THRESHOLDS = {"latency_p99": 0.10, "throughput": 0.10}
NOISE_KPIS = ["throughput", "output_tokens_per_second", "latency_p50", "latency_p95", "latency_p99", "ttft_p50",
              "ttft_p99", "itl_p50", "itl_p99"]


def _load(session_dir: Path) -> tuple[dict, Path]:
    report = session_dir / "report.json"
    if not report.exists():
        raise OrchestratorError(f"{session_dir}: no report.json: not a session directory")
    return json.loads(report.read_text()), session_dir / "requests.jsonl"


def _units(report: dict) -> dict[str, tuple[dict, list[dict], dict]]:
    """{point label or '': (kpis, records, window)} of a session."""
    if report.get("point_kpis"):
        return {label: ({k["kpi"]: k["value"] for k in kpis}, None, None)
                for label, kpis in report["point_kpis"].items()}
    return {"": ({k["kpi"]: k["value"] for k in report["kpis"]}, None, report["window"])}


def compare_sessions(dir_a: Path, dir_b: Path, thresholds: dict | None = None) -> tuple[list[Comparison], list[str]]:
    """Rows per KPI (per point for sweeps); and the unit labels compared."""
    thresholds = DEFAULT_THRESHOLDS if thresholds is None else thresholds
    rep_a, rec_a = _load(dir_a)
    rep_b, rec_b = _load(dir_b)
    ua, ub = _units(rep_a), _units(rep_b)
    common = [u for u in ua if u in ub]
    if not common:
        raise OrchestratorError(f"nothing to compare: {dir_a} has points {sorted(ua)}, {dir_b} has {sorted(ub)}")
    rows = []
    for unit in common:
        ka, kb = ua[unit][0], ub[unit][0]
        na = _noise(rep_a, rec_a, unit)
        nb = _noise(rep_b, rec_b, unit)
        for c in compare(ka, kb, na, nb, thresholds):
            rows.append(Comparison(f"{unit}/{c.kpi}" if unit else c.kpi, c.a, c.b, c.change, c.noise, c.threshold,
                                   c.verdict))
    return rows, common


def _noise(report: dict, requests: Path, unit: str) -> dict:
    if unit:
        window = next((p for p in report["manifest"].get("points", []) if p["label"] == unit), {}).get("window")
    else:
        window = report["window"]
    with RequestTable.from_jsonl(requests, point=unit or None) as table:
        if not window or not len(table):
            return {}
        out = {}
        for k in NOISE_KPIS:  # the larger of the spread over intervals and a percentile's own uncertainty
            found = [v for v in (interval_noise(table, window["start"], window["end"], k),
                                 quantile_noise(table, window["start"], window["end"], k)) if v is not None]
            out[k] = max(found) if found else None
        return out
