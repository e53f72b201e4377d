"""A session's first phase: its services (a sweep's changed ones again), the monitor, the load clients
waiting for their go, and the checks before any job."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import replace
from pathlib import Path

import yaml

from orchestrator import waiting
from orchestrator.analysis.sweep import Point
from orchestrator.bench.points import apply_to_client, service_changes, set_path
from orchestrator.bench.clients import client_recipe, split_load
from orchestrator.bench.datasets import build_rows
from orchestrator.engines import engine_named
from orchestrator.bench.kinds import KINDS, LLM_KINDS
from orchestrator.bench.context import SessionContext
from orchestrator.bench.runstate import PointRun
from orchestrator.cluster.slurm import TERMINAL_STATES
from orchestrator.errors import OrchestratorError, RecipeError
from orchestrator.cluster.shell import quote
from orchestrator.schema import SchemaViolation, safe_load
from orchestrator.services.recipes import ServiceRecipe, TargetSpec, load_recipe, parse_recipe
from orchestrator.services.servers import endpoint_of
from orchestrator.times import parse_duration

DATASET_ROWS = 5000                  # rows shipped when a client is bounded by time, not count


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


def reset_prefix_cache(orch, sid: str, engine) -> bool:
    """POST the engine's route that empties its prefix cache (on the login node, with the job's key);
    vLLM answers {"success": true} when it did (false while blocks are still held), 404 outside its
    development mode."""
    p = orch.servers.probe(sid, then=f'curl -sS -X POST -m 60 "$BASE{engine.reset_prefix_cache}"')
    try:
        return json.loads(p.then_output or "").get("success") is True
    except (ValueError, AttributeError):
        return False


class Deploy:
    """The deploy phase: checks before any job (``preflight``), the services (``deploy_services``), the
    monitor, and each point's clients. Reads the context's recipe; writes its state's services, replicas,
    started jobs and monitor, and the recipes as deployed."""

    def __init__(self, ctx: SessionContext):
        self.ctx = ctx
        self.rows: dict[int, str] = {}   # client index -> its dataset's rows file (read_datasets)

    def base_recipe(self, ref) -> ServiceRecipe:
        """The service's recipe with the benchmark's overrides of it set (once; a rerun passes the recipes
        as they ran, overrides included)."""
        if ref.name not in self.ctx.base_recipes:
            recipe = load_recipe(self._recipe_path(ref.recipe), self.ctx.orch.config.recipe_dirs)
            try:
                recipe = with_changes(recipe, dict(ref.overrides))
            except (RecipeError, SchemaViolation) as exc:
                i = self.ctx.recipe.services.index(ref)
                raise RecipeError(f"{self.ctx.recipe.source or self.ctx.recipe.name}: benchmark.services[{i}] "
                                  f"sets a field of {recipe.source}: {exc}") from None
            self.ctx.base_recipes[ref.name] = recipe
        return self.ctx.base_recipes[ref.name]

    def deploy_services(self, point: Point, only_swept: bool = False, restart: frozenset = frozenset()) -> list[str]:
        """Deploy the services (or, between points, those the point changes); returns new IDs.

        A recipe with ``replicas: N`` is N services, ``<name>-r1`` ... ``<name>-rN``, each its own job:
        SLURM starts each where it finds room, and a replica that fails is seen and handled alone."""
        servers = self.ctx.orch.servers
        new = []
        for ref in self.ctx.recipe.services:
            changes = service_changes(point, ref.name)
            if only_swept and not changes and ref.name not in restart:
                continue
            if ref.external:
                if changes:
                    raise OrchestratorError(f"sweep: {ref.name} was started outside this tool, its fields cannot be swept")
                if ref.name not in self.ctx.externals:
                    self._adopt(ref)
                continue
            if ref.service_id:
                if changes:
                    raise OrchestratorError(f"sweep: {ref.name} is reused ({ref.service_id}), its fields cannot be swept")
                self.ctx.state.services[ref.name] = servers.probe(ref.service_id).service_id
                continue
            old = [self.ctx.state.services.pop(n) for n in self.ctx.state.replicas.pop(ref.name, [ref.name])
                   if n in self.ctx.state.services]
            if old and only_swept:
                self.ctx.stop(old, wait=True)
                if self.ctx.state.monitor_id:   # their targets go too: the new jobs take their job names
                    try:
                        self.ctx.orch.monitors.remove_targets(self.ctx.state.monitor_id, old)
                    except OrchestratorError as exc:
                        self.ctx.state.errors.append(f"removing {', '.join(old)} from the monitor: {exc}")
            recipe = with_changes(self.base_recipe(ref), changes)
            self.ctx.service_recipes[ref.name if not self.ctx.is_sweep else f"{ref.name}@{point.label}"] = recipe
            names = [ref.name] if recipe.replicas == 1 else [f"{ref.name}-r{i + 1}" for i in range(recipe.replicas)]
            if recipe.replicas > 1:
                self.ctx.state.replicas[ref.name] = names
            for name in names:
                sid = servers.start_service(recipe, progress=self.ctx.say)
                self.ctx.state.started.append(sid)
                self.ctx.state.all_services.append(sid)
                self.ctx.state.services[name] = sid
                new.append((ref.name, name, sid, recipe))
        failed: Counter[str] = Counter()   # group -> its replicas never ready
        for group, name, sid, recipe in new:
            try:
                servers.wait_until_ready(sid, timeout=recipe.health.timeout if recipe.health else 600,
                                         progress=self.ctx.say)
            except OrchestratorError as exc:
                if recipe.replicas == 1 or recipe.replica_not_ready != "measure_others":
                    raise
                failed[group] += 1
                self._drop_replica(group, name, sid, exc)
        for group, n in failed.items():
            if not self.ctx.state.replicas.get(group):
                raise OrchestratorError(f"{group}: none of its {n} replicas became ready")
        return [sid for _, name, sid, _ in new if name in self.ctx.state.services]

    def _adopt(self, ref) -> None:
        """A service the tool did not start: where it answers (its job waited for while pending). It is
        loaded and monitored, never stopped: it is in no list of jobs to cancel."""
        from orchestrator.bench.external import resolve
        from orchestrator.monitoring.monitors import monitor_recipe_dirs
        i = self.ctx.recipe.services.index(ref)
        where = f"{self.ctx.recipe.source or self.ctx.recipe.name}: benchmark.services[{i}]"
        ext = resolve(ref, where, self.ctx.orch.transport, monitor_recipe_dirs(self.ctx.orch.config), self.ctx.say)
        self.ctx.externals[ref.name] = ext
        self.ctx.state.services[ref.name] = ext.sid
        self.ctx.say(f"{ref.name}: {ext.url}, {ext.described}")

    def _then(self, name: str, script: str) -> str:
        """``script`` against a service's endpoint from the login node (``$BASE``, ``curl`` with its key)."""
        ext = self.ctx.externals.get(name)
        if ext is not None:
            from orchestrator.bench.external import then
            return then(ext, self.ctx.orch.transport, script)
        return self.ctx.orch.servers.probe(self.ctx.state.services[name], then=script).then_output or ""

    def _drop_replica(self, group: str, name: str, sid: str, why: OrchestratorError) -> None:
        """replica_not_ready: measure_others: say so, cancel it, and load the others."""
        self.ctx.state.errors.append(f"{name} ({sid}) never became ready and was not measured: {why}")
        self.ctx.say(f"{name} ({sid}) not ready: measuring the other replicas of {group} ({why})")
        self.ctx.stop([sid])
        self.ctx.state.services.pop(name, None)
        self.ctx.state.replicas[group] = [n for n in self.ctx.state.replicas.get(group, []) if n != name]

    def start_monitor(self) -> None:
        targets = [TargetSpec(service_id=sid, job_name=name) for name, sid in self.ctx.state.services.items()
                   if name not in self.ctx.externals]
        targets += [t for ext in self.ctx.externals.values() for t in ext.targets()]
        mid = self.ctx.orch.monitors.start_monitor(self.ctx.recipe.monitor_recipe, targets, progress=self.ctx.say,
                                               scrape_interval=self.ctx.recipe.scrape_interval, wait=False)
        self.ctx.state.started.append(mid)
        self.ctx.state.monitor_id = mid
        self.ctx.orch.servers.wait_until_ready(mid, timeout=300, progress=self.ctx.say)

    def wait_scraped(self, pr: PointRun) -> None:
        """The load starts only once the services' counters have a baseline: every target scraped
        before the first point; later, only services the point redeployed (the others were scraped
        all along, and a client's own counters are not what the report reads). Prometheus applies
        new targets up to 5 s after a reload (its discovery throttle): not waiting for the clients
        of later points saves that on every point of a sweep."""
        mid = self.ctx.state.monitor_id
        targets = self.ctx.orch.monitors.record(mid).targets
        if pr.point.index > 0:
            targets = [t for t in targets if t.get("service_id") in set(pr.redeployed)]
            if not targets:
                return
        expected = {t["address"] for t in targets}
        down: list[str] = []

        timeout = 60 + 3 * parse_duration(self.ctx.recipe.scrape_interval)
        rounds = self.ctx.orch.monitors.status_rounds(
            mid, interval=min(1.0, parse_duration(self.ctx.recipe.scrape_interval) / 4), timeout=timeout)

        def not_up() -> OrchestratorError:
            return OrchestratorError(f"monitor {mid}: targets not up: {', '.join(down or sorted(expected))}")

        def step(status: dict) -> tuple[bool, str]:
            health = {t["instance"]: t["health"] for t in status["targets"]}
            down[:] = sorted(a for a in expected if health.get(a) != "up")
            return (True, f"monitor {mid} scraping {len(expected) + 1} targets") if not down else (False, "")

        waiting.follow(rounds, step, timeout=timeout, say=self.ctx.say, on_timeout=not_up)

    def start_clients(self, pr: PointRun) -> None:
        servers = self.ctx.orch.servers
        engines = self.ctx.engines()
        for c, whole in enumerate(self.ctx.recipe.clients):
            whole = apply_to_client(whole, pr.point)
            names = self.ctx.targets_of(whole.target)
            for i, name in enumerate(names):   # a service of N replicas: 1/N of the load on each
                self._start_client(pr, split_load(whole, i, len(names)), name, engines, self.rows.get(c))
        for sid in pr.clients:
            servers.wait_until_ready(sid, timeout=300, progress=self.ctx.say)
        self.ctx.orch.monitors.add_targets(self.ctx.state.monitor_id,
                                       [TargetSpec(service_id=sid, job_name="client") for sid in pr.clients])
        pr.monitored = True

    def _start_client(self, pr: PointRun, spec, target: str, engines: dict, rows: str | None = None) -> None:
        """One client spec's jobs (``nodes`` of them) against the service ``target`` names; ``rows``, its
        dataset (every job takes its own share)."""
        servers = self.ctx.orch.servers
        sid = self.ctx.state.services[target]
        ext = self.ctx.externals.get(target)
        files = {"payload.json": json.dumps(spec.payload)} if KINDS[spec.kind].ships_payload else {}
        if ext is not None:   # its key, if any, in the client's own private job dir
            url, target_id, auth = ext.url, None, "bearer" if ext.key else "none"
            if ext.key:
                files["target.secret"] = ext.key + "\n"
        else:
            ready = servers.recently_ready(sid)   # the wait that found it ready knows where it answers
            ep = endpoint_of(ready) if ready is not None else servers.get_service_endpoint(sid)
            url, target_id, auth = ep.url, ep.service_id, ep.auth
        files.update(KINDS[spec.kind].job_files(spec, self._beside_recipe))
        if rows is not None:
            files["dataset.jsonl"] = rows
        for node in range(spec.nodes):
            recipe = client_recipe(spec, url, node, self.ctx.orch.config.remote.venv_dir,
                                   engines.get(spec.target), target_id=target_id, target_auth=auth,
                                   secret_file="target.secret" if ext is not None and ext.key else None)
            sid = servers.start_service(recipe, extra_files=files, progress=self.ctx.say)
            pr.targets[sid] = target
            self.ctx.state.started.append(sid)
            pr.clients.append(sid)

    def _recipe_path(self, ref: str) -> str:
        """A service recipe named by path is looked for beside the benchmark recipe first (a folder of
        recipes moves as one), then as given; a name goes to the recipe dirs."""
        if not (Path(ref).suffix in (".yaml", ".yml") or "/" in ref) or Path(ref).expanduser().is_absolute():
            return ref
        beside = self._beside_recipe(ref)
        return str(beside) if beside.exists() else ref

    def _beside_recipe(self, path: str) -> Path:
        p = Path(path).expanduser()
        return p if p.is_absolute() or not self.ctx.recipe.source else Path(self.ctx.recipe.source).parent / p

    def _ref_of(self, target: str):
        """The benchmark's service a client's ``target`` names (None: none; the recipe checked it)."""
        return next((r for r in self.ctx.recipe.services if r.name == target), None)

    def _rows_needed(self, spec) -> int | None:
        """Dataset rows for every job of a client at the largest point (None: all a trace has)."""
        if spec.dataset.timed:
            return None
        sweep = self.ctx.recipe.sweep
        ref = self._ref_of(spec.target)
        replicas = self.base_recipe(ref).replicas if ref is not None and ref.recipe else 1
        per_job = DATASET_ROWS if spec.requests is None or "requests" in sweep else spec.requests
        return per_job * max([spec.nodes, *sweep.get("nodes", [])]) * replicas

    def _read_datasets(self) -> None:
        """Every client's dataset rows, read and checked before any job (a bad trace line, a prompts
        file that is not JSONL: its file, line and field named, nothing submitted)."""
        self.rows: dict[int, str] = {}
        for i, spec in enumerate(self.ctx.recipe.clients):
            if not (spec.dataset and KINDS[spec.kind].ships_payload):
                continue
            where = f"{self.ctx.recipe.source or self.ctx.recipe.name}: benchmark.clients[{i}].dataset"
            count = self._rows_needed(spec)
            try:
                rows = build_rows(self._dataset_spec(spec.dataset), count)
            except RecipeError as exc:
                raise RecipeError(f"{where}: {exc}") from None
            if not KINDS[spec.kind].takes_messages and any("messages" in r for r in rows):
                raise RecipeError(f"{where}: {spec.dataset.path} has chat messages: a {spec.kind} client sends a "
                                  "prompt (use kind: openai-chat, or rows of {\"prompt\": ...})")
            self.rows[i] = "".join(json.dumps(r) + "\n" for r in rows)

    def _served_models(self, name: str) -> list[str] | None:
        """The models a service serves, from its own /v1/models (asked on the login node)."""
        answer = self._then(name, 'curl -sS -m 20 "$BASE/v1/models"')
        try:
            return [m["id"] for m in json.loads(answer)["data"]]
        except (ValueError, KeyError, TypeError):
            return None

    @staticmethod
    def _asked_models(spec) -> list[str]:
        """The models a client names: its LoRA mix's, or its payload's one."""
        return list(spec.models) or ([spec.payload["model"]] if "model" in spec.payload else [])

    def _refuse_unserved(self, i: int, spec, served: list[str], said: str, then: str) -> None:
        """A client naming a model its target does not serve is refused, with the list ``said`` gave."""
        missing = [m for m in self._asked_models(spec) if m not in served]
        if missing:
            field = "models" if spec.models else "payload.model"
            raise RecipeError(f"{self.ctx.recipe.source or self.ctx.recipe.name}: benchmark.clients[{i}].{field}: "
                              f"{', '.join(missing)} not served by {spec.target} ({said} {', '.join(served)}{then}")

    def _check_models_early(self) -> None:
        """Before any job: a model named for a vLLM recipe this session deploys is one it will serve (its
        served name, its LoRA modules' names: VLLM_SERVED_MODEL_NAME and VLLM_LORA_MODULES of the packaged
        recipes); the service's own /v1/models is asked again once it runs (``check_models``)."""
        for i, spec in enumerate(self.ctx.recipe.clients):
            ref = self._ref_of(spec.target)
            if ref is None or ref.recipe is None or spec.kind not in LLM_KINDS or not self._asked_models(spec):
                continue
            recipe = self.base_recipe(ref)
            env = recipe.environment
            if recipe.engine != "vllm" or "VLLM_SERVED_MODEL_NAME" not in env:
                continue
            served = [str(env["VLLM_SERVED_MODEL_NAME"])] + [
                m.split("=", 1)[0] for m in str(env.get("VLLM_LORA_MODULES") or "").split()]
            self._refuse_unserved(i, spec, served, "its recipe serves",
                                  ": VLLM_SERVED_MODEL_NAME and VLLM_LORA_MODULES); nothing was submitted")

    def check_models(self, engines: dict) -> None:
        """Before any client job: every model a vLLM target is asked for (a payload's, a LoRA mix's) is
        one it serves, as its /v1/models says; a client that names none sends the served one, as
        ``vllm bench serve`` does."""
        clients = list(self.ctx.recipe.clients)
        asked: dict[str, list[str] | None] = {}
        for i, spec in enumerate(clients):
            if spec.kind not in LLM_KINDS or engines.get(spec.target) != "vllm":
                continue
            name = self.ctx.targets_of(spec.target)[0]
            if name not in asked:
                asked[name] = self._served_models(name)
            served = asked[name]
            if served is None:
                continue
            self._refuse_unserved(i, spec, served, "its /v1/models lists",
                                  "); refused before any client job started")
            if not self._asked_models(spec) and served:
                where = f"{self.ctx.recipe.source or self.ctx.recipe.name}: benchmark.clients[{i}]"
                self.ctx.say(f"{where}: no model named: sending {served[0]!r}, the model {spec.target} serves")
                clients[i] = replace(spec, payload={**spec.payload, "model": served[0]})
        self.ctx.recipe = replace(self.ctx.recipe, clients=tuple(clients))

    def check_first_requests(self) -> None:
        """Before any client job: one request of each client, as its load will send it, from the login
        node with the service's key. A model the server does not serve, a wrong path or a refused key
        stops the session here, not after a load whose every request failed."""
        for i, spec in enumerate(self.ctx.recipe.clients):
            first = KINDS[spec.kind].first_request(spec)
            if first is None:
                continue
            method, path, body = first
            name = self.ctx.targets_of(spec.target)[0]
            data = f" -H 'Content-Type: application/json' --data-binary {quote(json.dumps(body))}" if body else ""
            out = self._then(name, f'curl -sS -m 120 -X {quote(method)} -w "\\n%{{http_code}}"{data} "$BASE"{quote(path)}'
                             ).rstrip("\n")
            answer, _, code = out.rpartition("\n")
            if code.isdigit() and 200 <= int(code) < 300:
                continue
            if not code.isdigit() or code == "000" or code.startswith("5"):
                self._died_answering(name)   # an engine that dies at its first request ends here
            where = f"{self.ctx.recipe.source or self.ctx.recipe.name}: benchmark.clients[{i}]"
            said = f"HTTP {code}" if code.isdigit() else "no answer"
            raise RecipeError(f"{where}: its first request ({method} {path} to {spec.target}) got {said}: "
                              f"{answer.strip()[:400] or out.strip()[:400]}; stopped before the load")

    def _died_answering(self, name: str, wait: float = 15.0) -> None:
        """Raise ServiceDied when the service's job ends within ``wait`` seconds of a request it did not
        answer (SLURM takes a moment to see the process gone); return when it keeps running."""
        sid = self.ctx.state.services[name]
        ext = self.ctx.externals.get(name)
        if ext is not None and ext.job_id is None:
            return   # an address: there is no job to ask
        deadline = waiting.clock() + wait
        while True:
            if ext is not None:   # the user's job: SLURM's record of it, read only
                from orchestrator.cluster.slurm import JobPoller
                job = JobPoller(self.ctx.orch.transport).final_records([ext.job_id]).get(ext.job_id)
            else:
                job = self.ctx.orch.servers.probe(sid).job
            if job is not None and job.state in TERMINAL_STATES:
                raise self.ctx.service_died(name, sid, job, when="at the load's first request")
            if waiting.clock() > deadline:
                return
            waiting.sleep(1.0)

    def preflight(self) -> None:
        """What can be known wrong before any job is submitted: nothing is started when it fails."""
        self.check_here()
        for i, spec in enumerate(self.ctx.recipe.clients):
            where = f"{self.ctx.recipe.source or self.ctx.recipe.name}: benchmark.clients[{i}]"
            self._check_cache(spec, where)
            for check in KINDS[spec.kind].preflight(spec):   # a wrapped tool: there, and taking its flags
                self.ctx.say(f"checking {check.what} on the login node")
                result = self.ctx.orch.transport.run(check.command, timeout=180)
                if result.exit_code != 0:
                    said = (result.stderr or result.stdout).strip()[-1500:]
                    raise RecipeError(f"{where} ({spec.kind}): {check.what}: refused before any job was submitted:\n"
                                      f"{said or f'exit {result.exit_code}'}")

    def check_here(self) -> None:
        """The checks that need no cluster (``bench run --dry-run`` runs these alone): every recipe it names,
        the datasets' rows, the models a vLLM recipe serves, the load's spread over replicas, the files a
        kind ships."""
        self._read_datasets()
        self._check_models_early()
        for i, spec in enumerate(self.ctx.recipe.clients):
            where = f"{self.ctx.recipe.source or self.ctx.recipe.name}: benchmark.clients[{i}]"
            self._check_spread(spec, where)
            ref = self._ref_of(spec.target)
            # (a running service's memory is what it is: only a job this session starts is checked)
            target_mem = self.base_recipe(ref).resources.mem if ref is not None and ref.recipe is not None else None
            KINDS[spec.kind].deploy_check(spec, where, self._beside_recipe, target_mem)
        for ref in self.ctx.recipe.services:
            if ref.recipe is not None:
                self.base_recipe(ref)

    def _check_cache(self, spec, where: str) -> None:
        """``cache: cold`` on a service this session did not start: its engine must empty its prefix cache
        on request (the session cannot restart it); asked now, before any job."""
        ref = self._ref_of(spec.target)
        if spec.cache != "cold" or ref is None or ref.recipe is not None:
            return
        if ref.external:
            raise RecipeError(f"{where}.cache: cold needs the prefix cache of {spec.target} emptied before the load, "
                              "and it was started outside this tool (the session never touches it): use cache: warm")
        sid = self.ctx.orch.servers.probe(ref.service_id).service_id
        record = self.ctx.orch.servers.registry.record(sid)
        engine = engine_named(record.engine if record else None)
        if engine.reset_prefix_cache and reset_prefix_cache(self.ctx.orch, sid, engine):
            return
        raise RecipeError(f"{where}.cache: cold needs the prefix cache of {spec.target} ({sid}) emptied before the "
                          f"load, and this session did not start it (it cannot restart it): {engine.name} "
                          + ("did not empty it on request (vLLM: start it with VLLM_SERVER_DEV_MODE=1)"
                             if engine.reset_prefix_cache else "has no way to empty it on request")
                          + "; use cache: warm, or let the session start the service")

    def _check_spread(self, spec, where: str) -> None:
        """A client's load is spread over its target's replicas: each must get at least one of its
        connections (and of its requests), at every point of a sweep."""
        ref = self._ref_of(spec.target)
        if ref is None or ref.recipe is None:
            return
        sweep = self.ctx.recipe.sweep
        replicas = max([self.base_recipe(ref).replicas, *sweep.get(f"services.{ref.name}.replicas", [])])
        for field in ("concurrency", "requests"):
            least = min(v for v in [getattr(spec, field), *sweep.get(field, [])] if v is not None) \
                if getattr(spec, field) is not None else None
            if least is not None and least < replicas:
                raise RecipeError(f"{where}.{field}: {least} cannot be spread over the {replicas} replicas of "
                                  f"{ref.name}: give each at least one")

    def _dataset_spec(self, ds):
        """A dataset's file is relative to the benchmark recipe's folder."""
        if ds.path and not Path(ds.path).expanduser().is_absolute() and self.ctx.recipe.source:
            return replace(ds, path=str(Path(self.ctx.recipe.source).parent / ds.path))
        return replace(ds, path=str(Path(ds.path).expanduser())) if ds.path else ds
