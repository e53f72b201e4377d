"""`report compare A B` and `rerun SESSION`: regressions gated by noise, exact reruns."""

from __future__ import annotations

import json
from pathlib import Path

from orchestrator.analysis.experiments import Comparison, compare, interval_noise, quantile_noise
from orchestrator.errors import OrchestratorError
from orchestrator.analysis.records import RequestTable

DEFAULT_THRESHOLDS = {"latency_p99": 0.10, "throughput": 0.10}
NOISE_KPIS = ["throughput", "output_tokens_per_second", "latency_p50", "latency_p95", "latency_p99", "ttft_p50",
              "ttft_p99", "itl_p50", "itl_p99"]


def _load(path: Path) -> tuple[dict, Path]:
    """A session directory's report and records; or a reference tool's own result (a `vllm bench serve
    --save-detailed` JSON, or aiperf's profile_export.jsonl or its artifact folder), whose per-request
    results are measured with the same definitions as a session's."""
    report = path / "report.json"
    if report.exists():
        return json.loads(report.read_text()), path / "requests.jsonl"
    if path.is_dir() and not any(path.rglob("profile_export.jsonl")):
        raise OrchestratorError(f"{path}: no report.json: not a session directory (nor an aiperf artifact folder)")
    return _reference_result(path)


_TEMP: list = []   # the converted records of reference results, removed when the process ends


def _reference_result(path: Path) -> tuple[dict, Path]:
    import tempfile

    from orchestrator.analysis.kpi import Window, client_kpis
    from orchestrator.oncluster.formats import read_result
    try:
        records = read_result(path)
    except (ValueError, KeyError, TypeError, json.JSONDecodeError) as exc:
        raise OrchestratorError(f"{path}: not a session, a `vllm bench serve` result or an aiperf export: {exc}") from None
    if not records:
        raise OrchestratorError(f"{path}: no requests in it")
    _TEMP.append(tempfile.TemporaryDirectory(prefix="orch-compare-"))
    jsonl = Path(_TEMP[-1].name) / "requests.jsonl"
    measured = [r for r in records if not r["warmup"]] or records
    window = Window(min(r["start"] for r in measured), max(r["start"] + (r["latency_s"] or 0) for r in measured))
    with RequestTable.from_records(records, jsonl) as table:
        kpis = client_kpis(table, window)
    return {"kpis": [k.to_dict() for k in kpis], "window": {"start": window.start, "end": window.end}}, jsonl


def _units(report: dict) -> dict[str, tuple[dict, list[dict], dict]]:
    """{point label or '': (kpis, records, window)} of a session."""
    if report.get("point_kpis"):
        return {label: ({k["kpi"]: k["value"] for k in kpis}, None, None)
                for label, kpis in report["point_kpis"].items()}
    return {"": ({k["kpi"]: k["value"] for k in report["kpis"]}, None, report["window"])}


def compare_sessions(dir_a: Path, dir_b: Path, thresholds: dict | None = None
                     ) -> tuple[list[Comparison], list[str], list[str]]:
    """Rows per KPI (per point for sweeps); the unit labels compared; and why no verdict was called
    ("A is invalid: ..."), when either session is invalid."""
    thresholds = DEFAULT_THRESHOLDS if thresholds is None else thresholds
    rep_a, rec_a = _load(dir_a)
    rep_b, rec_b = _load(dir_b)
    ua, ub = _units(rep_a), _units(rep_b)
    common = [u for u in ua if u in ub]
    if not common:
        raise OrchestratorError(f"nothing to compare: {dir_a} has points {sorted(ua)}, {dir_b} has {sorted(ub)}")
    refused = invalid_sides({"A": rep_a, "B": rep_b})
    rows = []
    for unit in common:
        ka, kb = ua[unit][0], ub[unit][0]
        na = _noise(rep_a, rec_a, unit)
        nb = _noise(rep_b, rec_b, unit)
        for c in compare(ka, kb, na, nb, thresholds):
            # an invalid session measured another load than it reports: no verdict is called on it
            verdict = "not judged (invalid session)" if refused else c.verdict
            rows.append(Comparison(f"{unit}/{c.kpi}" if unit else c.kpi, c.a, c.b, c.change, c.noise, c.threshold,
                                   verdict))
    return rows, common, refused


def invalid_sides(reports: dict[str, dict]) -> list[str]:
    """'A: why' for each session whose report says it is invalid (a reference tool's result has no say)."""
    return [f"{side} is invalid: {'; '.join(rep.get('invalid_reasons') or ['(no reason recorded)'])}"
            for side, rep in reports.items() if rep.get("valid") is False]


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
