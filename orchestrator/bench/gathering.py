"""A session's gathering phase: the clients' records and logs, the monitor's window, the report."""

from __future__ import annotations

import json
import re
import tarfile
from pathlib import Path

from orchestrator.analysis.records import RequestTable, TableBuilder, jsonl_line
from orchestrator.bench.points import apply_to_client
from orchestrator.bench.collect import gather_prometheus
from orchestrator.bench.kinds import KINDS
from orchestrator.bench.plan import load_text
from orchestrator.bench.context import SessionContext
from orchestrator.bench.runstate import PointRun
from orchestrator.cluster import jobdir
from orchestrator.errors import OrchestratorError
from orchestrator.fileio import atomic_open, sha256_file, write_atomic
from orchestrator.reports.artifacts import ReportContext, jobs_table, window_for, write_artifacts
from orchestrator.analysis.bottleneck import Load
from orchestrator.services.recipes import ServiceRecipe


TOOL_WARNING = re.compile(r"^\[orchestrator [0-9TZ:-]+\] warning: (.+)$", re.M)


def job_warnings(log: Path) -> list[str]:
    """What the tool's own part of a job script warned of (``log "warning: ..."``: an exporter missing on
    the node, say), in its log's order: lines with the tool's prefix, not the service's own warnings."""
    try:
        text = log.read_text(errors="replace")
    except OSError:
        return []
    return list(dict.fromkeys(m.group(1).strip() for m in TOOL_WARNING.finditer(text)))


class Gather:
    """The gathering phase: each point's records, logs and monitor window, its report, and the session's
    artifacts. Reads the context and its state; writes the point's results under the state's output dir."""

    def __init__(self, ctx: SessionContext):
        self.ctx = ctx

    def _collect_records(self, pr: PointRun, builder: TableBuilder) -> None:
        """Download every client's records (partial ones too) and its warm-up end; each record goes
        to requests.jsonl and the table's columns as it is read, so none is held."""
        cdir = pr.out_dir / "clients"
        cdir.mkdir(parents=True, exist_ok=True)
        extra = {"point": pr.point.label} if self.ctx.is_sweep else {}
        def dest(sid: str, name: str) -> Path:
            return cdir / (f"{sid}.jsonl" if name == jobdir.REQUESTS else f"{sid}.done.json")
        names = [jobdir.REQUESTS, jobdir.DONE]
        try:  # every client's files in one compressed transfer
            got = self.ctx.orch.servers.files.fetch_files(pr.clients, names, dest)
        except (OrchestratorError, OSError, tarfile.TarError) as exc:
            self.ctx.say(f"collecting the clients' files in one transfer failed ({exc}); fetching them one by one")
            got = {(sid, n) for sid in pr.clients for n in names if self.ctx.orch.servers.files.fetch_file(sid, n, dest(sid, n))}
        with atomic_open(pr.out_dir / "requests.jsonl", "w") as out:
            for sid in pr.clients:
                local, done = dest(sid, jobdir.REQUESTS), dest(sid, jobdir.DONE)
                for name in names:
                    if (sid, name) not in got:
                        self.ctx.state.errors.append(f"{sid}: no {name} (client did not start or finish)")
                if local.exists():
                    self._read_client_file(sid, local, {"target": pr.targets.get(sid), **extra}, builder, out)
                if done.exists():
                    try:
                        doc = json.loads(done.read_text())
                        w = float(doc["warmup_until"])
                    except (json.JSONDecodeError, KeyError, TypeError, ValueError):
                        self.ctx.state.errors.append(f"{sid}: done.json unreadable; warm-up end taken from the records")
                        continue
                    pr.warmup_until = w if pr.warmup_until is None else max(pr.warmup_until, w)
                    if isinstance(doc.get("conversations_cut"), int):   # multiturn: ended to fit the context
                        pr.conversations["cut"] = pr.conversations.get("cut", 0) + doc["conversations_cut"]
                        pr.conversations["context_tokens"] = doc.get("context_tokens")
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
                self.ctx.state.errors.append(f"{sid}: last record was cut short by the stop and skipped")

    def finish_point(self, pr: PointRun) -> None:
        builder = TableBuilder()
        with builder.abandon_on_error():
            pr.out_dir.mkdir(parents=True, exist_ok=True)
            if pr.clients:
                # no more load (files stay on the cluster); a client that did not finish is waited for,
                # so that its file is no longer written while it is read
                self.ctx.stop(pr.clients, wait=not pr.all_done)
                self._collect_records(pr, builder)
            else:
                write_atomic(pr.out_dir / "requests.jsonl", "")
        with builder.finish() as table:
            pr.records = len(table)
            if pr.warmup_until is None and len(table):
                pr.warmup_until = float(table.column("start").min()) + max(s.warmup for s in self.ctx.recipe.clients)
            self._report_point(pr, table)

    def _collect_logs(self, pr: PointRun) -> list[dict]:
        """Each job's SLURM output (its last 256 KiB) under logs/, in one transfer, with the watcher's
        verdict where a watcher explained a job's end."""
        from orchestrator.state import ServiceRecord, StateStore
        jobs = {sid: "service" for sid in self.ctx.state.services.values()}
        jobs.update({sid: "client" for sid in pr.clients})
        if self.ctx.state.monitor_id:
            jobs[self.ctx.state.monitor_id] = "monitor"
        try:
            got = self.ctx.orch.servers.files.fetch_logs(list(jobs), pr.out_dir / "logs")
        except (OrchestratorError, OSError, tarfile.TarError) as exc:
            self.ctx.state.errors.append(f"collecting the jobs' logs: {exc}")
            return []
        tracked = self.ctx.orch.servers.registry.records()
        watched = StateStore(self.ctx.orch.config.state_dir, "watch").load()
        out = []
        for sid, role in jobs.items():
            if sid not in got:
                continue
            job_id = (tracked.get(sid) or ServiceRecord(sid)).job_id
            w = watched.get(job_id, {})
            warnings = job_warnings(got[sid])
            out.append({"service_id": sid, "role": role, "job_id": job_id or None, "path": f"logs/{sid}.log",
                        **({"verdict": w["verdict"], "evidence": w.get("evidence", [])} if w.get("verdict") else {}),
                        **({"warnings": warnings} if warnings else {})})
            for line in warnings:
                self.ctx.say(f"{sid}: {line}")
        return out

    def _collect_rpc(self, pr: PointRun, window) -> list[dict]:
        """Services across nodes through llama.cpp's RPC gate: each worker's traffic in the window, from
        the counters its gate keeps in the job dir (``rpc-<node>.json``), in one transfer."""
        from orchestrator.analysis.rpc import worker_traffic
        from orchestrator.cluster.slurm import expand_nodelist
        records = self.ctx.orch.servers.registry.records()
        gated = {name: sid for name, sid in self.ctx.state.services.items()
                 if "rpc_gate.py" in self._recipe_of(name).files and sid in records}
        hosts = {sid: expand_nodelist(records[sid].nodelist)[1:] for sid in gated.values()}
        names = sorted({f"rpc-{h}.json" for hs in hosts.values() for h in hs})
        if not names:
            return []
        dest = pr.out_dir / "rpc"
        dest.mkdir(parents=True, exist_ok=True)
        try:
            got = self.ctx.orch.servers.files.fetch_files(list(gated.values()), names, lambda sid, n: dest / f"{sid}.{n}")
        except (OrchestratorError, OSError, tarfile.TarError) as exc:
            self.ctx.state.errors.append(f"collecting the RPC workers' counters: {exc}")
            return []
        out = []
        for name, sid in gated.items():
            for host in hosts[sid]:
                if (sid, f"rpc-{host}.json") in got:
                    stats = json.loads((dest / f"{sid}.rpc-{host}.json").read_text())
                    out.append(worker_traffic(name, host, stats, window.start, window.end))
                else:
                    self.ctx.state.errors.append(f"{sid}: no rpc-{host}.json (its worker's gate never ran)")
        return out

    def _recipe_of(self, name: str):
        """The recipe a service of the session (or one of its replicas) was deployed from."""
        recipe = self.ctx.base_recipes.get(self.ctx.group_of(name))
        return recipe if recipe is not None else ServiceRecipe(name=name, command="")

    def _report_point(self, pr: PointRun, table: RequestTable) -> None:
        window = window_for(table, pr.warmup_until)
        ctx = self.report_context(pr)
        ctx.logs = self._collect_logs(pr)  # (while the monitor's last scrape of the window lands)
        ctx.rpc = self._collect_rpc(pr, window) if window.end > 0 else []
        if self.ctx.state.monitor_id and not pr.interrupted and window.end > 0:
            ctx.prometheus = gather_prometheus(self.ctx.orch.monitors, self.ctx.state.monitor_id, ctx.services,
                                               self.ctx.recipe.scrape_interval, window, pr.go_time, self.ctx.state.errors,
                                               ctx.engines)
        pr.report = write_artifacts(ctx, table, window)
        self.ctx.say(f"report: {pr.out_dir / 'report.html'}")
        # the next point's monitor must not show these clients; after the last one the monitor is
        # cancelled with the session (unless kept), and telling it first would be a command for nothing
        if pr.monitored and self.ctx.state.monitor_id and not pr.interrupted and not (pr.last and not self.ctx.keep):
            try:
                self.ctx.orch.monitors.remove_targets(self.ctx.state.monitor_id, pr.clients)
            except OrchestratorError as exc:
                self.ctx.state.errors.append(f"removing clients from the monitor: {exc}")

    def report_context(self, pr: PointRun) -> ReportContext:
        """What the point's report is made of (gathered now: jobs, runtime facts)."""
        st = self.ctx.state
        jobs = jobs_table(st.services, pr.clients, st.monitor_id, self.ctx.orch.servers.registry.records())
        for row in jobs:   # a service the tool did not start: what it knows of it, and that it did not start it
            ext = next((e for e in self.ctx.externals.values() if e.sid == row["service_id"]), None)
            if ext is not None:
                row.update(job_id=ext.job_id, nodes=ext.node or ext.host, recipe=None, url=ext.url,
                           deployed_by_tool=False, auth="bearer" if ext.key else "none")
        runtime = self._runtime_facts()
        return ReportContext(
            session_id=st.session_id + (f"/{pr.point.label}" if self.ctx.is_sweep else ""),
            benchmark=self.ctx.recipe.name, out_dir=pr.out_dir, scrape_interval=self.ctx.recipe.scrape_interval,
            services=dict(st.services), clients=pr.clients, monitor_id=st.monitor_id, go_time=pr.go_time,
            interrupted=pr.interrupted, errors=st.errors, recipes=self.recipes_manifest(),
            jobs=jobs, runtime=runtime, percentiles=self.ctx.recipe.clients[0].percentiles,
            client_slo=self.ctx.recipe.clients[0].slo, engines=self.ctx.engines(), service_counts=dict(pr.service_counts),
            load=self._offered(pr), replicas={g: list(n) for g, n in st.replicas.items()},
            validity=self.ctx.recipe.validity, cache=dict(pr.cache), conversations=dict(pr.conversations),
            lost_clients=list(pr.lost), what_ran=self._what_ran(pr, jobs, runtime))

    def _what_ran(self, pr: PointRun, jobs: list[dict], runtime: dict) -> list[dict]:
        """What the report says first: each service (engine, version, nodes) and each client's load as the
        point ran it (rate, arrivals, connections, bound, warm-up, lengths, model)."""
        nodes = {j["service_id"]: j.get("nodes") for j in jobs}
        engines = self.ctx.engines()
        out = []
        for name, sid in self.ctx.state.services.items():
            facts = (runtime.get(sid) or {}).get("runtime") or []
            version = next((f.split(":", 1)[1].strip() for f in facts if f.startswith(("version:", "image:"))), None)
            ext = self.ctx.externals.get(name)
            if ext is not None:
                text = ", ".join(x for x in (engines.get(name), ext.described) if x)
                out.append({"role": "service", "name": name, "text": text})
                continue
            text = ", ".join(x for x in (engines.get(name), version and f"version {version}",
                                         nodes.get(sid) and f"on {nodes[sid]}", sid) if x)
            out.append({"role": "service", "name": name, "text": text})
        for i, spec in enumerate(self.ctx.recipe.clients):
            spec = apply_to_client(spec, pr.point)
            parts = [f"{spec.kind} against {spec.target}", load_text(spec)]
            ds = spec.dataset
            if ds is not None and ds.kind == "synthetic" and KINDS[spec.kind].tokens:
                parts.append(f"prompts of {ds.input_tokens[0]:g} tokens, answers of {ds.output_tokens[0]:g} "
                             "(means)")
            elif ds is not None:
                parts.append(f"dataset {ds.kind}" + (f" ({Path(ds.path).name})" if ds.path else ""))
            elif spec.payload.get("max_tokens"):
                parts.append(f"answers of up to {spec.payload['max_tokens']} tokens")
            if spec.payload.get("model") or spec.models:
                parts.append("model " + (spec.payload.get("model") or ", ".join(spec.models)))
            out.append({"role": "client", "name": str(i), "text": "; ".join(parts)})
        return out

    def _offered(self, pr: PointRun) -> Load:
        """What the point's clients offered (the first client's shape; jobs of every client)."""
        specs = [apply_to_client(s, pr.point) for s in self.ctx.recipe.clients]
        return Load(jobs=sum(s.nodes for s in specs), concurrency=specs[0].concurrency,
                    rate=None if any(s.rate is None for s in specs) else sum(s.rate * s.nodes for s in specs))

    def sweep_data(self):
        from orchestrator.reports.sweep import SweepData, SweepPoint
        st = self.ctx.state
        clients = [c for p in st.points for c in p.clients]
        ctx = ReportContext(session_id=st.session_id, benchmark=self.ctx.recipe.name, out_dir=st.out_dir,
                            scrape_interval=self.ctx.recipe.scrape_interval, services=dict(st.services), clients=clients,
                            monitor_id=st.monitor_id, interrupted=st.interrupted, errors=st.errors,
                            recipes=self.recipes_manifest(),
                            jobs=jobs_table(st.services, clients, st.monitor_id, self.ctx.orch.servers.registry.records()),
                            runtime=self._runtime_facts())
        points = [SweepPoint(p.point, p.report, p.out_dir, p.go_time, p.clients) for p in st.points if p.report]
        search = self.ctx.recipe.search
        if search is None:
            return SweepData(ctx, self.ctx.recipe.sweep, self.ctx.recipe.slo, points)
        from orchestrator.analysis.search import answer
        return SweepData(ctx, {search.field: [e["value"] for e in self.ctx.search_log]}, self.ctx.recipe.slo, points,
                         search={**search.to_dict(), "points": self.ctx.search_log, "answer": answer(self.ctx.tried())})

    def recipes_manifest(self) -> dict:
        return {"benchmark_recipe": {"source": self.ctx.recipe.source, "sha256": self.ctx.recipe.sha256, "text": self.ctx.recipe.text},
                # as loaded (what a rerun deploys); sweeps also record each point's deployed variant
                "service_recipes": {n: _recipe_entry(r) for n, r in self.ctx.base_recipes.items()},
                **({"deployed_service_recipes": {n: _recipe_entry(r) for n, r in self.ctx.service_recipes.items()}}
                   if self.ctx.is_sweep else {}),
                **({"rerun_of": self.ctx.rerun_of} if self.ctx.rerun_of else {})}

    def _runtime_facts(self) -> dict:
        """What makes a rerun comparable: binary/image facts and sbatch options of each service job."""
        ids = list(dict.fromkeys(self.ctx.state.all_services + ([self.ctx.state.monitor_id] if self.ctx.state.monitor_id else [])))
        if not ids:
            return {}
        try:
            return self.ctx.orch.servers.files.runtime_facts(ids)
        except OrchestratorError as exc:
            self.ctx.state.errors.append(f"runtime facts: {exc}")
            return {}

    def write_what_was_collected(self, current: PointRun | None) -> dict:
        if current is not None:
            current.interrupted = self.ctx.state.interrupted
            self.finish_point(current)
        if not self.ctx.state.points:
            self.ctx.state.points.append(PointRun(self.ctx.points[0], self.ctx.state.out_dir, interrupted=self.ctx.state.interrupted))
            self.finish_point(self.ctx.state.points[0])
        if not self.ctx.is_sweep:
            return self.ctx.state.points[0].report
        from orchestrator.reports.sweep import write_sweep_artifacts
        result = write_sweep_artifacts(self.sweep_data())
        self.ctx.say(f"sweep report: {self.ctx.state.out_dir / 'report.html'}")
        for v in result["verdicts"]:
            self.ctx.say(v["text"])
        return result


def _recipe_entry(r: ServiceRecipe) -> dict:
    return {"source": r.source, "sha256": r.sha256, "text": r.text,
            "files": {name: sha256_file(p) for name, p in r.files.items()}}
