"""Benchmark sessions: deploy, monitor, load, collect, compute KPIs, report, clean up.

A session runs one or more points (one, or one per combination of a sweep).
The monitor starts with the services; each point's load clients are added as
targets with a hot reload, wait for a ``go`` file in their job dir (so the
monitor is scraping them when the load starts) and form their own measured
window. Everything the session starts is stopped at the end (unless kept),
also on Ctrl-C, after which what was collected is still written.
"""

from __future__ import annotations

import contextlib
import json
import math
import secrets
import shlex
import tarfile
import time
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import yaml

from orchestrator import waiting
from orchestrator.bench.collect import gather_prometheus
from orchestrator.bench.datasets import build_rows
from orchestrator.bench.kinds import KINDS
from orchestrator.bench.kinds.pgbench import PGBENCH_SCRIPT, pgbench_bytes
from orchestrator.bench.recipe import BenchmarkRecipe, ClientSpec
from orchestrator.analysis.records import RequestTable, TableBuilder, jsonl_line
from orchestrator.analysis.sweep import (
    Point,
    apply_to_client,
    grid,
    service_changes,
    set_path,
)
from orchestrator.cluster import jobdir
from orchestrator.cluster.slurm import STATE_CAUSES, TERMINAL_STATES
from orchestrator.errors import OrchestratorError, RecipeError, Terminated, TransportError
from orchestrator.fileio import atomic_open, sha256_file, write_atomic
from orchestrator.reports.artifacts import (
    ReportContext,
    jobs_table,
    window_for,
    write_artifacts,
)
from orchestrator.reports.bottleneck import Load
from orchestrator.resources import packaged
from orchestrator.schema import safe_load
from orchestrator.services.recipes import (
    Health,
    Metrics,
    Resources,
    ServiceRecipe,
    TargetSpec,
    load_recipe,
    mem_bytes,
    parse_recipe,
)
from orchestrator.services.jobscript import expand_home_word
from orchestrator.templating import literal
from orchestrator.times import parse_duration

Progress = Callable[[str], None]
DATASET_ROWS = 5000                  # rows shipped when a client is bounded by time, not count
LEFT_RUNNING = "LEFT_RUNNING.json"   # jobs a session could not cancel, and how to
CLEANUP_PATIENCE = 60.0              # seconds of retries before a cleanup gives up


class ServiceDied(OrchestratorError):
    """A service's job ended under the load: the session stops, writes what it has and fails."""


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:g} ms" if seconds < 1 else f"{seconds:g} s"


def client_recipe(spec: ClientSpec, target_url: str, node_index: int = 0, venv: str = "~/.orchestrator/venv",
                  engine: str | None = None, target_id: str | None = None, target_auth: str = "none") -> ServiceRecipe:
    """A load client as a service recipe: its /metrics is what the monitor scrapes. ``venv``: the
    cluster's client venv (clients that need numpy); ``engine``: the target's (a vector client's API);
    ``target_id``/``target_auth``: the loaded service, whose secret the client reads from its job dir.
    What the kind runs and with which arguments is its module's (``bench/kinds/``)."""
    kind = KINDS[spec.kind]
    max_seconds = spec.warmup + (spec.duration if spec.duration is not None else 3600) + 30
    job = ["--concurrency", str(spec.concurrency), "--warmup", str(spec.warmup), "--out", "requests.jsonl",
           "--go-file", "go", "--max-seconds", str(max_seconds), "--linger", "15"]
    if spec.rate:
        job += ["--rate", str(spec.rate)]
    if spec.duration is not None:
        job += ["--duration", str(spec.duration)]
    if spec.requests is not None:
        job += ["--requests", str(spec.requests)]
    python = f"{venv.rstrip('/')}/bin/python" if kind.venv_python else "python3"
    own = kind.argv(spec, target_url, node_index, {"engine": engine})
    # a wrapped tool's argv (after "--") comes last, after every option of the client job itself
    tool = own[own.index("--"):] if "--" in own else []
    args = [kind.program, *own[:len(own) - len(tool)], *job]
    # the arguments are data (the URL comes from the cluster): rendered as themselves, never as Jinja
    # (the venv's python is a path on the node, where ~ and $VARS expand)
    head = expand_home_word(python) if kind.venv_python else shlex.quote(python)
    command = literal(head + " " + shlex.join(args)) + " --metrics-port {{ port }}"
    if tool:
        command += " " + literal(shlex.join(tool))
    r = spec.resources
    minutes = math.ceil((max_seconds + 900 + 300) / 60)  # + go-wait and linger margin
    return ServiceRecipe(
        name=f"client-{spec.kind}"[:40], command=command, description=f"load client ({spec.kind})",
        resources=Resources(partition=r.get("partition"), cpus_per_task=int(r.get("cpus_per_task", 1)),
                            mem=str(r.get("mem", kind.mem)), time=str(r.get("time", minutes)),
                            account=r.get("account"), qos=r.get("qos"), nodelist=r.get("nodelist")),
        ports=("auto",), health=Health(path="/", timeout=300), metrics=Metrics(path="/metrics", port="port:0"),
        files={name: str(packaged("bench", "workloads", name)) for name in (kind.program, "clientjob.py", *kind.files)},
        # the target's job dir is a sibling of the client's (a service ID is [a-z0-9_-]: no template text)
        environment={"ORCH_TARGET_AUTH": target_auth,
                     **({"ORCH_TARGET_SECRET_FILE": f"{{{{ job_dir }}}}/../{target_id}/secret"} if target_id else {})},
        source="(generated client recipe)")


def with_changes(recipe: ServiceRecipe, changes: dict) -> ServiceRecipe:
    """The recipe with swept fields set (dotted paths under ``service``), validated again."""
    if not changes:
        return recipe
    raw = safe_load(recipe.text) if recipe.text else None
    if not isinstance(raw, dict):
        raise OrchestratorError(f"cannot sweep fields of {recipe.name}: its recipe text is not available")
    for dotted, value in changes.items():
        set_path(raw["service"], dotted, value)
    text = yaml.safe_dump(raw, sort_keys=False)
    return parse_recipe(raw, source=recipe.source, text=text)


@dataclass
class PointRun:
    point: Point
    out_dir: Path
    clients: list[str] = field(default_factory=list)
    targets: dict[str, str] = field(default_factory=dict)   # client service ID -> the service it loads
    go_time: float | None = None
    records: int = 0                      # request records collected (in out_dir/requests.jsonl)
    service_counts: dict[str, int] = field(default_factory=dict)  # target -> items it holds (vector clients)
    monitored: bool = False               # its clients were added to the monitor's targets
    all_done: bool = False                # every client wrote done.json: its files are complete
    redeployed: list[str] = field(default_factory=list)  # services this point deployed anew (swept fields)
    warmup_until: float | None = None
    report: dict | None = None
    interrupted: bool = False


@dataclass
class SessionState:
    session_id: str
    out_dir: Path
    started: list[str] = field(default_factory=list)       # service IDs this session started
    services: dict = field(default_factory=dict)           # name -> service_id (current)
    all_services: list[str] = field(default_factory=list)
    monitor_id: str | None = None
    interrupted: bool = False
    errors: list[str] = field(default_factory=list)
    points: list[PointRun] = field(default_factory=list)


class BenchmarkSession:
    def __init__(self, orch, recipe: BenchmarkRecipe, out_dir: str | Path | None = None, keep: bool = False,
                 progress: Progress | None = None, service_recipes: dict[str, ServiceRecipe] | None = None,
                 rerun_of: str | None = None):
        self.orch = orch
        self.recipe = recipe
        self.keep = keep
        self.say = progress or (lambda m: None)
        self.rerun_of = rerun_of
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        sid = f"{recipe.name}-{stamp}-{secrets.token_hex(2)}"
        base = Path(out_dir) if out_dir else orch.config.results_dir / sid
        self.state = SessionState(sid, base)
        self._attempted_from = orch.servers.submissions()   # submissions before this session are not ours
        limit = orch.config.limits.sweep_points
        size = math.prod(len(v) for v in recipe.sweep.values()) if recipe.sweep else 1
        if size > limit:
            raise OrchestratorError(f"{recipe.source or recipe.name}: benchmark.sweep has {size} points, more than "
                                    f"the limit of {limit} (config.yaml limits.sweep_points)")
        self.points = grid(recipe.sweep)
        self.base_recipes: dict[str, ServiceRecipe] = dict(service_recipes or {})
        self.service_recipes: dict[str, ServiceRecipe] = {}   # as deployed (for the manifest)

    @property
    def is_sweep(self) -> bool:
        return bool(self.recipe.sweep)

    # -- services -----------------------------------------------------------------
    def _base_recipe(self, ref) -> ServiceRecipe:
        if ref.name not in self.base_recipes:
            self.base_recipes[ref.name] = load_recipe(ref.recipe, self.orch.config.recipe_dirs)
        return self.base_recipes[ref.name]

    def _deploy_services(self, point: Point, only_swept: bool = False) -> list[str]:
        """Deploy the services (or, between points, those the point changes); returns new IDs."""
        servers = self.orch.servers
        new = []
        for ref in self.recipe.services:
            changes = service_changes(point, ref.name)
            if only_swept and not changes:
                continue
            if ref.service_id:
                if changes:
                    raise OrchestratorError(f"sweep: {ref.name} is reused ({ref.service_id}), its fields cannot be swept")
                self.state.services[ref.name] = servers.probe(ref.service_id).service_id
                continue
            old = self.state.services.get(ref.name)
            if old and only_swept:
                self._stop([old], wait=True)
            recipe = with_changes(self._base_recipe(ref), changes)
            self.service_recipes[ref.name if not self.is_sweep else f"{ref.name}@{point.label}"] = recipe
            sid = servers.start_service(recipe, progress=self.say)
            self.state.started.append(sid)
            self.state.all_services.append(sid)
            self.state.services[ref.name] = sid
            new.append((sid, recipe))
        for sid, recipe in new:
            servers.wait_until_ready(sid, timeout=recipe.health.timeout if recipe.health else 600, progress=self.say)
        return [sid for sid, _ in new]

    def _start_monitor(self) -> None:
        targets = [TargetSpec(service_id=sid, job_name=name) for name, sid in self.state.services.items()]
        mid = self.orch.monitors.start_monitor(self.recipe.monitor_recipe, targets, progress=self.say,
                                               scrape_interval=self.recipe.scrape_interval, wait=False)
        self.state.started.append(mid)
        self.state.monitor_id = mid
        self.orch.servers.wait_until_ready(mid, timeout=300, progress=self.say)

    def _wait_scraped(self, pr: PointRun) -> None:
        """The load starts only once the services' counters have a baseline: every target scraped
        before the first point; later, only services the point redeployed (the others were scraped
        all along, and a client's own counters are not what the report reads). Prometheus applies
        new targets up to 5 s after a reload (its discovery throttle): not waiting for the clients
        of later points saves that on every point of a sweep."""
        mid = self.state.monitor_id
        targets = self.orch.monitors.record(mid).targets
        if pr.point.index > 0:
            targets = [t for t in targets if t.get("service_id") in set(pr.redeployed)]
            if not targets:
                return
        expected = {t["address"] for t in targets}
        down: list[str] = []

        def step() -> tuple[bool, str]:
            health = {t["instance"]: t["health"] for t in self.orch.monitors.check_monitor_status(mid)["targets"]}
            down[:] = sorted(a for a in expected if health.get(a) != "up")
            return (True, f"monitor {mid} scraping {len(expected) + 1} targets") if not down else (False, "")

        waiting.poll_until(step, timeout=60 + 3 * parse_duration(self.recipe.scrape_interval),
                           interval=min(1.0, parse_duration(self.recipe.scrape_interval) / 4),
                           say=self.say, on_timeout=lambda: OrchestratorError(
                               f"monitor {mid}: targets not up: {', '.join(down)}"))

    # -- clients -----------------------------------------------------------------------
    def _start_clients(self, pr: PointRun) -> None:
        servers = self.orch.servers
        engines = self._engines()
        for spec in self.recipe.clients:
            spec = apply_to_client(spec, pr.point)
            ep = servers.get_service_endpoint(self.state.services[spec.target])
            files = {"payload.json": json.dumps(spec.payload)} if KINDS[spec.kind].ships_payload else {}
            if spec.kind == "pgbench" and spec.options["script"]:
                files[PGBENCH_SCRIPT] = self._beside_recipe(spec.options["script"]).read_text()
            if spec.dataset and KINDS[spec.kind].ships_payload:
                files["dataset.jsonl"] = "".join(json.dumps(r) + "\n" for r in build_rows(
                    self._dataset_spec(spec.dataset), spec.requests or DATASET_ROWS))
            for node in range(spec.nodes):
                recipe = client_recipe(spec, ep.url, node, self.orch.config.remote.venv_dir,
                                       engines.get(spec.target), target_id=ep.service_id, target_auth=ep.auth)
                sid = servers.start_service(recipe, extra_files=files, progress=self.say)
                pr.targets[sid] = spec.target
                self.state.started.append(sid)
                pr.clients.append(sid)
        for sid in pr.clients:
            servers.wait_until_ready(sid, timeout=300, progress=self.say)
        self.orch.monitors.add_targets(self.state.monitor_id,
                                       [TargetSpec(service_id=sid, job_name="client") for sid in pr.clients])
        pr.monitored = True

    def _beside_recipe(self, path: str) -> Path:
        p = Path(path).expanduser()
        return p if p.is_absolute() or not self.recipe.source else Path(self.recipe.source).parent / p

    def preflight(self) -> None:
        """What can be known wrong before any job is submitted: nothing is started when it fails."""
        for i, spec in enumerate(self.recipe.clients):
            where = f"{self.recipe.source or self.recipe.name}: benchmark.clients[{i}]"
            for check in KINDS[spec.kind].preflight(spec):   # a wrapped tool: there, and taking its flags
                self.say(f"checking {check.what} on the login node")
                result = self.orch.transport.run(check.command, timeout=180)
                if result.exit_code != 0:
                    said = (result.stderr or result.stdout).strip()[-1500:]
                    raise RecipeError(f"{where} ({spec.kind}): {check.what}: refused before any job was submitted:\n"
                                      f"{said or f'exit {result.exit_code}'}")
            if spec.kind != "pgbench":
                continue
            if spec.options["script"] and not self._beside_recipe(spec.options["script"]).is_file():
                raise RecipeError(f"{where}.script: {self._beside_recipe(spec.options['script'])}: no such file")
            ref = next(r for r in self.recipe.services if r.name == spec.target)
            if ref.recipe is None:
                continue  # a running service: its memory is what it is
            mem = self._base_recipe(ref).resources.mem
            limit = mem_bytes(mem) if mem else None
            need = pgbench_bytes(spec.options["scale"])
            if limit is not None and need > limit:
                raise RecipeError(
                    f"{where}.scale: pgbench at scale {spec.options['scale']} needs about {need / 2**30:.1f} GiB of "
                    f"tables and indexes, more than the {spec.target} job's memory ({mem}); lower the scale or "
                    f"raise {spec.target}'s resources.mem")

    def _dataset_spec(self, ds):
        """A ShareGPT path is relative to the benchmark recipe's folder."""
        if ds.kind == "sharegpt" and ds.path and not Path(ds.path).expanduser().is_absolute() and self.recipe.source:
            return replace(ds, path=str(Path(self.recipe.source).parent / ds.path))
        return ds

    def _go(self, pr: PointRun) -> None:
        pr.go_time = waiting.now()   # the wall clock (replays give back the recorded one)
        self.orch.servers.signal_go(pr.clients)
        self.say(f"{pr.point.label}: load started on {len(pr.clients)} client(s)")

    def _wait_clients(self, pr: PointRun) -> None:
        """Until every client is done, or its job ended without finishing (its node failed, it was
        cancelled): those are named in the report, their records so far kept."""
        specs = [apply_to_client(s, pr.point) for s in self.recipe.clients]
        budget = max((s.warmup + (s.duration or 3600)) for s in specs) + 120
        lost: dict[str, str] = {}

        services = {sid: name for name, sid in self.state.services.items()}

        def step() -> tuple[bool, str]:
            # the services' jobs in the same command: a service that dies under the load ends the session
            found = self.orch.servers.read_progress(pr.clients + list(services))
            for sid, name in services.items():
                job = found.pop(sid, {}).get("job")
                if job is not None and job.state in TERMINAL_STATES:
                    raise ServiceDied(self._service_died(name, sid, job))
            for sid, f in found.items():
                job = f["job"]
                if not f["done"] and job is not None and job.state in TERMINAL_STATES and sid not in lost:
                    cause = STATE_CAUSES.get(job.state, f"job {job.state}")
                    lost[sid] = f"{sid}: client job {job.job_id} on {job.nodelist or '?'} ended {job.state} " \
                                f"({cause}) before it finished; its records up to then are kept"
                    self.say(lost[sid])
            docs = [f["progress"] for f in found.values() if f["progress"]]
            done = sum(f["done"] for f in found.values())
            ok, err, flight = (sum(d.get(k, 0) for d in docs) for k in ("ok", "errors", "in_flight"))
            elapsed = time.time() - pr.go_time
            lat = "".join(f", {name} <= {_ms(max(vals))}" for name, vals in
                          (("p50", [d["p50_le"] for d in docs if d.get("p50_le")]),
                           ("p99", [d["p99_le"] for d in docs if d.get("p99_le")])) if vals)
            pr.all_done = done >= len(pr.clients)
            return done + len(lost) >= len(pr.clients), (
                f"{pr.point.label}: load: {ok} ok, {err} errors, {ok / max(elapsed, 1e-9):.0f}/s{lat}, "
                f"{flight} in flight, {elapsed:.0f}s elapsed, {done}/{len(pr.clients)} clients done"
                + (f", {len(lost)} lost" if lost else ""))

        expected = max((s.warmup + s.duration) for s in specs if s.duration) if any(s.duration for s in specs) else None
        def pause() -> float:  # every 2 s during the load, every 0.25 s once its end is due
            due = (pr.go_time + expected - time.time()) if expected else 0.0
            return 2.0 if due > 2.0 else max(0.25, due)

        waiting.poll_until(step, timeout=budget, interval=pause, say=self.say, every=5, expected=expected,
                           on_timeout=lambda: OrchestratorError(
            f"clients did not finish within {budget:.0f}s"))
        self.state.errors.extend(lost.values())

    def _service_died(self, name: str, sid: str, job) -> str:
        """What ends a session whose service's job ended under the load: the job, its state, and the
        engine's own last log lines (the cause is usually there: a crash, an out-of-memory kill)."""
        cause = STATE_CAUSES.get(job.state, f"job {job.state}")
        try:
            tail = self.orch.servers.logs(sid, lines=12).log.rstrip()
        except OrchestratorError as exc:
            tail = f"(its log could not be read: {exc})"
        return (f"service {name} ({sid}): job {job.job_id} on {job.nodelist or '?'} ended {job.state} ({cause}) "
                f"during the load; its last log lines:\n{tail}")

    def _collect_records(self, pr: PointRun, builder: TableBuilder) -> None:
        """Download every client's records (partial ones too) and its warm-up end; each record goes
        to requests.jsonl and the table's columns as it is read, so none is held."""
        cdir = pr.out_dir / "clients"
        cdir.mkdir(parents=True, exist_ok=True)
        extra = {"point": pr.point.label} if self.is_sweep else {}
        def dest(sid: str, name: str) -> Path:
            return cdir / (f"{sid}.jsonl" if name == jobdir.REQUESTS else f"{sid}.done.json")
        names = [jobdir.REQUESTS, jobdir.DONE]
        try:  # every client's files in one compressed transfer
            got = self.orch.servers.fetch_files(pr.clients, names, dest)
        except (OrchestratorError, OSError, tarfile.TarError) as exc:
            self.say(f"collecting the clients' files in one transfer failed ({exc}); fetching them one by one")
            got = {(sid, n) for sid in pr.clients for n in names if self.orch.servers.fetch_file(sid, n, dest(sid, n))}
        with atomic_open(pr.out_dir / "requests.jsonl", "w") as out:
            for sid in pr.clients:
                local, done = dest(sid, jobdir.REQUESTS), dest(sid, jobdir.DONE)
                for name in names:
                    if (sid, name) not in got:
                        self.state.errors.append(f"{sid}: no {name} (client did not start or finish)")
                if local.exists():
                    self._read_client_file(sid, local, {"target": pr.targets.get(sid), **extra}, builder, out)
                if done.exists():
                    try:
                        doc = json.loads(done.read_text())
                        w = float(doc["warmup_until"])
                    except (json.JSONDecodeError, KeyError, TypeError, ValueError):
                        self.state.errors.append(f"{sid}: done.json unreadable; warm-up end taken from the records")
                        continue
                    pr.warmup_until = w if pr.warmup_until is None else max(pr.warmup_until, w)
                    count = doc.get("service_count")  # what the service said it holds, asked after the load
                    if isinstance(count, int) and not isinstance(count, bool):
                        target = pr.targets.get(sid)
                        pr.service_counts[target] = max(pr.service_counts.get(target, 0), count)

    def _read_client_file(self, sid: str, path: Path, extra: dict, builder: TableBuilder, out) -> None:
        with open(path) as f:
            pending = None  # a line that failed to parse: only the last one may (the client was stopped mid-write)
            for i, line in enumerate(f, 1):
                if not line.strip():
                    continue
                if pending is not None:
                    raise OrchestratorError(f"{path}: line {pending} is not a JSON record")
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError:
                    pending = i
                    continue
                if not isinstance(rec, dict):
                    raise OrchestratorError(f"{path}: line {i} is not a JSON object")
                builder.add({**rec, **extra}, where=f"{path}: line {i}")
                out.write(jsonl_line(rec, extra, line))
            if pending is not None:
                self.state.errors.append(f"{sid}: last record was cut short by the stop and skipped")

    def _finish_point(self, pr: PointRun) -> None:
        builder = TableBuilder()
        with builder.abandon_on_error():
            pr.out_dir.mkdir(parents=True, exist_ok=True)
            if pr.clients:
                # no more load (files stay on the cluster); a client that did not finish is waited for,
                # so that its file is no longer written while it is read
                self._stop(pr.clients, wait=not pr.all_done)
                self._collect_records(pr, builder)
            else:
                write_atomic(pr.out_dir / "requests.jsonl", "")
        with builder.finish() as table:
            pr.records = len(table)
            if pr.warmup_until is None and len(table):
                pr.warmup_until = float(table.column("start").min()) + max(s.warmup for s in self.recipe.clients)
            self._report_point(pr, table)

    def _collect_logs(self, pr: PointRun) -> list[dict]:
        """Each job's SLURM output (its last 256 KiB) under logs/, in one transfer, with the watcher's
        verdict where a watcher explained a job's end."""
        from orchestrator.state import ServiceRecord, StateStore
        jobs = {sid: "service" for sid in self.state.services.values()}
        jobs.update({sid: "client" for sid in pr.clients})
        if self.state.monitor_id:
            jobs[self.state.monitor_id] = "monitor"
        try:
            got = self.orch.servers.fetch_logs(list(jobs), pr.out_dir / "logs")
        except (OrchestratorError, OSError, tarfile.TarError) as exc:
            self.state.errors.append(f"collecting the jobs' logs: {exc}")
            return []
        tracked = self.orch.servers.records()
        watched = StateStore(self.orch.config.state_dir, "watch").load()
        out = []
        for sid, role in jobs.items():
            if sid not in got:
                continue
            job_id = (tracked.get(sid) or ServiceRecord(sid)).job_id
            w = watched.get(job_id, {})
            out.append({"service_id": sid, "role": role, "job_id": job_id or None, "path": f"logs/{sid}.log",
                        **({"verdict": w["verdict"], "evidence": w.get("evidence", [])} if w.get("verdict") else {})})
        return out

    def _report_point(self, pr: PointRun, table: RequestTable) -> None:
        window = window_for(table, pr.warmup_until)
        ctx = self.context(pr)
        ctx.logs = self._collect_logs(pr)  # (while the monitor's last scrape of the window lands)
        if self.state.monitor_id and not pr.interrupted and window.end > 0:
            ctx.prometheus = gather_prometheus(self.orch.monitors, self.state.monitor_id, ctx.services,
                                               self.recipe.scrape_interval, window, pr.go_time, self.state.errors,
                                               ctx.engines)
        pr.report = write_artifacts(ctx, table, window)
        self.say(f"report: {pr.out_dir / 'report.html'}")
        if pr.monitored and self.state.monitor_id and not pr.interrupted:
            try:
                self.orch.monitors.remove_targets(self.state.monitor_id, pr.clients)
            except OrchestratorError as exc:
                self.state.errors.append(f"removing clients from the monitor: {exc}")

    def _begin_point(self, pr: PointRun) -> None:
        """The point's services (those it changes) and its clients, which wait for their go."""
        self.say(f"point {pr.point.index + 1}/{len(self.points)}: {pr.point.label}" if self.is_sweep else
                 "running the load")
        if pr.point.index > 0:
            new = self._deploy_services(pr.point, only_swept=True)
            pr.redeployed = list(new)
            if new:
                self.orch.monitors.add_targets(self.state.monitor_id, [
                    TargetSpec(service_id=sid, job_name=name) for name, sid in self.state.services.items() if sid in new])
        self._start_clients(pr)

    def _run_load(self, pr: PointRun) -> None:
        self._wait_scraped(pr)
        self._go(pr)
        self._wait_clients(pr)

    def _point_run(self, point: Point) -> PointRun:
        out = self.state.out_dir / "points" / point.dirname if self.is_sweep else self.state.out_dir
        pr = PointRun(point, out)
        self.state.points.append(pr)
        return pr

    def _changes_services(self, point: Point) -> bool:
        return any(service_changes(point, ref.name) for ref in self.recipe.services)

    # -- the whole session ---------------------------------------------------------------
    def context(self, pr: PointRun) -> ReportContext:
        """What the point's report is made of (gathered now: jobs, runtime facts)."""
        st = self.state
        return ReportContext(
            session_id=st.session_id + (f"/{pr.point.label}" if self.is_sweep else ""),
            benchmark=self.recipe.name, out_dir=pr.out_dir, scrape_interval=self.recipe.scrape_interval,
            services=dict(st.services), clients=pr.clients, monitor_id=st.monitor_id, go_time=pr.go_time,
            interrupted=pr.interrupted, errors=st.errors, recipes=self.recipes_manifest(),
            jobs=jobs_table(st.services, pr.clients, st.monitor_id, self.orch.servers.records()),
            runtime=self._runtime_facts(), percentiles=self.recipe.clients[0].percentiles,
            client_slo=self.recipe.clients[0].slo, engines=self._engines(), service_counts=dict(pr.service_counts),
            load=self._offered(pr))

    def _offered(self, pr: PointRun) -> Load:
        """What the point's clients offered (the first client's shape; jobs of every client)."""
        specs = [apply_to_client(s, pr.point) for s in self.recipe.clients]
        return Load(jobs=sum(s.nodes for s in specs), concurrency=specs[0].concurrency,
                    rate=None if any(s.rate is None for s in specs) else sum(s.rate * s.nodes for s in specs))

    def _engines(self) -> dict[str, str]:
        """Service name -> engine, from the recipes deployed; a reused service's from what was recorded
        when this laptop started it."""
        out = {name: r.engine for name, r in self.base_recipes.items() if r.engine}
        tracked = None
        for ref in self.recipe.services:
            if ref.service_id and ref.name not in out:
                tracked = tracked if tracked is not None else self.orch.servers.records()
                sid = self.state.services.get(ref.name, ref.service_id)
                engine = tracked[sid].engine if sid in tracked else None
                if engine:
                    out[ref.name] = engine
        return out

    def sweep_data(self):
        from orchestrator.reports.sweep import SweepData, SweepPoint
        st = self.state
        clients = [c for p in st.points for c in p.clients]
        ctx = ReportContext(session_id=st.session_id, benchmark=self.recipe.name, out_dir=st.out_dir,
                            scrape_interval=self.recipe.scrape_interval, services=dict(st.services), clients=clients,
                            monitor_id=st.monitor_id, interrupted=st.interrupted, errors=st.errors,
                            recipes=self.recipes_manifest(),
                            jobs=jobs_table(st.services, clients, st.monitor_id, self.orch.servers.records()),
                            runtime=self._runtime_facts())
        points = [SweepPoint(p.point, p.report, p.out_dir, p.go_time, p.clients) for p in st.points if p.report]
        return SweepData(ctx, self.recipe.sweep, self.recipe.slo, points)

    def recipes_manifest(self) -> dict:
        return {"benchmark_recipe": {"source": self.recipe.source, "sha256": self.recipe.sha256, "text": self.recipe.text},
                # as loaded (what a rerun deploys); sweeps also record each point's deployed variant
                "service_recipes": {n: _recipe_entry(r) for n, r in self.base_recipes.items()},
                **({"deployed_service_recipes": {n: _recipe_entry(r) for n, r in self.service_recipes.items()}}
                   if self.is_sweep else {}),
                **({"rerun_of": self.rerun_of} if self.rerun_of else {})}

    def run(self) -> dict:
        from orchestrator.logs import log_context
        with log_context(session=self.state.session_id):
            return self._run()

    def _run(self) -> dict:
        self.preflight()
        self.state.out_dir.mkdir(parents=True, exist_ok=True)
        self.say(f"session {self.state.session_id} -> {self.state.out_dir}"
                 + (f" ({len(self.points)} points)" if self.is_sweep else ""))
        current = None
        ended_by: BaseException | None = None
        try:
            self._deploy_services(self.points[0])
            self._start_monitor()
            ready: PointRun | None = None
            for i, point in enumerate(self.points):
                current, ready = ready or self._point_run(point), None
                if not current.clients:
                    self._begin_point(current)
                self._run_load(current)
                following = self.points[i + 1] if i + 1 < len(self.points) else None
                if following is not None and not self._changes_services(following):
                    # the next point's clients start now and wait for their go: this point's
                    # collection and report overlap their scheduling
                    ready = self._point_run(following)
                    self._begin_point(ready)
                self._finish_point(current)
                current = None
        except (KeyboardInterrupt, Terminated) as exc:
            self.state.interrupted = True
            ended_by = exc
            self.say(f"{'interrupted' if isinstance(exc, KeyboardInterrupt) else exc}: stopping what this "
                     "session started, then writing what was collected")
        except OrchestratorError as exc:
            self.state.errors.append(str(exc))
            self.say(f"error: {exc}")
            if isinstance(exc, ServiceDied):   # the session failed: its report is written, then it says so
                ended_by = exc
        except Exception as exc:  # a lost connection, a bug: the jobs must still go
            self.state.errors.append(f"{type(exc).__name__}: {exc}")
            self.say(f"error: {type(exc).__name__}: {exc}")
            ended_by = exc
        result = None
        try:
            result = self._write_what_was_collected(current)
        except (Exception, KeyboardInterrupt, Terminated) as exc:
            self.state.errors.append(f"writing the artifacts: {type(exc).__name__}: {exc}")
            ended_by = ended_by or exc
        finally:
            if not self.keep or ended_by is not None:
                self._cleanup()
            else:
                self.say(f"kept running: {', '.join(self.state.started)}")
        if ended_by is not None:
            raise ended_by
        if self.state.errors and not any(p.records for p in self.state.points):
            raise OrchestratorError("; ".join(self.state.errors))
        return {**result, "out_dir": str(self.state.out_dir)}

    def _write_what_was_collected(self, current: PointRun | None) -> dict:
        if current is not None:
            current.interrupted = self.state.interrupted
            self._finish_point(current)
        if not self.state.points:
            self.state.points.append(PointRun(self.points[0], self.state.out_dir, interrupted=self.state.interrupted))
            self._finish_point(self.state.points[0])
        if not self.is_sweep:
            return self.state.points[0].report
        from orchestrator.reports.sweep import write_sweep_artifacts
        result = write_sweep_artifacts(self.sweep_data())
        self.say(f"sweep report: {self.state.out_dir / 'report.html'}")
        for v in result["verdicts"]:
            self.say(v["text"])
        return result

    def _cleanup(self) -> None:
        """Cancel every job this session started, in one command; while the cluster cannot be reached,
        retry with backoff (about a minute), then record what is left and the one command that cancels it.
        Jobs whose submission got no answer count too (they may exist)."""
        left = list(dict.fromkeys(self.state.started + self.orch.servers.submitted_since(self._attempted_from)))
        if not left:
            return
        delay, waited = 1.0, 0.0
        while True:
            try:
                result = self.orch.servers.cancel_many(left)
                refused = {sid: r for sid, r in result.items() if r.startswith("refused")}
                for sid, r in refused.items():
                    self.state.errors.append(f"{sid}: not cancelled: its job ID now names another job ({r})")
                self._left_file().unlink(missing_ok=True)
                return
            except (TransportError, OSError) as exc:
                if waited >= CLEANUP_PATIENCE:
                    self._record_left(left, exc)
                    return
                self.say(f"cluster unreachable ({exc}); retrying the cleanup in {delay:.0f}s")
                waiting.sleep(delay)
                waited += delay
                delay = min(delay * 2, 16.0)
                with contextlib.suppress(Exception):
                    self.orch.transport.close()  # the next call opens a fresh connection

    def _left_file(self) -> Path:
        return self.state.out_dir / LEFT_RUNNING

    def _record_left(self, left: list[str], exc: BaseException) -> None:
        tracked = self.orch.servers.records()
        jobs = [{"service_id": sid, "job_id": tracked[sid].job_id if sid in tracked else None} for sid in left]
        self.state.out_dir.mkdir(parents=True, exist_ok=True)
        write_atomic(self._left_file(), json.dumps({"session": self.state.session_id, "reason": str(exc),
                                                    "jobs": jobs}, indent=2))
        self.say(f"could not reach the cluster to cancel {len(jobs)} job(s) ({exc}); they are recorded in "
                 f"{self._left_file()}; cancel them with: orch bench cleanup {self.state.out_dir}")
        self.state.errors.append(f"jobs left running (cluster unreachable): {', '.join(left)}")

    def _runtime_facts(self) -> dict:
        """What makes a rerun comparable: binary/image facts and sbatch options of each service job."""
        ids = list(dict.fromkeys(self.state.all_services + ([self.state.monitor_id] if self.state.monitor_id else [])))
        if not ids:
            return {}
        try:
            return self.orch.servers.runtime_facts(ids)
        except OrchestratorError as exc:
            self.state.errors.append(f"runtime facts: {exc}")
            return {}

    def _stop(self, ids: list[str], wait: bool = False) -> None:
        """scancel what is still running (one command); with ``wait``, until it has ended (bounded)."""
        try:
            self.orch.servers.cancel_many(ids)
            if wait:
                self.orch.servers.wait_until_ended(ids, timeout=30)
        except OrchestratorError as exc:
            self.state.errors.append(f"could not stop {', '.join(ids)}: {exc}")


def _recipe_entry(r: ServiceRecipe) -> dict:
    return {"source": r.source, "sha256": r.sha256, "text": r.text,
            "files": {name: sha256_file(p) for name, p in r.files.items()}}
