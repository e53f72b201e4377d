"""A hostile neighbour on the cluster, for real: the sandbox's second user (`neighbour`) tries, from the
login node, everything another user of a shared cluster can try against a session we keep running:
querying every service and Prometheus, stopping Prometheus, reading our job dirs, secrets, records and
logs, and making our tool act on jobs it named. Every attempt must fail; our own tool, and clients
that read the job's secret, keep working (the data-service, llama.cpp, vLLM and Chroma sessions of the
other e2e modules run through the same locks)."""

import dataclasses
import json
import os
import pwd
import re
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from orchestrator import BenchmarkOrchestrator
from sandbox import cluster as sandbox
from tests.e2e.conftest import config_with_state

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]
SERVICES = ("postgres", "redis", "llamacpp", "vllm", "chroma")


def as_neighbour(script: str, timeout: float = 60) -> subprocess.CompletedProcess:
    """``script`` run by the neighbour on the login node (its network namespace, its own uid)."""
    return subprocess.run(["ip", "netns", "exec", "login", "runuser", "-u", sandbox.NEIGHBOUR, "--",
                           "bash", "-c", script], capture_output=True, text=True, timeout=timeout,
                          cwd="/")


@pytest.fixture(scope="module")
def kept(sandbox_config_path, tmp_path_factory):
    """Our services and our monitor, started by the tool and kept while the neighbour tries."""
    from orchestrator.config import load_config
    tmp = tmp_path_factory.mktemp("ours")
    cfg = dataclasses.replace(load_config(sandbox_config_path, env={}), state_dir=tmp / "state",
                              results_dir=tmp / "results")
    orch = BenchmarkOrchestrator(cfg)
    started = []
    try:
        for name in SERVICES:
            started.append(orch.servers.start_service(orch.load_recipe(name)))
        eps = {name: orch.servers.wait_until_ready(sid, timeout=600) for name, sid in zip(SERVICES, started)}
        mid = orch.monitors.start_monitor("prometheus", [started[0], started[1], started[2]], timeout=300,
                                          scrape_interval="1s")
        started.append(mid)
        eps["prometheus"] = orch.servers.get_service_endpoint(mid)
        yield orch, cfg, eps, dict(zip(SERVICES, started)) | {"prometheus": mid}
    finally:
        orch.servers.cancel_many(started + [s for s in orch.servers.store.load() if s not in started])
        orch.close()


def curl_code(url: str, *extra: str) -> str:
    r = as_neighbour(f"curl -s -o /dev/null -w '%{{http_code}}' --max-time 10 {' '.join(extra)} '{url}'")
    return r.stdout.strip()


def test_the_neighbour_cannot_query_any_service(kept):
    _, _, eps, _ = kept
    # the HTTP engines answer 401 without the job's key: completions, model lists, llama.cpp's metrics
    assert curl_code(eps["llamacpp"].url + "/v1/models") == "401"
    assert curl_code(eps["llamacpp"].url + "/metrics") == "401"
    body = "-X POST -H 'Content-Type: application/json' -d '{\"prompt\": \"hi\", \"max_tokens\": 2}'"
    assert curl_code(eps["llamacpp"].url + "/v1/completions", body) == "401"
    assert curl_code(eps["vllm"].url + "/v1/models") == "401"
    assert curl_code(eps["vllm"].url + "/v1/completions", body) == "401"
    # vLLM's own key guards only /v1, /v2 and /inference: every other route of its server (SageMaker's
    # /invocations runs a whole chat, /tokenize, /pooling, /score...) is behind the tool's proxy
    chat = ("-X POST -H 'Content-Type: application/json' -d '{\"model\": \"test-model\", \"messages\": "
            "[{\"role\": \"user\", \"content\": \"hi\"}], \"max_tokens\": 2}'")
    for route in ("/invocations", "/tokenize", "/detokenize", "/pooling", "/classify", "/score", "/rerank",
                  "/version", "/reset_prefix_cache", "/collective_rpc"):
        assert curl_code(eps["vllm"].url + route, chat) == "401", route
    # /health and /metrics stay open (the monitor scrapes counters; nothing to compute or store)
    assert curl_code(eps["vllm"].url + "/health") == "200"
    assert curl_code(eps["vllm"].url + "/metrics") == "200"
    assert curl_code(eps["chroma"].url + "/api/v2/tenants/default_tenant/databases/default_database/collections") \
        in ("401", "403")
    # a guessed key is no better
    assert curl_code(eps["vllm"].url + "/v1/models", "-H 'Authorization: Bearer guess'") == "401"
    # Redis: every command needs the password (and CONFIG is gone even with it)
    r = as_neighbour(f"redis-cli -h {eps['redis'].host} -p {eps['redis'].port} SET pwned 1")
    assert "NOAUTH" in r.stdout + r.stderr
    # PostgreSQL: SCRAM over TCP; the Unix socket is in the private job dir
    r = as_neighbour(f"PGCONNECT_TIMEOUT=5 psql -h {eps['postgres'].host} -p {eps['postgres'].port} -U postgres "
                     "-c 'COPY (SELECT 1) TO PROGRAM $$touch /tmp/pwned$$' postgres")
    assert r.returncode != 0 and ("password" in r.stderr), r.stderr
    assert not Path("/tmp/pwned").exists()


def test_the_neighbour_cannot_query_or_stop_prometheus(kept):
    orch, _, eps, ids = kept
    url = eps["prometheus"].url
    assert curl_code(url + "/api/v1/query?query=up") == "401"
    assert curl_code(url + "/graph") == "401"
    assert curl_code(url + "/-/quit", "-X POST") == "401"
    assert curl_code(url + "/-/reload", "-X POST") == "401"
    assert curl_code(url + "/api/v1/query?query=up", "-u orch:guess") == "401"
    # ... while ours (the secret through curl -K on the login node) still answers, and it still runs
    deadline = time.monotonic() + 30
    while not (answer := orch.monitors.query_result(ids["prometheus"], "up")).series and time.monotonic() < deadline:
        time.sleep(1)   # (its first scrapes)
    assert answer.series and all(s.values[-1][1] == 1 for s in answer.series), answer


def test_the_neighbour_cannot_read_job_dirs_secrets_or_logs(kept):
    orch, cfg, _, ids = kept
    home = pwd.getpwnam(sandbox.USER).pw_dir
    root = Path(home) / ".orchestrator" / "services"
    # the strongest case: a services folder someone made world-readable; each job dir still keeps out
    os.chmod(root, 0o755)
    for name, sid in ids.items():
        d = root / sid
        assert stat.S_IMODE(d.stat().st_mode) == 0o700, (name, oct(d.stat().st_mode))
        for f in ("secret", "curl.conf", "job.sbatch"):
            assert stat.S_IMODE((d / f).stat().st_mode) == 0o600, (name, f)
        for f in d.glob("slurm-*.out"):
            assert stat.S_IMODE(f.stat().st_mode) & 0o077 == 0, (name, f)
        r = as_neighbour(f"cat {d}/secret; ls {d}; cat {d}/slurm-*.out")
        assert r.stdout == "" and r.stderr.count("Permission denied") >= 2, r
    # the laptop's records (the sandbox keeps the laptop's state on this machine too)
    state = Path(cfg.state_dir)
    assert stat.S_IMODE(state.stat().st_mode) == 0o700
    for f in state.glob("*.json"):
        assert stat.S_IMODE(f.stat().st_mode) & 0o077 == 0, f
    r = as_neighbour(f"cat {state}/services.json")
    assert r.returncode != 0 and r.stdout == ""


def neighbour_job(name: str, extra: str = "") -> str:
    """A job the neighbour submits, named as it likes; returns its job ID."""
    r = as_neighbour(f"cd /tmp && sbatch --parsable --job-name={name} --time=10 {extra} --wrap 'sleep 300'")
    assert r.returncode == 0, r.stderr
    return r.stdout.strip().split(";")[0]


def test_jobs_the_neighbour_names_like_ours_are_ignored_everywhere(kept, sandbox_config_path, tmp_path):
    orch, cfg, _, ids = kept
    ours = ids["redis"]
    twin = neighbour_job(ours)                          # the very name of our running Redis
    lookalike = neighbour_job("redis_0badc0de")         # a name of our form, of a service we never had
    env = dict(os.environ, ORCH_CONFIG=str(config_with_state(cfg, tmp_path / "config.yaml")))

    def cli(*args):
        return subprocess.run([sys.executable, str(ROOT / "main.py"), *args], capture_output=True, text=True,
                              env=env, timeout=120)
    try:
        status = cli("--status", "--json")
        listed = {r["job_id"] for r in json.loads(status.stdout)}
        assert twin not in listed and lookalike not in listed
        # our service by its ID is still our job, not the neighbour's twin
        ep = json.loads(cli("--service-endpoint", ours, "--json").stdout)
        assert ep["job_id"] == orch.servers.store.get(ours)["job_id"] != twin
        for job in (twin, lookalike):
            for args in (("--service-endpoint", job), ("--stop-service", job), ("logs", job)):
                r = cli(*args)
                assert r.returncode == 1 and "not a service started by this tool as you" in r.stderr, (args, r.stderr)
                assert "Traceback" not in r.stderr
        # a record of ours whose job ID SLURM gave again, to the neighbour's job: never acted on
        orch.servers.store.update("redis_01d01d00", service_id="redis_01d01d00", job_id=lookalike, state="RUNNING")
        r = cli("--stop-service", lookalike)
        assert r.returncode == 1 and "no longer service redis_01d01d00" in r.stderr, r.stderr
        assert orch.servers.cancel_many(["redis_01d01d00"]) == {"redis_01d01d00": f"refused: redis_0badc0de|{sandbox.NEIGHBOUR}"}
        # both of the neighbour's jobs still run: nothing of ours touched them
        q = as_neighbour(f"squeue -h -j {twin},{lookalike} -o '%i %T'").stdout.split("\n")
        assert sorted(line.split()[1] for line in q if line.strip()) == ["RUNNING", "RUNNING"] or \
            all("PENDING" in line or "RUNNING" in line for line in q if line.strip())
    finally:
        orch.servers.store.remove("redis_01d01d00")
        as_neighbour(f"scancel {twin} {lookalike}")


def test_the_watcher_never_reads_a_file_the_neighbour_points_its_output_at(kept, tmp_path):
    """A neighbour's failing job whose StdOut is a link to our secret: `watch --user neighbour` attributes
    it without reading the link (its verdict carries no secret)."""
    orch, cfg, _, ids = kept
    secret_path = Path(pwd.getpwnam(sandbox.USER).pw_dir) / ".orchestrator" / "services" / ids["redis"] / "secret"
    out = f"/tmp/neighbour-out-{os.getpid()}"
    r = as_neighbour(f"cd /tmp && sbatch --parsable --job-name=bait --time=5 --output={out} "
                     f"--wrap 'rm -f {out}; ln -s {secret_path} {out}; exit 3'")
    job = r.stdout.strip().split(";")[0]
    from orchestrator.watch.watcher import Watcher, WatchOptions
    lines = []
    w = Watcher(cfg, orch.transport, orch.servers, WatchOptions(user=sandbox.NEIGHBOUR, log_lines=20),
                log=lambda m, **k: lines.append(m))
    deadline = time.monotonic() + 60
    verdicts = []
    while time.monotonic() < deadline and not any(v["job_id"] == job for v in verdicts):
        verdicts += w.poll()
        time.sleep(1)
    mine = [v for v in verdicts if v["job_id"] == job]
    assert mine, lines
    secret = secret_path.read_text().strip()
    assert all(secret not in json.dumps(v) for v in verdicts) and all(secret not in m for m in lines)
    as_neighbour(f"rm -f {out}")


# What the neighbour tries on every port our jobs listen on: each route of each packaged service, the
# exporters' multi-target routes (which would log in elsewhere with our credentials), admin routes.
PROBES = [("GET", "/"), ("GET", "/metrics?target=redis://127.0.0.1:1&collect[]=x"), ("GET", "/scrape?target=redis://{redis}"),
          ("GET", "/probe?target={postgres}"), ("GET", "/v1/models"), ("POST", "/v1/completions"),
          ("POST", "/v1/chat/completions"), ("POST", "/invocations"), ("POST", "/tokenize"), ("POST", "/pooling"),
          ("GET", "/props"), ("GET", "/slots"), ("POST", "/slots/0?action=erase"), ("GET", "/api/tags"),
          ("POST", "/api/generate"), ("POST", "/api/pull"), ("DELETE", "/api/delete"), ("GET", "/api/version"),
          ("GET", "/api/v2/tenants/default_tenant/databases/default_database/collections"),
          ("POST", "/api/v2/reset"), ("GET", "/api/v1/query?query=up"), ("POST", "/-/quit"), ("GET", "/debug/pprof/")]
# the routes that may answer without the key, by design: health checks and exporters' counters
OPEN = {"/health", "/metrics", "/api/v2/heartbeat"}


def listening_ports(node: str, uid: int) -> dict[int, str]:
    """{port: program} of the sockets our user's processes listen on at ``node`` beyond its loopback."""
    out = subprocess.run(["nsenter", f"--net=/var/run/netns/{node}", "ss", "-Hltnp"], capture_output=True,
                         text=True, check=True).stdout
    ports = {}
    for line in out.splitlines():
        fields = line.split()
        local, users = fields[3], " ".join(fields[5:])
        host, port = local.rsplit(":", 1)
        if host.startswith("127.") or host == "[::1]":
            continue
        for prog, pid in re.findall(r'\("([^"]+)",pid=(\d+)', users):
            try:
                if os.stat(f"/proc/{pid}").st_uid == uid and prog != "srun":   # (srun's steps: munge-signed)
                    ports[int(port)] = prog
            except FileNotFoundError:
                pass
    return ports


def test_every_port_of_every_job_gives_the_neighbour_nothing_but_counters(kept):
    """Every socket our jobs listen on, found on the nodes themselves (not only the ports we meant to open:
    vLLM's workers once listened on a dozen torch.distributed ports of the node's address), tried on every
    route above: only a health check or an exporter's /metrics answers (with counters), only the node
    exporter (host counters, auth: none) serves anything else, nothing else gets further than a refusal or
    "no such route", and the only ports that do not speak HTTP are Redis's and PostgreSQL's own (locked by
    their passwords: test_the_neighbour_cannot_query_any_service)."""
    orch, _, eps, ids = kept
    uid = pwd.getpwnam(sandbox.USER).pw_uid
    exporters = {name: orch.servers.probe(ids[name]).endpoint.get("exporters") or {} for name in eps}
    node_exporters = {(eps[n].host, e["node"]) for n, e in exporters.items() if "node" in e}
    raw_protocols = {(eps[n].host, eps[n].port) for n in ("redis", "postgres")}
    targets = {"redis": f"{eps['redis'].host}:{eps['redis'].port}", "postgres": f"{eps['postgres'].host}:{eps['postgres'].port}"}
    body = "-H 'Content-Type: application/json' -d '{\"model\": \"test-model\", \"prompt\": \"hi\", \"name\": \"x\"}'"
    tried = []
    for node in sorted({ep.host for ep in eps.values()}):
        for port, prog in sorted(listening_ports(node, uid).items()):
            if (node, port) in node_exporters or prog in ("prometheus-node", "node_exporter"):
                continue   # host counters, open by design (auth: none), whichever job started it
            # all routes in one command as the neighbour; a port that does not answer HTTP stops at the first
            lines = [f"c=$(curl -gs -o /dev/null -w '%{{http_code}}' --max-time 5 -X {m} "
                     f"{body if m != 'GET' else ''} 'http://{node}:{port}{r.format(**targets)}'); "
                     f"echo \"{m} {r.format(**targets)} $c\"; [ \"$c\" = 000 ] && exit 0" for m, r in PROBES]
            out = as_neighbour("\n".join(lines), timeout=300).stdout.split("\n")
            for line in filter(None, out):
                method, route, code = line.split(" ")
                tried.append((node, port, prog, route, code))
                if code == "000":
                    assert (node, port) in raw_protocols, (node, port, prog, "listens, and is not HTTP")
                    continue
                # refused, or a route the server does not have (nothing was parsed or computed for the caller);
                # a gate whose server is not (or no longer) up answers 502 and nothing more
                allowed = {"401", "403", "404", "405"} | ({"502"} if prog == "python3" else set()) | ({"200"} if route.split("?")[0] in OPEN and method == "GET" else set())
                assert code in allowed, (node, port, prog, method, route, code)
    # every service's port and every gated exporter was among those tried
    ours = {(eps[n].host, p) for n in eps for p in [eps[n].port, *exporters[n].values()]}
    assert ours - node_exporters <= {(n, p) for n, p, *_ in tried}, (ours, tried)
    # the gated exporters' counters are there for Prometheus, without the key, and nothing of our keys
    for name in ("redis", "postgres"):
        ep = eps[name]
        up = ("redis_up 1", "pg_up 1")
        deadline = time.monotonic() + 30   # (an exporter's first scrape of its server may still be under way)
        while True:
            r = as_neighbour(f"curl -s --max-time 10 http://{ep.host}:{exporters[name][name]}/metrics")
            if any(u in r.stdout for u in up) or time.monotonic() > deadline:
                break
            time.sleep(2)
        assert any(u in r.stdout for u in up), r.stdout[-500:]
    # the Redis exporter is its own ACL user: it may read INFO, not a key
    r = as_neighbour(f"curl -s --max-time 10 'http://{eps['redis'].host}:{exporters['redis']['redis']}/metrics'")
    assert "redis_key_" not in r.stdout
