"""Did the session deliver the load it was asked for, and can its numbers be trusted? (pure)

A benchmark whose client could not keep to its schedule measured a lighter load
than the one it reports; one whose requests mostly failed, or whose counts the
engine contradicts, measured something else. Such a session is **invalid**: the
verdict heads report.json (``valid``, ``invalid_reasons``) and the report, and
``bench run`` exits 3.

Delivery is read from the records of open-loop clients: each has the time the
schedule meant to send it (``scheduled``), when it was sent (``start``), and how
long it waited for a free slot of the client's concurrency (``queued_s``). The
send lag is ``start - scheduled``; the achieved rate is the rate of the actual
sends over the span they took, against the schedule's own rate over its span.
"""

from __future__ import annotations

import numpy as np

from orchestrator.analysis.kpi import _in_window
from orchestrator.analysis.limits import Validity
from orchestrator.analysis.quantiles import summarise
from orchestrator.analysis.records import RequestTable

CONNECTION_ERRORS = ("Connection", "refused", "reset", "timed out", "Timeout", "RemoteDisconnected", "BrokenPipe")


def delivery(table: RequestTable, window, asked_rate: float | None, limits: Validity,
             concurrency: int | None = None) -> dict | None:
    """How the open-loop clients kept to their schedule over the window; None for a closed loop
    (no schedule: the clients keep their slots busy)."""
    n = 0
    s_min = a_min = np.inf
    s_max = a_max = -np.inf
    late = late_queued = 0
    conn_errors = 0
    for c in table.chunks(["start", "scheduled", "queued_s", "warmup", "ok", "error"]):
        m = _in_window(c, window) & ~np.isnan(c["scheduled"])
        if not m.any():
            continue
        n += int(m.sum())
        s, a = c["scheduled"][m], c["start"][m]
        s_min, s_max = min(s_min, float(s.min())), max(s_max, float(s.max()))
        a_min, a_max = min(a_min, float(a.min())), max(a_max, float(a.max()))
        lag = a - s
        is_late = lag > limits.send_lag_p99
        late += int(is_late.sum())
        q = c["queued_s"][m]
        late_queued += int((is_late & (q > 0)).sum())
        failed = m & (c["ok"] == 0)
        for e in np.unique(c["error"][failed]).tolist():
            if e >= 0 and any(w in table.errors[e] for w in CONNECTION_ERRORS):
                conn_errors += int((failed & (c["error"] == e)).sum())
    if n == 0:
        return None

    def lags():
        for c in table.chunks(["start", "scheduled", "warmup"]):
            m = _in_window(c, window) & ~np.isnan(c["scheduled"])
            yield np.maximum(c["start"][m] - c["scheduled"][m], 0.0)
    lag = summarise(lags, [0.5, 0.99])
    schedule_rate = (n - 1) / (s_max - s_min) if n > 1 and s_max > s_min else None
    achieved = (n - 1) / (a_max - a_min) if n > 1 and a_max > a_min else None
    ratio = achieved / schedule_rate if achieved is not None and schedule_rate else None
    out = {"requests": n, "asked_rate": asked_rate, "schedule_rate": schedule_rate, "achieved_rate": achieved,
           "achieved_ratio": ratio, "send_lag_p50": lag.percentiles.get(0.5), "send_lag_p99": lag.percentiles.get(0.99),
           "send_lag_max": lag.max, "late": late, "late_waiting_for_a_slot": late_queued,
           "connection_errors": conn_errors, "cause": None}
    short = ratio is not None and ratio < limits.achieved_rate
    lagging = (out["send_lag_p99"] or 0.0) > limits.send_lag_p99
    if short or lagging:
        out["cause"] = _cause(out, concurrency)
    return out


def _cause(d: dict, concurrency: int | None) -> str:
    """Why the client fell behind: the slot it waited for, the connections, or its own CPU."""
    if d["late"] and d["late_waiting_for_a_slot"] >= d["late"] / 2:
        cap = f"{concurrency} " if concurrency else ""
        return (f"the client's concurrency cap: {d['late_waiting_for_a_slot']} of the {d['late']} late requests "
                f"waited for one of its {cap}slots (every slot held a request in flight); raise concurrency or "
                "lower the rate")
    if d["connection_errors"]:
        return (f"the connections: {d['connection_errors']} requests failed to connect or lost their connection; "
                "the server or the network refused the load")
    return ("the client's CPU: it could not send on time with free slots (its own work per request, threads "
            "and the interpreter); spread the load over more client jobs (nodes: N)")


def assess(kpis: dict, deliver: dict | None, cross_rows: list[dict], limits: Validity, interrupted: bool = False,
           records: int = 0, lost: list[str] | None = None) -> tuple[bool, list[str]]:
    """(valid, reasons it is not): delivery, error rate, the engine's counts, an interruption, client jobs
    lost before their load ended (a node failure, a cancel)."""
    reasons = [f"load not delivered: {why}" for why in lost or []]
    if interrupted:
        reasons.append("the session was interrupted before its load ended: its window is partial")
    if records == 0:
        reasons.append("no request records were collected: nothing was measured")
    if deliver:
        ratio, lag = deliver.get("achieved_ratio"), deliver.get("send_lag_p99")
        missed = []
        if ratio is not None and ratio < limits.achieved_rate:
            missed.append(f"the clients sent {deliver['achieved_rate']:.3g} requests/s against the schedule's "
                          f"{deliver['schedule_rate']:.3g}/s ({ratio:.0%}; the limit is {limits.achieved_rate:.0%})")
        if lag is not None and lag > limits.send_lag_p99:
            missed.append(f"send lag p99 {lag * 1000:.4g} ms (the limit is {limits.send_lag_p99 * 1000:g} ms)")
        if missed:
            reasons.append(f"load not delivered: {', '.join(missed)}; cause: {deliver['cause']}")
    rate = kpis.get("error_rate")
    if rate is not None and rate > limits.error_rate:
        reasons.append(f"error rate {rate:.1%} of the window's requests (the limit is {limits.error_rate:.1%})")
    if limits.cross_check:
        for r in cross_rows:
            if r.get("agree") is False:
                reasons.append(f"the engine disagrees: {r['service']} {r['what']}: the clients counted "
                               f"{r['client']:g}, {r['engine']} counted {r['engine_count']:g} ({r['note']})")
    return not reasons, reasons
