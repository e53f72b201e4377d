"""What the orchestration code does with a cluster, as scenarios run twice: once against the sandbox
by ``tests/record_cassettes.py`` (recording every remote call), and in the unit tests against that
recording (tests/fakes.py). Each returns what happened; the tests judge it.
"""

from __future__ import annotations

import signal
from pathlib import Path

from orchestrator import waiting
from orchestrator.bench.collect import monitor_window_report
from orchestrator.bench.recipe import load_benchmark_text
from orchestrator.bench.session import BenchmarkSession
from orchestrator.errors import OrchestratorError, Terminated
from orchestrator.services.recipes import TargetSpec
from orchestrator.watch.watcher import Watcher, WatchOptions

CRASH = "service:\n  name: crasher\n  command: 'echo loading; echo \"ERROR: weights missing\" >&2; exit 3'\n" \
        "  resources: {mem: 64M}\n  ports: [auto]\n  health: {path: /, timeout: 60}\n"
NOPART = "service:\n  name: nowhere\n  command: sleep 60\n  resources: {mem: 64M, partition: nosuch}\n"
FINISHES = "service:\n  name: quick\n  command: echo done\n  resources: {mem: 64M}\n"
SICKLY = ("service:\n  name: sickly\n  command: python3 -m http.server {{ port }} --bind 0.0.0.0\n"
          "  resources: {mem: 64M}\n  ports: [auto]\n  health: {path: /no-such-page, timeout: 2}\n")
BENCH = """benchmark:
  name: replay-bench
  services: [{recipe: standin-llm}]
  monitor: {recipe: prometheus, scrape_interval: 1s}
  clients:
    - kind: openai-completions
      target: standin-llm
      concurrency: 4
      duration: 3s
      warmup: 1s
      payload: {model: standin, prompt: "hello", stream: true, max_tokens: 8}
"""
SWEEP = BENCH.replace("name: replay-bench", "name: replay-sweep").replace("duration: 3s", "duration: 2s") + \
    "  sweep: {concurrency: [1, 4]}\n  slo: {p99_latency: 2s}\n"


def _write(tmp: Path, name: str, text: str) -> str:
    path = tmp / name
    path.write_text(text)
    return str(path)


def _error(fn) -> str:
    try:
        fn()
    except OrchestratorError as exc:
        return f"{type(exc).__name__}: {exc}"
    return ""


def services(orch, tmp: Path) -> dict:
    s = orch.servers
    said: list[str] = []
    sid = s.start_service(orch.load_recipe("python-http"), wait=True, timeout=60, progress=said.append)
    job_id = s.store.get(sid)["job_id"]
    listed = s.list_running_services()
    ep = s.get_service_endpoint(sid)
    ep_by_job = s.get_service_endpoint(job_id)
    log = s.logs(sid, 5)
    health = s.probe_many([sid], health=True)
    stopped = s.stop_service(sid)
    s.wait_until_ended([sid])
    after = s.list_running_services()
    crash = s.start_service(orch.load_recipe(_write(tmp, "crash.yaml", CRASH)))
    crash_error = _error(lambda: s.wait_until_ready(crash, timeout=60))
    followed: list[str] = []
    crash_end = s.follow_logs(crash, followed.append, poll=0.5)   # until the job has ended: no clock involved
    unknown_error = _error(lambda: s.get_service_endpoint("nosuch_0123abcd"))
    rejected_error = _error(lambda: s.start_service(orch.load_recipe(_write(tmp, "nopart.yaml", NOPART))))
    foreign = orch.transport.run("sbatch --parsable -J not-ours --mem=64M --wrap 'sleep 120'", check=True).stdout.strip()
    refused_error = _error(lambda: s.stop_service(foreign))
    foreign_after = orch.transport.run(f"squeue -h -j {foreign} -o %T", check=True).stdout.strip()
    orch.transport.run(f"scancel {foreign}", check=True)
    return {"sid": sid, "job_id": job_id, "said": said, "listed": listed, "endpoint": ep, "endpoint_by_job": ep_by_job,
            "log": log, "followed": "".join(followed), "crash_end": crash_end, "health": health, "stopped": stopped, "after": after,
            "crash": crash, "crash_error": crash_error, "unknown_error": unknown_error,
            "rejected_error": rejected_error, "foreign": foreign, "refused_error": refused_error,
            "foreign_state_after_refusal": foreign_after, "tracked": s.store.load()}


def monitoring(orch, tmp: Path) -> dict:
    s, m = orch.servers, orch.monitors
    svc = s.start_service(orch.load_recipe("standin-llm"), wait=True, timeout=120)
    plain = s.start_service(orch.load_recipe("python-http"), wait=True, timeout=60)
    said: list[str] = []
    mid = m.start_monitor("prometheus", [svc], scrape_interval="1s", progress=said.append)
    statuses = []

    def scraped():
        st = m.check_monitor_status(mid)
        statuses.append(st)
        return bool(st["targets"]) and all(t["health"] == "up" for t in st["targets"]), ""
    waiting.poll_until(scraped, timeout=60, interval=1, on_timeout=lambda: OrchestratorError("targets never up"))
    up = m.query_result(mid, 'up{job=~".+"}')
    via_service = m.query_result(svc, 'count(up{service_id="%s"})' % svc)
    ranges = []

    def some_history():  # a few scrapes, so the range has points to show
        end = waiting.now()
        ranges[:] = [m.query_range(mid, "up", end - 20, end, "1s")]
        return all(len(s.values) >= 4 for s in ranges[0].series), ""
    waiting.poll_until(some_history, timeout=30, interval=2, on_timeout=lambda: OrchestratorError("no history"))
    rng = ranges[0]
    end = rng.series[0].values[-1][0]
    bad_promql = _error(lambda: m.query_result(mid, "sum(rate(up[1m]"))
    # python-http declares no metrics: it is scraped only at a path the caller names (up 0: not Prometheus text)
    added = m.add_targets(mid, [TargetSpec(service_id=plain, metrics_path="/endpoint.json")])
    seen = []

    def plain_scraped():  # the reload is applied at once; the new target is listed after its first scrape
        seen[:] = [m.check_monitor_status(mid)]
        return plain in {t["service_id"] for t in seen[0]["targets"]}, ""
    waiting.poll_until(plain_scraped, timeout=30, interval=1, on_timeout=lambda: OrchestratorError("not added"))
    with_plain = seen[0]
    removed = m.remove_targets(mid, [plain])
    report = m.report(mid)
    csv_path = m.collect(mid, ["up"], end - 10, end, "1s", tmp / "up.csv")
    window = monitor_window_report(orch, mid, end - 10, end, tmp / "window")
    listed = m.running_monitors()
    available = m.available_recipes()
    endpoint = m.endpoint(mid)
    stopped = m.stop(mid)
    after_stop = _error(lambda: m.query_result(mid, "up"))
    prom = (orch.load_recipe("prometheus").text.replace("name: prometheus", "name: prom-node")
            .replace("monitoring_targets: []", "monitoring_targets: []\n  exporters: [node]"))
    with_node = m.start_monitor(orch.load_recipe(_write(tmp, "prom-node.yaml", prom)),
                                [TargetSpec(service_id=plain, metrics_path="/endpoint.json")], scrape_interval="1s")
    node_record = m.store.get(with_node)
    m.stop(with_node)
    gpu_refused = _error(lambda: m.start_monitor(orch.load_recipe(_write(
        tmp, "prom-gpu.yaml", prom.replace("exporters: [node]", "exporters: [gpu]")))))
    s.stop_service(svc)
    s.stop_service(plain)
    return {"svc": svc, "plain": plain, "mid": mid, "said": said, "statuses": statuses, "up": up,
            "via_service": via_service, "range": rng, "bad_promql": bad_promql, "added": added,
            "with_plain": with_plain, "removed": removed, "report": report, "csv": csv_path.read_text(),
            "listed": listed, "endpoint": endpoint, "stopped": stopped, "record": m.store.get(mid),
            "window": window, "available": available, "after_stop": after_stop, "node_record": node_record,
            "exporters_after": {sid: s.store.get(sid)["state"] for sid in node_record["exporter_jobs"]},
            "gpu_refused": gpu_refused}


def session(orch, tmp: Path) -> dict:
    said: list[str] = []
    recipe = load_benchmark_text(BENCH, "replay-bench.yaml")
    report = BenchmarkSession(orch, recipe, tmp / "session", progress=said.append).run()
    return {"report": report, "said": said, "dir": tmp / "session", "tracked": orch.servers.store.load()}


def interrupted(orch, tmp: Path) -> dict:
    """SIGTERM arrives once the load is under way (raised from the progress callback, as the CLI's
    signal handler would raise it): everything started is cancelled, what was collected is written."""
    said: list[str] = []

    def say(message: str) -> None:
        said.append(message)
        if " load: " in message and not message.split(" load: ")[1].startswith("0 ok"):
            raise Terminated(signal.SIGTERM)
    recipe = load_benchmark_text(BENCH.replace("duration: 3s", "duration: 30s"), "replay-bench.yaml")
    ended = None
    try:
        BenchmarkSession(orch, recipe, tmp / "interrupted", progress=say).run()
    except Terminated as exc:
        ended = exc
    # jobs still alive; one in COMPLETING (CG) right after its scancel is on its way out
    left = orch.transport.run("squeue --me -h -t PD,CF,R,S -o %j", check=True).stdout.split()
    return {"ended": ended, "said": said, "dir": tmp / "interrupted", "tracked": orch.servers.store.load(),
            "squeue_after": left}


def sweep(orch, tmp: Path) -> dict:
    said: list[str] = []
    recipe = load_benchmark_text(SWEEP, "replay-sweep.yaml")
    report = BenchmarkSession(orch, recipe, tmp / "sweep", progress=said.append).run()
    return {"report": report, "said": said, "dir": tmp / "sweep", "tracked": orch.servers.store.load()}


def _replicated(tmp: Path, extra: str, command_prefix: str = "") -> str:
    """The packaged stand-in with replica fields (and a command prefix), as a recipe file beside the bench."""
    from orchestrator.resources import packaged
    text = packaged("recipes", "services", "standin-llm.yaml").read_text()
    text = text.replace("  name: standin-llm\n", "  name: standin-llm\n" + extra)
    if command_prefix:
        text = text.replace("  command: python3", f"  command: {command_prefix} python3")
    return _write(tmp, "standin-llm.yaml", text)


def replicas(orch, tmp: Path) -> dict:
    """Two replicas, one of which never becomes ready (an odd job ID exits at once), with
    replica_not_ready: measure_others: the session measures the other and says so."""
    said: list[str] = []
    recipe = _replicated(tmp, "  replicas: 2\n  replica_not_ready: measure_others\n",
                         "test $((SLURM_JOB_ID % 2)) -eq 0 || { echo odd job ID, refusing to start >&2; exit 3; };")
    text = BENCH.replace("name: replay-bench", "name: replay-replicas").replace(
        "services: [{recipe: standin-llm}]", f"services: [{{recipe: {recipe}}}]")
    report = BenchmarkSession(orch, load_benchmark_text(text, str(tmp / "replicas.yaml")), tmp / "replicas",
                              progress=said.append).run()
    return {"report": report, "said": said, "tracked": orch.servers.store.load()}


def replica_sweep(orch, tmp: Path) -> dict:
    """A sweep over the stand-in's replicas, 1 then 2: the scaling table."""
    said: list[str] = []
    recipe = _replicated(tmp, "")
    text = SWEEP.replace("name: replay-sweep", "name: replay-scaling").replace(
        "services: [{recipe: standin-llm}]", f"services: [{{recipe: {recipe}}}]").replace(
        "  sweep: {concurrency: [1, 4]}", "  sweep: {services.standin-llm.replicas: [1, 2]}")
    report = BenchmarkSession(orch, load_benchmark_text(text, str(tmp / "scaling.yaml")), tmp / "scaling",
                              progress=said.append).run()
    return {"report": report, "said": said, "dir": tmp / "scaling", "tracked": orch.servers.store.load()}


def watcher(orch, tmp: Path) -> dict:
    s = orch.servers
    ids = {"crash": s.start_service(orch.load_recipe(_write(tmp, "crash.yaml", CRASH))),
           "quick": s.start_service(orch.load_recipe(_write(tmp, "quick.yaml", FINISHES))),
           "sickly": s.start_service(orch.load_recipe(_write(tmp, "sickly.yaml", SICKLY)))}
    events: list[dict] = []
    w = Watcher(orch.config, orch.transport, s, WatchOptions(interval=2.0), log=lambda msg, **f: events.append(
        {"msg": msg, **f}))
    reports = []
    jobs = {}

    def settled():
        reports.extend(w.poll())
        jobs.update({j["job_id"]: j for j in w.jobs()})
        done = [j for j in jobs.values() if j.get("verdict") and j.get("service_id") in ids.values()]
        return len(done) >= 3, ""   # (this scenario's jobs: the sandbox's earlier ones may have verdicts too)
    waiting.poll_until(settled, timeout=120, interval=2, on_timeout=lambda: OrchestratorError("watcher never settled"))
    s.stop_service(ids["sickly"])
    return {"ids": ids, "events": events, "reports": reports, "jobs": w.jobs(), "stats": w.stats_doc(),
            "metrics": w.metrics_text(), "services": s.store.load()}


SEARCH = BENCH.replace("name: replay-bench", "name: replay-search").replace(
    "      concurrency: 4\n      duration: 3s\n", "      concurrency: 64\n      rate: 2\n      duration: 2s\n      cache: cold\n"
    "      dataset: {kind: prefix, prefixes: 2, prefix_tokens: 16, suffix_tokens: 4, output_tokens: 8}\n") + \
    "  search: {rate: [2, 64], slo: {latency_p99: 400ms}, max_points: 3}\n"


def search(orch, tmp: Path) -> dict:
    """A search over rate on the stand-in (4 slots: about 30 requests/s of 8 tokens), each point on a new
    stand-in (cache: cold, and it has no route that empties a cache)."""
    said: list[str] = []
    recipe = load_benchmark_text(SEARCH, "replay-search.yaml")
    report = BenchmarkSession(orch, recipe, tmp / "search", progress=said.append).run()
    return {"report": report, "said": said, "dir": tmp / "search", "tracked": orch.servers.store.load()}


SCENARIOS = {"services": services, "monitoring": monitoring, "session": session, "interrupted": interrupted,
             "sweep": sweep, "watcher": watcher, "replicas": replicas, "replica_sweep": replica_sweep,
             "search": search}
