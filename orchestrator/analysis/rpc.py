"""llama.cpp RPC workers' traffic, from the gate's counters (oncluster/rpc_gate.py writes
``rpc-<node>.json``: totals and their history), over a time window (pure)."""

from __future__ import annotations


def _at(history: list, t: float) -> tuple[int, int]:
    """The (to worker, from worker) totals as they stood at ``t``."""
    before = [h for h in history if h[0] <= t]
    return (int(before[-1][1]), int(before[-1][2])) if before else (0, 0)


def worker_traffic(service: str, node: str, stats: dict, start: float, end: float) -> dict:
    """One worker's bytes each way inside ``(start, end]`` and over the job's life, its connections and
    the connections its gate refused (no or a wrong secret)."""
    history = stats.get("history") or []
    a, b = _at(history, start), _at(history, end)
    return {"service": service, "node": node, "bytes_to_worker": b[0] - a[0], "bytes_from_worker": b[1] - a[1],
            "total_to_worker": int(stats.get("bytes_to_worker", 0)),
            "total_from_worker": int(stats.get("bytes_from_worker", 0)),
            "connections": int(stats.get("connections", 0)), "refused": int(stats.get("refused", 0))}
