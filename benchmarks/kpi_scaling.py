#!/usr/bin/env python3
"""Time and peak memory of the session's local work as the number of request records grows:
reading the clients' JSON lines into columns (and requests.jsonl), the KPIs, and every other
artifact (report.json, report.html, CSVs). Runs locally, no cluster.

    python benchmarks/kpi_scaling.py [--sizes 100000 1000000 10000000] [--tokens 32]

Each size is measured in a process of its own, started from this small one, so its peak RSS is
its own (Linux keeps a process's peak across exec). The records are generated
(seeded) for this measurement: streamed chat requests with ``--tokens`` output tokens, so
``--tokens - 1`` ITL gaps each (the largest column).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def generate(path: Path, n: int, tokens: int) -> None:
    import numpy as np
    rng = np.random.default_rng(1)
    t0, block = 1_700_000_000.0, 100_000
    with open(path, "w") as f:
        for lo in range(0, n, block):
            m = min(block, n - lo)
            lat = rng.lognormal(-1, 0.4, m).round(6)
            ok = rng.random(m) > 0.001
            gaps = rng.exponential(0.01, (m, tokens - 1)).round(6)
            lines = []
            for i in range(m):
                j = lo + i
                lines.append(json.dumps({
                    "start": round(t0 + j * 0.001, 6), "latency_s": lat[i], "ttft_s": round(lat[i] * 0.3, 6),
                    "tpot_s": round(lat[i] * 0.7 / (tokens - 1), 6), "status": 200 if ok[i] else 503,
                    "ok": bool(ok[i]), "tokens_in": 64, "tokens_out": tokens, "error": None if ok[i] else "HTTP 503",
                    "client_cpu_s": 0.0005, "itl_s": gaps[i].tolist(), "warmup": j < n // 20, "target": "llm"}))
            f.write("\n".join(lines) + "\n")


def measure(path: Path, n: int) -> dict:
    """In a fresh process: ingest, KPIs, artifacts; peak RSS."""
    from orchestrator.analysis.kpi import client_kpis, window_of
    from orchestrator.analysis.records import TableBuilder, jsonl_line
    from orchestrator.reports.artifacts import ReportContext, write_artifacts
    out = path.parent / "session"
    out.mkdir()
    t = time.perf_counter()
    b = TableBuilder()
    with open(path) as f, open(out / "requests.jsonl", "w") as req:
        for line in f:  # as the session reads a client's file
            rec = json.loads(line)
            b.add(rec)
            req.write(jsonl_line(rec, {}, line))
    table = b.finish()
    t_ingest = time.perf_counter() - t
    with table:
        t = time.perf_counter()
        window = window_of(table, float(table.column("start")[n // 20]))
        client_kpis(table, window)
        t_kpi = time.perf_counter() - t
        ctx = ReportContext(session_id="bench", benchmark="bench", out_dir=out, scrape_interval="1s",
                            services={"llm": "llm_00000000"})
        t = time.perf_counter()
        write_artifacts(ctx, table, window)
        t_artifacts = time.perf_counter() - t
    return {"ingest_s": t_ingest, "kpis_s": t_kpi, "artifacts_s": t_artifacts,
            "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "html_mb": (out / "report.html").stat().st_size / 1e6}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000, 10_000_000])
    ap.add_argument("--tokens", type=int, default=32)
    ap.add_argument("--measure", nargs=2, help=argparse.SUPPRESS)  # PATH N: the child's part
    ap.add_argument("--generate", nargs=2, help=argparse.SUPPRESS)  # PATH N
    args = ap.parse_args()
    if args.generate:
        generate(Path(args.generate[0]), int(args.generate[1]), args.tokens)
        return
    if args.measure:
        print(json.dumps(measure(Path(args.measure[0]), int(args.measure[1]))))
        return
    print(f"{args.tokens}-token streamed requests ({args.tokens - 1} ITL gaps each); each size in its own process")
    print(f"{'records':>10} {'ITL gaps':>12} {'read s':>8} {'KPIs s':>8} {'all artifacts s':>16} {'peak RSS MiB':>13}")
    for n in args.sizes:
        with tempfile.TemporaryDirectory(dir=os.environ.get("KPI_SCALING_DIR")) as d:
            path = Path(d) / "client.jsonl"
            # in a process of its own too: Linux carries a peak RSS across exec into the child
            subprocess.run([sys.executable, __file__, "--generate", str(path), str(n), "--tokens", str(args.tokens)],
                           check=True)
            res = json.loads(subprocess.run([sys.executable, __file__, "--measure", str(path), str(n)], check=True,
                                            capture_output=True, text=True).stdout)
        print(f"{n:>10,} {n * (args.tokens - 1):>12,} {res['ingest_s']:>8.2f} {res['kpis_s']:>8.2f} "
              f"{res['artifacts_s']:>16.2f} {res['peak_rss_mib']:>13.0f}", flush=True)


if __name__ == "__main__":
    main()
