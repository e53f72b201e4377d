"""Does the unit lane notice the bugs a user would? Apply each plausible breakage below, one at a time, to
a copy of the tree, run the unit lane there, and report which ones turned it red.

    .venv/bin/python benchmarks/mutations.py            # every mutation (about 40 s each)
    .venv/bin/python benchmarks/mutations.py tpot xss   # the named ones

Each entry is a bug that was made, found, or feared: it changes a number or a safety property a user
relies on. Keep the list growing with each bug found; every one should be caught. The working tree is
never touched (the copy is made under a temporary folder, without the virtual environment).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Mutation:
    name: str
    path: str          # relative to the repository root
    old: str           # the text replaced (must occur exactly once)
    new: str
    why: str           # what a user would see


MUTATIONS = [
    Mutation("tpot", "orchestrator/oncluster/loadgen.py",
             "tpot = (latency - ttft) / (tokens - 1)", "tpot = (latency - ttft) / tokens",
             "TPOT off vLLM's definition (latency - TTFT) / (output tokens - 1)"),
    Mutation("squeue-user", "orchestrator/cluster/slurm.py",
             "reason, partition, user, limit", "reason, user, partition, limit",
             "squeue's user and partition swapped: `watch --user` filters on the wrong field"),
    Mutation("watcher-quote", "orchestrator/watch/watcher.py",
             'paths[jid] = quote(rec["stdout"])', 'paths[jid] = rec["stdout"]',
             "another user's output path (their text) runs as shell in ours"),
    Mutation("cross-check-tolerance", "orchestrator/reports/artifacts.py",
             '"output_tokens": float(mine.max_out)', '"output_tokens": float("inf")',
             "the engine cross-check agrees whatever the engine counted (whole-session branch)"),
    Mutation("cross-check-window-tolerance", "orchestrator/reports/artifacts.py",
             '"output_tokens": float(max(slack.tokens_out, mine.max_out))', '"output_tokens": float("inf")',
             "the engine cross-check agrees whatever the engine counted (windowed branch)"),
    Mutation("xss", "orchestrator/templates/reports/report.html.j2",
             "<td>{{ j.service_id }}</td>", "<td>{{ j.service_id | safe }}</td>",
             "a job name's markup runs in the report"),
    Mutation("goodput-failed", "orchestrator/analysis/kpi.py",
             "good += int((ok & meets_slo(c, slo)).sum())", "good += int(meets_slo(c, slo).sum())",
             "goodput counts failed requests that were fast"),
    Mutation("proxy-open-post", "orchestrator/oncluster/bearer_proxy.py",
             'if path not in open_paths or self.command not in ("GET", "HEAD"):', "if path not in open_paths:",
             "the gate serves POST to an open path without the key"),
    Mutation("proxy-query", "orchestrator/oncluster/bearer_proxy.py",
             "                self.path = path\n", "",
             "an exporter's /metrics?target= reaches it through the gate (it would log in elsewhere)"),
    Mutation("rpc-uid", "orchestrator/oncluster/rpc_gate.py",
             "if uid != os.getuid():", "if uid is None:",
             "another user on the head node gets the RPC relay, which adds the secret"),
    Mutation("foreign-owner", "orchestrator/cluster/jobdir.py",
             "if not owner or name != owner or not stat.S_ISREG(st.st_mode):", "if not stat.S_ISREG(st.st_mode):",
             "the watcher reads any plain file a job's output path names, ours included"),
    Mutation("cancel-resubmitted", "orchestrator/cluster/jobdir.py",
             '{ [ -z "$W" ] || [ "$submit" = "$W" ]; }', "true",
             "--stop-service cancels a resubmission it never made"),
    Mutation("aiperf-argv", "orchestrator/oncluster/refclient.py",
             "if found is None:", "if True:",
             "aiperf's key is on its command line, in every user's ps"),
    Mutation("redis-exporter-password", "orchestrator/templates/service.sbatch.j2",
             'REDIS_PASSWORD="$(cat {{ exporter_secret_file }})"', 'REDIS_PASSWORD="$(cat "$ORCH_SECRET_FILE")"',
             "the Redis exporter holds the main password"),
    Mutation("multinode-mp-shared", "orchestrator/recipes/services/vllm-multinode.yaml",
             '[ "$ORCH_EXCLUSIVE" != 1 ]', "false",
             "vllm-multinode's mp backend runs on shared nodes (torch.distributed takes anyone)"),
    Mutation("ray-token", "orchestrator/recipes/services/vllm-multinode.yaml",
             'export RAY_AUTH_MODE=token RAY_AUTH_TOKEN_PATH="{{ secret_file }}"', "true",
             "the Ray cluster takes anyone's connection"),
    Mutation("keepalive-never-learns", "orchestrator/oncluster/loadgen.py",
             "return self.stale >= 2 and self.stale * 2 >= self.reused", "return False",
             "every request to llama.cpp pays a failed send inside its latency (requests_retried = all)"),
    Mutation("first-request-any-answer", "orchestrator/bench/deploy.py",
             "if code.isdigit() and 200 <= int(code) < 300:", "if code.isdigit():",
             "a load whose every request will get 404 (a model not served) starts anyway"),
    Mutation("status-shows-ended", "orchestrator/cli/services.py",
             'rows = every if show_all else [r for r in every if r.state not in TERMINAL_STATES and r.state != "LEFT_QUEUE"]',
             "rows = every",
             "--status buries the live services among a day's ended ones"),
    Mutation("mem-bare-number", "orchestrator/services/recipes.py",
             "if isinstance(mem, int) and not isinstance(mem, bool) or isinstance(mem, str) and mem.isdigit():",
             "if False:",
             "mem: 64 is refused without saying that SLURM would read it as 64 MB"),
    Mutation("prune-running", "orchestrator/services/registry.py",
             'if not isinstance(rec, dict) or rec.get("state") not in TERMINAL_STATES:', "if not isinstance(rec, dict):",
             "prune forgets a running service, which then cannot be stopped by its ID"),
    Mutation("headline-absent-as-zero", "orchestrator/reports/artifacts.py",
             "        if v is None:\n            continue\n", "        v = v or 0.0\n",
             "the report's headline shows an absent TTFT as 0 ms"),
    Mutation("round-marker-at-line-start", "orchestrator/cluster/streaming.py",
             "        at = line.find(end)", "        at = 0 if line.startswith(end) else -1",
             "a wait's round whose output ends without a newline (Prometheus' JSON) never ends: the wait hangs"),
    Mutation("chunk-crlf", "orchestrator/oncluster/httpconn.py",
             "            stop = eol + 4 + size", "            stop = eol + 2 + size",
             "the client's chunked reader miscounts each chunk's CRLF: lines merge, tokens are miscounted"),
    Mutation("arrival-time-at-end", "orchestrator/oncluster/httpconn.py",
             "                t = arrivals[bisect.bisect_right(ends, stop - 1)][0]",
             "                t = arrivals[-1][0]",
             "a streamed answer's tokens are all stamped when it ends: TTFT becomes the latency, ITL 0"),
    Mutation("silent-server-never-times-out", "orchestrator/oncluster/httpconn.py",
             "@_timed_out\ndef timed_lines(", "def timed_lines(",
             "a server that stops mid-stream fails the request with BlockingIOError, not the timeout it is"),
    Mutation("target-any-port", "orchestrator/monitoring/targets.py",
             "    if not 1 <= port <= 65535:", "    if not 0 <= port:",
             "a target port of 0 or 99999 is written into prometheus.yml, which promtool then refuses"),
    Mutation("bearer-on-argv", "orchestrator/bench/external.py",
             'out = transport.run(setup + mark.echo("then") + "\\n" + script, timeout=timeout, stdin=header).stdout',
             'out = transport.run(setup.replace(\'cat > "$H"\', f"echo {quote(header)} > \\"$H\\"") '
             '+ mark.echo("then") + "\\n" + script, timeout=timeout, stdin="").stdout',
             "the key of a service the tool did not start is written on a command line (ps shows it)"),
]


def run_lane(tree: Path) -> tuple[bool, float, str]:
    """(passed, seconds, the last line) of the unit lane in ``tree``."""
    t0 = time.monotonic()
    proc = subprocess.run([str(ROOT / ".venv" / "bin" / "python"), "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider",
                           "tests/unit"], cwd=tree, capture_output=True, text=True)
    lines = proc.stdout.strip().splitlines() or [""]
    failed = [line for line in lines if line.startswith(("FAILED", "ERROR"))]   # which test, when red
    return proc.returncode == 0, time.monotonic() - t0, "; ".join([*failed[:1], lines[-1]])


def main(names: list[str]) -> int:
    chosen = [m for m in MUTATIONS if not names or m.name in names]
    unknown = set(names) - {m.name for m in MUTATIONS}
    if unknown:
        print(f"unknown mutation(s): {', '.join(sorted(unknown))}; known: {', '.join(m.name for m in MUTATIONS)}")
        return 2
    with tempfile.TemporaryDirectory(prefix="orch-mutations-") as tmp:
        tree = Path(tmp) / "tree"
        shutil.copytree(ROOT, tree, ignore=shutil.ignore_patterns(".venv", ".git", "build", "__pycache__", "*.egg-info"))
        passed, seconds, last = run_lane(tree)
        print(f"unmutated lane: {'green' if passed else 'RED'} in {seconds:.0f} s ({last})")
        if not passed:
            return 1
        caught = 0
        for m in chosen:
            path = tree / m.path
            original = path.read_text()
            if original.count(m.old) != 1:
                print(f"  {m.name:30} STALE: its text occurs {original.count(m.old)} times in {m.path}")
                continue
            path.write_text(original.replace(m.old, m.new))
            try:
                passed, seconds, last = run_lane(tree)
            finally:
                path.write_text(original)
            caught += not passed
            print(f"  {m.name:30} {'caught' if not passed else 'MISSED'} in {seconds:.0f} s: {m.why}")
        print(f"{caught} of {len(chosen)} mutations caught by the unit lane")
        return 0 if caught == len(chosen) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
