"""Benchmark sessions: deploy, monitor, load, collect, compute KPIs, report, clean up.

Clients are SLURM jobs that wait for a ``go`` file in their job dir, so the
monitor is already scraping them when the load starts. Everything the session
starts is stopped at the end (unless kept), also on Ctrl-C, after which what
was collected is still written.
"""

from __future__ import annotations

import json
import math
import secrets
import shlex
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from .benchrecipe import BenchmarkRecipe, ClientSpec
from .errors import OrchestratorError
from .promql import parse_duration
from .recipes import Health, Metrics, Resources, ServiceRecipe, TargetSpec, load_recipe
from .shell import path as remote_path
from .slurm import TERMINAL_STATES

Progress = Callable[[str], None]
WORKLOADS = Path(__file__).resolve().parent / "workloads"


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).isoformat(timespec="milliseconds")


def client_recipe(spec: ClientSpec, target_url: str) -> ServiceRecipe:
    """A load client as a service recipe: its /metrics is what the monitor scrapes."""
    max_seconds = spec.warmup + (spec.duration if spec.duration is not None else 3600) + 30
    args = ["python3", "loadgen.py", "--url", target_url, "--kind", spec.kind,
            "--concurrency", str(spec.concurrency), "--warmup", str(spec.warmup), "--payload-file", "payload.json",
            "--out", "requests.jsonl", "--go-file", "go", "--max-seconds", str(max_seconds), "--linger", "15"]
    if spec.rate:
        args += ["--rate", str(spec.rate)]
    if spec.duration is not None:
        args += ["--duration", str(spec.duration)]
    if spec.requests is not None:
        args += ["--requests", str(spec.requests)]
    # {% raw %}: the arguments are data, never Jinja
    command = "{% raw %}" + shlex.join(args) + "{% endraw %} --metrics-port {{ port }}"
    r = spec.resources
    minutes = math.ceil((max_seconds + 900 + 300) / 60)  # + go-wait and linger margin
    return ServiceRecipe(
        name=f"client-{spec.kind}"[:40], command=command, description=f"load client ({spec.kind})",
        resources=Resources(partition=r.get("partition"), cpus_per_task=int(r.get("cpus_per_task", 1)),
                            mem=str(r.get("mem", "256M")), time=str(r.get("time", minutes)),
                            account=r.get("account"), qos=r.get("qos"), nodelist=r.get("nodelist")),
        ports=("auto",), health=Health(path="/", timeout=300), metrics=Metrics(path="/metrics", port="port:0"),
        files={"loadgen.py": str(WORKLOADS / "loadgen.py")}, source="(generated client recipe)")


@dataclass
class SessionState:
    session_id: str
    out_dir: Path
    started: list[str] = field(default_factory=list)       # service IDs this session started
    services: dict = field(default_factory=dict)           # name -> service_id
    clients: list[str] = field(default_factory=list)
    monitor_id: str | None = None
    go_time: float | None = None
    interrupted: bool = False
    errors: list[str] = field(default_factory=list)


class BenchmarkSession:
    def __init__(self, orch, recipe: BenchmarkRecipe, out_dir: str | Path | None = None, keep: bool = False,
                 progress: Progress | None = None):
        self.orch = orch
        self.recipe = recipe
        self.keep = keep
        self.say = progress or (lambda m: None)
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        sid = f"{recipe.name}-{stamp}-{secrets.token_hex(2)}"
        base = Path(out_dir) if out_dir else orch.config.results_dir / sid
        self.state = SessionState(sid, base)
        self.service_recipes: dict[str, ServiceRecipe] = {}

    # -- steps -----------------------------------------------------------------
    def _deploy_services(self) -> None:
        servers = self.orch.servers
        for ref in self.recipe.services:
            if ref.service_id:
                probe = servers.probe(ref.service_id)
                self.state.services[ref.name] = probe.service_id
                continue
            recipe = load_recipe(ref.recipe)
            self.service_recipes[ref.name] = recipe
            sid = servers.start_service(recipe, progress=self.say)
            self.state.started.append(sid)
            self.state.services[ref.name] = sid
        for name, sid in self.state.services.items():
            r = self.service_recipes.get(name)
            servers.wait_until_ready(sid, timeout=r.health.timeout if r and r.health else 600, progress=self.say)

    def _start_clients(self) -> None:
        servers = self.orch.servers
        for spec in self.recipe.clients:
            ep = servers.get_service_endpoint(self.state.services[spec.target])
            recipe = client_recipe(spec, ep.url)
            for _ in range(spec.nodes):
                sid = servers.start_service(recipe, extra_files={"payload.json": json.dumps(spec.payload)},
                                            progress=self.say)
                self.state.started.append(sid)
                self.state.clients.append(sid)
        for sid in self.state.clients:
            servers.wait_until_ready(sid, timeout=300, progress=self.say)

    def _start_monitor(self) -> None:
        targets = [TargetSpec(service_id=sid, job_name=name) for name, sid in self.state.services.items()]
        targets += [TargetSpec(service_id=sid, job_name="client") for sid in self.state.clients]
        mid = self.orch.monitors.start_monitor(self.recipe.monitor_recipe, targets, progress=self.say,
                                               scrape_interval=self.recipe.scrape_interval, wait=False)
        self.state.started.append(mid)
        self.state.monitor_id = mid
        self.orch.servers.wait_until_ready(mid, timeout=300, progress=self.say)
        deadline = time.monotonic() + 60 + 3 * parse_duration(self.recipe.scrape_interval)
        expected = {t["address"] for t in self.orch.monitors.store.get(mid)["targets"]}
        while True:  # the load starts only once every target has been scraped, so counters have a baseline
            st = self.orch.monitors.check_monitor_status(mid)
            health = {t["instance"]: t["health"] for t in st["targets"]}
            down = sorted(a for a in expected if health.get(a) != "up")
            if not down:
                self.say(f"monitor {mid} scraping {len(st['targets'])} targets")
                return
            if time.monotonic() > deadline:
                raise OrchestratorError(f"monitor {mid}: targets not up: {', '.join(down)}")
            time.sleep(1)

    def _go(self) -> None:
        dirs = [remote_path(self.orch.servers.job_dir(sid)) for sid in self.state.clients]
        script = "; ".join(f"date +%s.%N > {d}/go.tmp && mv {d}/go.tmp {d}/go" for d in dirs)
        self.state.go_time = time.time()
        self.orch.transport.run(script, check=True, idempotent=True)
        self.say(f"load started on {len(dirs)} client(s)")

    def _wait_clients(self) -> None:
        specs = self.recipe.clients
        budget = max((s.warmup + (s.duration or 3600)) for s in specs) + 120
        deadline = time.monotonic() + budget
        last = 0.0
        while True:
            script = "; ".join(
                f"echo @@c {sid}; cat {remote_path(self.orch.servers.job_dir(sid))}/progress.json 2>/dev/null; echo; "
                f"test -f {remote_path(self.orch.servers.job_dir(sid))}/done.json && echo DONE"
                for sid in self.state.clients)
            out = self.orch.transport.run(script, timeout=60).stdout
            ok = err = flight = 0
            done = 0
            for block in out.split("@@c ")[1:]:
                lines = block.splitlines()
                if "DONE" in lines:
                    done += 1
                for line in lines[1:]:
                    if line.startswith("{"):
                        doc = json.loads(line)
                        ok, err, flight = ok + doc["ok"], err + doc["errors"], flight + doc["in_flight"]
            if time.monotonic() - last >= 5 or done == len(self.state.clients):
                elapsed = time.time() - (self.state.go_time or time.time())
                self.say(f"load: {ok} ok, {err} errors, {flight} in flight, {elapsed:.0f}s elapsed, "
                         f"{done}/{len(self.state.clients)} clients done")
                last = time.monotonic()
            if done == len(self.state.clients):
                return
            if time.monotonic() > deadline:
                raise OrchestratorError(f"clients did not finish within {budget:.0f}s")
            time.sleep(2)

    def _collect_records(self) -> tuple[list[dict], float | None]:
        """Download every client's records (partial ones too) and its warm-up end."""
        records: list[dict] = []
        warmup_until = None
        cdir = self.state.out_dir / "clients"
        cdir.mkdir(parents=True, exist_ok=True)
        for sid in self.state.clients:
            jd = self.orch.servers.job_dir(sid)
            local = cdir / f"{sid}.jsonl"
            for name, dest in (("requests.jsonl", local), ("done.json", cdir / f"{sid}.done.json")):
                try:
                    self.orch.transport.get(f"{jd}/{name}", str(dest))
                except (OSError, OrchestratorError):
                    self.state.errors.append(f"{sid}: no {name} (client did not start or finish)")
            if local.exists():
                lines = [l for l in local.read_text().splitlines() if l.strip()]
                for i, line in enumerate(lines):
                    try:
                        records.append(json.loads(line))
                    except json.JSONDecodeError:
                        if i != len(lines) - 1:
                            raise
                        # the client was stopped mid-write: only its last line can be cut short
                        self.state.errors.append(f"{sid}: last record was cut short by the stop and skipped")
            done = cdir / f"{sid}.done.json"
            if done.exists():
                w = json.loads(done.read_text())["warmup_until"]
                warmup_until = w if warmup_until is None else max(warmup_until, w)
        records.sort(key=lambda r: r["start"])
        if warmup_until is None and records:
            warmup_until = min(r["start"] for r in records) + max(s.warmup for s in self.recipe.clients)
        return records, warmup_until

    # -- the whole session ------------------------------------------------------------
    def context(self):
        from .artifacts import ReportContext
        st = self.state
        return ReportContext(
            orch=self.orch, session_id=st.session_id, benchmark=self.recipe.name, out_dir=st.out_dir,
            scrape_interval=self.recipe.scrape_interval, services=st.services, clients=st.clients,
            monitor_id=st.monitor_id, go_time=st.go_time, interrupted=st.interrupted, errors=st.errors,
            recipes={"benchmark_recipe": {"source": self.recipe.source, "sha256": self.recipe.sha256,
                                          "text": self.recipe.text},
                     "service_recipes": {n: {"source": r.source, "sha256": r.sha256, "text": r.text}
                                         for n, r in self.service_recipes.items()}},
            say=self.say)

    def run(self) -> dict:
        from .artifacts import write_artifacts
        self.state.out_dir.mkdir(parents=True, exist_ok=True)
        self.say(f"session {self.state.session_id} -> {self.state.out_dir}")
        result = None
        try:
            self._deploy_services()
            self._start_clients()
            self._start_monitor()
            self._go()
            self._wait_clients()
        except KeyboardInterrupt:
            self.state.interrupted = True
            self.say("interrupted: stopping what this session started, then writing what was collected")
        except OrchestratorError as exc:
            self.state.errors.append(str(exc))
            self.say(f"error: {exc}")
        try:
            if self.state.clients:
                self._stop(self.state.clients, wait=True)  # no more load; files stay on the cluster
                records, warmup_until = self._collect_records()
                result = write_artifacts(self.context(), records, warmup_until)
            else:
                result = write_artifacts(self.context(), [], None)
        finally:
            if not self.keep or self.state.interrupted:
                self._stop(self.state.started)
            else:
                self.say(f"kept running: {', '.join(self.state.started)}")
        if self.state.interrupted:
            raise KeyboardInterrupt
        if self.state.errors and not result.get("kpis"):
            raise OrchestratorError("; ".join(self.state.errors))
        return result

    def _stop(self, ids: list[str], wait: bool = False) -> None:
        """scancel what is still running; with ``wait``, until it has ended (bounded)."""
        stopped = []
        for sid in ids:
            try:
                st = self.orch.servers.probe(sid)
                if st.job is None or st.job.state not in TERMINAL_STATES:
                    self.orch.servers.stop_service(sid)
                    stopped.append(sid)
            except (OrchestratorError, OSError) as exc:
                self.state.errors.append(f"could not stop {sid}: {exc}")
        deadline = time.monotonic() + 30
        while wait and stopped and time.monotonic() < deadline:
            probes = self.orch.servers.probe_many(stopped)
            stopped = [p.service_id for p in probes if p.job is not None and p.job.state not in TERMINAL_STATES]
            if stopped:
                time.sleep(1)
