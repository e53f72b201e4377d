#!/usr/bin/env python3
"""Time and peak memory of the session's local work (KPIs, requests.jsonl, report.html)
as the number of request records grows. Runs locally, no cluster.

    python benchmarks/kpi_scaling.py [--sizes 10000 100000 1000000]

The records are generated (seeded) for this measurement only.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from orchestrator.bench.kpi import client_kpis, measured, throughput_series, window_of  # noqa: E402
from orchestrator.reports.artifacts import write_requests  # noqa: E402
from orchestrator.reports.html import render_report  # noqa: E402


def records(n: int) -> list[dict]:
    rng = random.Random(1)
    t0 = 1_700_000_000.0
    out = []
    for i in range(n):
        start = t0 + i * 0.01
        lat = rng.lognormvariate(-1, 0.4)
        out.append({"start": start, "latency_s": lat, "ttft_s": lat * 0.3, "itl_s": 0.01, "status": 200,
                    "ok": rng.random() > 0.001, "tokens_out": 32, "error": None, "warmup": i < n // 20,
                    "client_cpu_s": 0.0005})
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    args = ap.parse_args()
    print(f"{'records':>10} {'kpis s':>8} {'write s':>8} {'report s':>9} {'peak RSS MiB':>13}")
    for n in args.sizes:
        recs = records(n)
        warmup_until = recs[n // 20]["start"]
        t = time.perf_counter()
        window = window_of(recs, warmup_until)
        kpis = client_kpis(recs, window)
        t_kpi = time.perf_counter() - t
        with tempfile.TemporaryDirectory() as d:
            t = time.perf_counter()
            write_requests(Path(d) / "requests.jsonl", recs)
            t_write = time.perf_counter() - t
        t = time.perf_counter()
        report = {"session": "bench", "benchmark": "bench", "window": {"start": window.start, "end": window.end,
                  "seconds": window.seconds, "start_iso": "-", "end_iso": "-"}, "kpi_objects": kpis,
                  "manifest": {"tool_version": "-", "jobs": []}}
        html = render_report(report, measured(recs, window), {"throughput": throughput_series(recs, window)})
        t_report = time.perf_counter() - t
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"{n:>10} {t_kpi:>8.2f} {t_write:>8.2f} {t_report:>9.2f} {peak:>13.0f}   (report {len(html) / 1e6:.1f} MB)")
        del recs, html


if __name__ == "__main__":
    main()
