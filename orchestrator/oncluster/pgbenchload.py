#!/usr/bin/env python3
"""PostgreSQL load client: PostgreSQL's own pgbench, run as a SLURM job next to the service.

Before the go it creates the database and initialises pgbench's tables at the
scale asked for (``pgbench -i``; readiness waits for it). On the go it runs
pgbench for the warm-up plus the measured time (or a number of transactions),
with ``--clients`` connections on ``--threads`` threads, and per-transaction
logging (``-l``). Each logged transaction becomes one JSON line: start (its
completion time less its latency), latency_s, ok (pgbench logs a failed
transaction as "failed"), op (the script), warmup, client_cpu_s (pgbench's CPU
time over its transactions: an average, pgbench does not time itself per
transaction). Live counts on /metrics come from pgbench's progress lines (``-P 1``).
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import re
import resource
import subprocess
import sys
import threading
import time

try:  # shipped beside this file to the job dir; imported from the package in tests
    from orchestrator.oncluster import clientjob
except ImportError:
    import clientjob

BUILTINS = ("tpcb-like", "simple-update", "select-only")
PROGRESS = re.compile(r"progress: ([\d.]+) s, ([\d.]+) tps, lat ([\d.]+) ms.*?(?:, (\d+) failed)?$")
LOG_PREFIX = "pgbench_log"


def log_records(lines, script: str, warmup_until: float, client_id: str, cpu_each: float | None = None):
    """pgbench's per-transaction log lines (client_id transaction_no time script_no time_epoch time_us
    [schedule_lag] [retries]; time in microseconds, or "failed"/"skipped") as request records."""
    for line in lines:
        f = line.split()
        if len(f) < 6:
            continue
        end = int(f[4]) + int(f[5]) / 1e6
        if f[2] in ("failed", "skipped"):
            latency, ok, error = 0.0, False, f"pgbench: transaction {f[2]}"
        else:
            latency, ok, error = int(f[2]) / 1e6, True, None
        start = round(end - latency, 6)
        yield {"start": start, "latency_s": round(latency, 6), "ttft_s": None, "tpot_s": None, "status": None,
               "ok": ok, "tokens_in": None, "tokens_out": None, "error": error, "op": script,
               "client_cpu_s": cpu_each, "warmup": start < warmup_until, "client": client_id}


class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.ok = 0.0
        self.errors = 0
        self.tps = 0.0
        self.latency_ms = 0.0
        self.last_t = 0.0

    def progress(self, line: str) -> None:
        m = PROGRESS.search(line.strip())
        if not m:
            return
        t, tps, lat, failed = float(m[1]), float(m[2]), float(m[3]), int(m[4] or 0)
        with self.lock:
            self.ok += tps * (t - self.last_t)
            self.errors += failed
            self.tps, self.latency_ms, self.last_t = tps, lat, t

    def counts(self) -> dict:
        with self.lock:
            return {"ok": int(self.ok), "errors": self.errors, "in_flight": 0}

    def metrics(self) -> str:
        with self.lock:
            return ("# TYPE orch_client_requests_total counter\n"
                    f'orch_client_requests_total{{outcome="ok"}} {int(self.ok)}\n'
                    f'orch_client_requests_total{{outcome="error"}} {self.errors}\n'
                    "# TYPE orch_client_tps gauge\n"
                    f"orch_client_tps {self.tps}\n"
                    "# TYPE orch_client_latency_average_seconds gauge\n"
                    f"orch_client_latency_average_seconds {self.latency_ms / 1000}\n")


def pg(binary: str, args, address: str, db: str) -> list[str]:
    host, _, port = address.rpartition(":")
    return [binary, "-h", host, "-p", port, "-U", "postgres", *args, db]


def prepare(a) -> None:
    """The database and pgbench's tables, once the server accepts connections."""
    deadline = time.time() + 120
    while True:  # "the database system is starting up" for a moment after the port opens
        p = subprocess.run(pg("createdb", [], a.address, a.db), capture_output=True, text=True)
        if p.returncode == 0 or "already exists" in p.stderr:
            break
        if time.time() > deadline:
            raise SystemExit(f"createdb {a.db} failed: {p.stderr.strip()}")
        time.sleep(1)
    print(f"initialising pgbench tables at scale {a.scale}", flush=True)
    p = subprocess.run(pg("pgbench", ["-i", "-s", str(a.scale), "-q"], a.address, a.db), capture_output=True, text=True)
    if p.returncode != 0:
        raise SystemExit(f"pgbench -i -s {a.scale} failed: {p.stderr.strip()[-2000:]}")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--address", required=True, help="HOST:PORT of the PostgreSQL server")
    ap.add_argument("--db", default="bench")
    ap.add_argument("--scale", type=int, default=10, help="pgbench scale factor (100,000 accounts each)")
    ap.add_argument("--threads", type=int, default=1, help="pgbench worker threads (-j)")
    ap.add_argument("--builtin", default="tpcb-like", choices=BUILTINS)
    ap.add_argument("--script", default=None, help="a custom pgbench script file (instead of --builtin)")
    a = clientjob.parse_job_arguments(ap, argv)  # --concurrency is pgbench's --client
    secret = clientjob.target_secret()
    if secret:
        # libpq reads the password from its environment: createdb's and pgbench's argv never hold it
        os.environ["PGPASSWORD"] = secret
    job = clientjob.Job(a)
    stats = Stats()
    prepare(a)
    if a.metrics_port:
        clientjob.serve_metrics(a.metrics_port, stats.metrics)
    script = os.path.basename(a.script) if a.script else a.builtin

    def load(begin: float, end: float, warmup_until: float) -> None:
        args = ["-n", "-c", str(a.concurrency), "-j", str(a.threads), "-l", f"--log-prefix={LOG_PREFIX}", "-P", "1"]
        args += ["-f", a.script] if a.script else ["-b", a.builtin]
        if a.rate:
            args += ["-R", str(a.rate)]
        if a.duration:
            args += ["-T", str(max(1, round(min(end, begin + a.max_seconds) - time.time())))]
        else:  # pgbench counts transactions per client
            args += ["-t", str(max(1, a.requests // a.concurrency))]
        for old in glob.glob(f"{LOG_PREFIX}.*"):
            os.remove(old)
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu_before = before.ru_utime + before.ru_stime
        proc = subprocess.Popen(pg("pgbench", args, a.address, a.db), stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)
        watcher = threading.Thread(target=lambda: job.stop.wait() or proc.terminate(), daemon=True)
        watcher.start()
        tail = []
        for line in proc.stdout:
            stats.progress(line)
            tail = (tail + [line])[-20:]
        proc.wait()
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)  # pgbench's (and createdb's, pgbench -i's) CPU
        cpu = usage.ru_utime + usage.ru_stime - cpu_before
        paths = sorted(glob.glob(f"{LOG_PREFIX}.*"))
        total = sum(1 for path in paths for _ in open(path))
        with open(a.out, "a") as out:
            n = errors = 0
            for path in paths:
                with open(path) as f:
                    for rec in log_records(f, script, warmup_until, a.client_id, round(cpu / total, 7) if total else None):
                        out.write(json.dumps(rec) + "\n")
                        n += 1
                        errors += not rec["ok"]
        with stats.lock:
            stats.ok, stats.errors = n - errors, errors
        if proc.returncode not in (0, -15) and not job.stop.is_set():
            print("".join(tail), file=sys.stderr)
            print(f"pgbench exited {proc.returncode}", file=sys.stderr)

    job.run(load, stats.counts, f"load: pgbench {script} -> {a.address}/{a.db}, scale {a.scale}, "
            f"{a.concurrency} clients on {a.threads} threads")


if __name__ == "__main__":
    main()
