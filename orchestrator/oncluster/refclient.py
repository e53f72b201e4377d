#!/usr/bin/env python3
"""A reference benchmark client as a client job: vLLM's ``vllm bench serve`` or NVIDIA's ``aiperf``.

Standard library only (the cluster's python3; the tool runs from its own venv).
Waits for the session's go file, runs the tool with the argv it was given (after
``--``), then turns the tool's per-request results into the session's request
records (requests.jsonl), so the same KPIs, cross-check, verdict and report are
computed from them as from the tool's own client. Failed requests stay records
(``ok: false`` with the tool's error): they are never dropped.

- ``vllm bench serve --save-detailed``: its result JSON lists every request
  (start_times, latencies, ttfts, itls, input_lens, output_lens, errors). Its
  start times are ``time.perf_counter()`` readings, which on Linux are the
  system-wide CLOCK_MONOTONIC: this job reads the offset to wall time in its
  own process, and the records get wall-clock starts.
- ``aiperf profile``: ``profile_export.jsonl``, one request a line, with
  wall-clock nanoseconds (request_start_ns) and its metrics in milliseconds.

SIGTERM (scancel) stops the tool and keeps what it wrote. The converters are
pure and also read a result file given to ``report compare``.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

try:  # shipped beside this file to the job dir; imported from the package in tests
    from orchestrator.oncluster import clientjob
    from orchestrator.oncluster.formats import AIPERF_DIR, AIPERF_RECORDS, VLLM_RESULT, read_result  # noqa: F401
    from orchestrator.oncluster.formats import aiperf_records, vllm_bench_records  # noqa: F401
except ImportError:
    import clientjob
    from formats import AIPERF_DIR, AIPERF_RECORDS, VLLM_RESULT, read_result  # noqa: F401
    from formats import aiperf_records, vllm_bench_records  # noqa: F401

class Counts:
    """What /metrics and progress.json say: the tool reports nothing while it runs, so its requests are
    counted when its results are read (in flight: the concurrency while the tool runs)."""

    def __init__(self, concurrency: int):
        self.lock = threading.Lock()
        self.ok = self.errors = self.in_flight = 0
        self.tokens_out = 0
        self.concurrency = concurrency

    def counts(self) -> dict:
        with self.lock:
            return {"ok": self.ok, "errors": self.errors, "in_flight": self.in_flight}

    def metrics(self) -> str:
        with self.lock:
            return "\n".join(["# TYPE orch_client_requests_total counter",
                              f'orch_client_requests_total{{outcome="ok"}} {self.ok}',
                              f'orch_client_requests_total{{outcome="error"}} {self.errors}',
                              "# TYPE orch_client_in_flight gauge", f"orch_client_in_flight {self.in_flight}",
                              "# TYPE orch_client_tokens_out_total counter",
                              f"orch_client_tokens_out_total {self.tokens_out}"]) + "\n"


def key_environment(tool: str, secret: str) -> dict[str, str]:
    """The environment through which a tool sends the target's API key: `vllm bench serve` sends
    OPENAI_API_KEY as a bearer token (nothing when the target is open)."""
    return {"OPENAI_API_KEY": secret} if secret and tool == "vllm-bench" else {}


# aiperf 0.13 takes the key only as ``--api-key`` (its YAML config's ${VAR} form needs a whole benchmark
# definition, and its CLI takes ``${VAR}`` literally). A key in argv is in every user's `ps`. So aiperf (a
# Python console script) runs in its own interpreter under this launcher: /proc/<pid>/cmdline shows the
# launcher and aiperf's own arguments, the key reaches aiperf's argument parser from the launcher's
# environment (readable by the job's user only), and aiperf hands it to its workers in their environment.
KEY_VAR = "ORCH_TOOL_API_KEY"
LAUNCHER = ("import os, runpy, sys\n"
            f"key = os.environ.pop({KEY_VAR!r})\n"
            "sys.argv = sys.argv[1:] + ['--api-key', key]\n"
            "runpy.run_path(sys.argv[0], run_name='__main__')\n")


def _python_script(program: str) -> tuple[str, str] | None:
    """(interpreter, script path) of a Python console script, from its #! line; None for anything else."""
    import shutil
    path = shutil.which(program) or program
    try:
        with open(path, "rb") as f:
            first = f.readline(512)
    except OSError:
        return None
    words = first[2:].decode("utf-8", "replace").split() if first.startswith(b"#!") else []
    if words[:1] == ["/usr/bin/env"] and len(words) > 1:
        words = [shutil.which(words[1]) or words[1]]
    return (words[0], path) if words and "python" in os.path.basename(words[0]) else None


def key_command(tool: str, argv: list[str], secret: str) -> tuple[list[str], dict[str, str], bool]:
    """(argv, environment, key in argv?) to run ``argv`` (a tool's, after any ``env -u VAR`` prefix) with the
    target's key: `vllm bench serve` reads OPENAI_API_KEY; aiperf runs under LAUNCHER when it is a Python
    script, else (a binary wrapper) with ``--api-key`` on its command line, which the log then says."""
    if not secret or tool != "aiperf":
        return argv, key_environment(tool, secret), False
    i = 0
    if argv[:1] == ["env"]:   # (`env -u HF_HUB_OFFLINE aiperf ...`: the program comes after the unsets)
        i = 1
        while i + 1 < len(argv) and argv[i] == "-u":
            i += 2
    found = _python_script(argv[i]) if i < len(argv) else None
    if found is None:
        return argv + ["--api-key", secret], {}, True
    interpreter, script = found
    return argv[:i] + [interpreter, "-c", LAUNCHER, script] + argv[i + 1:], {KEY_VAR: secret}, False


def main(argv=None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--" not in argv:
        raise SystemExit("usage: refclient.py --tool vllm-bench|aiperf [job options] -- TOOL ARGV...")
    cut = argv.index("--")
    ours, tool = argv[:cut], argv[cut + 1:]
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tool", required=True, choices=["vllm-bench", "aiperf"])
    args = clientjob.parse_job_arguments(ap, ours, bounded=False)
    counts = Counts(args.concurrency)
    if args.metrics_port:
        clientjob.serve_metrics(args.metrics_port, counts.metrics)
    job = clientjob.Job(args)
    measured_from: list[float] = []   # the warm-up runs from the tool's first request (it takes seconds to start)

    def load(begin: float, end: float, warmup_until: float) -> None:
        offset = time.time() - time.perf_counter()
        with counts.lock:
            counts.in_flight = args.concurrency
        print("running: " + " ".join(tool), flush=True)   # (before the key is added: never in the log)
        secret = clientjob.target_secret()
        argv, key_env, exposed = key_command(args.tool, tool, secret)
        if exposed:
            print(f"warning: {tool[0]} is not a Python script: the target's key is on its command line, "
                  "visible in the node's process list while it runs", flush=True)
        env = {**os.environ, **key_env}
        proc = subprocess.Popen(argv, start_new_session=True, env=env)  # its own group: a stop ends all it started
        while proc.poll() is None:
            if job.stop.wait(0.5) or time.time() > end + 5:
                why = "stopped" if job.stop.is_set() else "past the client's time limit"
                print(f"{why}: ending {tool[0]}", flush=True)
                os.killpg(proc.pid, signal.SIGINT)   # both tools write what they have on SIGINT
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
                break
        with counts.lock:
            counts.in_flight = 0
        try:
            if args.tool == "vllm-bench":
                records = vllm_bench_records(json.loads(Path(VLLM_RESULT).read_text()), offset)
            else:
                records = aiperf_records(Path(AIPERF_DIR, AIPERF_RECORDS).read_text().splitlines())
        except (OSError, ValueError, KeyError) as exc:
            print(f"error: {tool[0]} exited {proc.returncode} and left no per-request results ({exc})", flush=True)
            sys.exit(proc.returncode or 1)
        first = min((r["start"] for r in records), default=warmup_until)
        measured_from.append(max(warmup_until, first + args.warmup))
        with open(args.out, "w") as out:
            for rec in records:
                rec["warmup"] = bool(rec["warmup"] or rec["start"] < measured_from[0])
                rec["client"] = args.client_id
                out.write(json.dumps(rec) + "\n")
        with counts.lock:
            counts.ok = sum(1 for r in records if r["ok"])
            counts.errors = len(records) - counts.ok
            counts.tokens_out = sum(r["tokens_out"] or 0 for r in records)
        if proc.returncode and not job.stop.is_set():
            print(f"{tool[0]} exited {proc.returncode}; its {len(records)} request results are kept", flush=True)

    job.run(load, counts.counts, f"load: {args.tool}, concurrency {args.concurrency}",
            extra=lambda: {"warmup_until": measured_from[0]} if measured_from else {})


if __name__ == "__main__":
    main()
