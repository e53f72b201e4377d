"""What the tool did not start, on the sandbox, for real: a llama.cpp server submitted with a plain
`sbatch` (as a user's own script would) is monitored with seed 000's `monitor start --recipe
llamacpp-monitor --targets <job ID>`; a node exporter at a raw host:port is added and answers `up`;
neither job is touched by the tool, and both still run when its monitor has gone."""

import json
import shutil
import time

import pytest

from orchestrator.cluster.shell import quote

pytestmark = [pytest.mark.e2e,
              pytest.mark.skipif(not shutil.which("llama-server"), reason="llama-server not built here "
                                 "(scripts/build-llama-server.sh)")]

LLAMA = ("exec llama-server -m /var/cache/orch-llama/test-model.gguf --host 0.0.0.0 --port 8080 --metrics "
         "-np 2 -c 2048 --threads 1")
NODE_EXPORTER = "exec prometheus-node-exporter --web.listen-address=:9100 --collector.disable-defaults --collector.loadavg"


def sbatch(ssh, name: str, wrap: str, node: str) -> str:
    out = ssh.run(f"sbatch --parsable -J {quote(name)} -w {node} -t 10 -o /dev/null --wrap {quote(wrap)}",
                  check=True).stdout
    return out.strip().split(";")[0]


def state(ssh, job_id: str) -> str:
    return ssh.run(f"squeue -h -j {job_id} -o %T", check=False).stdout.strip()


def eventually(fn, timeout=60):
    deadline = time.monotonic() + timeout
    while not (value := fn()) and time.monotonic() < deadline:
        time.sleep(1)
    return value


def series(run_cli, mid: str, promql: str) -> list[tuple[dict, float]]:
    doc = json.loads(run_cli("--query-service-metrics", mid, promql, "--json").stdout)
    return [(r["metric"], float(r["value"][1])) for r in doc["result"]]


@pytest.fixture(scope="module")
def users_jobs(sandbox_config_path):
    """The user's own jobs, submitted without the tool, once for the module (their fixed ports are free
    again only once a job has gone): llama.cpp on n1, a node exporter on n2."""
    from orchestrator.cluster.ssh import SSHTransport
    from orchestrator.config import load_config
    t = SSHTransport(load_config(sandbox_config_path, env={}).ssh)
    jobs = {"llama": sbatch(t, "my-llama", LLAMA, "n1"), "exporter": sbatch(t, "my-exporter", NODE_EXPORTER, "n2")}
    try:
        yield jobs
    finally:
        t.run("scancel " + " ".join(jobs.values()))
        t.close()


def test_a_job_the_tool_did_not_start_is_monitored_with_a_monitor_recipe(run_cli, ssh, users_jobs):
    started = run_cli("monitor", "start", "--recipe", "llamacpp-monitor", "--targets", users_jobs["llama"], "--json")
    mid = json.loads(started.stdout)["monitor_id"]
    try:
        assert eventually(lambda: [t for t in json.loads(run_cli("monitor", "status", mid, "--json").stdout)["targets"]
                                   if t["instance"] == "n1:8080" and t["job"] == "llamacpp"], timeout=30)
        # llama.cpp's own counters, through the recipe's target (job name "llamacpp", port 8080)
        answer = eventually(lambda: [x for x in series(run_cli, mid, 'up{job="llamacpp"}') if x[1] == 1])
        assert answer and answer[0][0]["slurm_job_id"] == users_jobs["llama"], answer
        assert eventually(lambda: series(run_cli, mid, "llamacpp:n_decode_total"))   # the engine's own counter
        # a raw host:port: the exporter the user runs on n2
        added = run_cli("monitor", "add-target", mid, "n2:9100", "--job-name", "my-node", "--json")
        assert json.loads(added.stdout)[0]["address"] == "n2:9100"
        node = eventually(lambda: [x for x in series(run_cli, mid, 'up{job="my-node"}') if x[1] == 1], timeout=40)
        assert node and node[0][0]["host"] == "n2"
        # an address that answers nothing is reported down, not retried silently
        run_cli("monitor", "add-target", mid, "n3:9", "--job-name", "nothing-there")
        down = eventually(lambda: [t for t in json.loads(run_cli("monitor", "status", mid, "--json").stdout)["targets"]
                                   if t["job"] == "nothing-there" and t["health"] == "down"], timeout=40)
        assert down and down[0]["last_error"]
    finally:
        run_cli("monitor", "stop", mid)
    assert state(ssh, users_jobs["llama"]) == "RUNNING" and state(ssh, users_jobs["exporter"]) == "RUNNING"


def test_a_bare_job_id_without_a_port_and_a_bad_target_say_what_to_write(run_cli, users_jobs):
    bare = run_cli("monitor", "start", "--targets", users_jobs["llama"], check=False)
    assert bare.returncode != 0 and f"{users_jobs['llama']}:PORT" in bare.stderr and "Traceback" not in bare.stderr
    bad = run_cli("monitor", "start", "--targets", "http://n1:8080/metrics?x=1", check=False)
    assert bad.returncode != 0 and "no query" in bad.stderr
    ended = run_cli("monitor", "start", "--targets", "999999:8080", check=False)
    assert ended.returncode != 0 and "999999" in ended.stderr and "no such job" in ended.stderr


def test_a_job_that_failed_between_two_polls_gets_its_verdict(run_cli, ssh):
    # a job of the user's own that fails at once (a bad path, the most common failure): it is never seen
    # running, yet the next poll lists it ended and explains it
    jid = sbatch(ssh, "my-failing-job", "echo starting; ls /no/such/model; exit 3", "n3")
    assert eventually(lambda: state(ssh, jid) in ("", "FAILED"), 30)
    time.sleep(1)
    proc = run_cli("watch", "--once", "--job-pattern", "^my-failing-job$", "--json", "-v",
                   env={"NVRX_SMONSVC_VERBOSE": "true"})
    jobs = {j["job_id"]: j for j in json.loads(proc.stdout)["jobs"]}
    assert jobs[jid]["state"] == "FAILED" and jobs[jid]["exit_code"] == "3:0", jobs.get(jid)
    assert jobs[jid]["verdict"], jobs[jid]
    quiet = run_cli("watch", "--once", "--job-pattern", "^nothing$", env={"NVRX_SMONSVC_VERBOSE": "true"})
    assert "poll:" in quiet.stderr   # seed 003's VERBOSE: each poll's debug line


def test_post_all_sends_every_ended_job_to_the_attribution_service(run_cli, ssh, tmp_path, sandbox_config_path):
    import http.server
    import threading
    jid = sbatch(ssh, "my-finishing-job", "echo done", "n3")
    assert eventually(lambda: state(ssh, jid) in ("", "COMPLETED"), 30)
    bodies = []

    asked = []

    class Attrsvc(http.server.BaseHTTPRequestHandler):   # a stand-in attribution service on loopback
        def do_POST(self):
            bodies.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(200)
            self.end_headers()

        def do_GET(self):   # seed 003's GET /logs/result: the analysis of a posted job
            from urllib.parse import parse_qs, urlsplit
            u = urlsplit(self.path)
            asked.append((u.path, parse_qs(u.query)))
            known = {b["job_id"] for b in bodies}
            job = parse_qs(u.query).get("job_id", [""])[0]
            body = json.dumps({"job_id": job, "result": "finished normally"}).encode()
            self.send_response(200 if u.path == "/logs/result" and job in known else 404)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            if job in known:
                self.wfile.write(body)

        def log_message(self, *a):
            pass
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Attrsvc)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        only_failed = run_cli("watch", "--once", "--job-pattern", "^my-finishing-job$", "--attrsvc-url", url, "--json")
        assert jid in {j["job_id"] for j in json.loads(only_failed.stdout)["jobs"]} and not bodies
        no_url = run_cli("watch", "--once", "--post-all", check=False)
        assert no_url.returncode != 0 and "--attrsvc-url" in no_url.stderr
        # a watcher of its own (another state dir): every ended job is posted, the completed one too
        cfg = tmp_path / "other.yaml"
        import yaml
        doc = yaml.safe_load(open(sandbox_config_path))
        doc["state_dir"] = str(tmp_path / "state")
        cfg.write_text(yaml.safe_dump(doc))
        fetched = run_cli("--config", str(cfg), "watch", "--once", "--job-pattern", "^my-finishing-job$",
                          "--attrsvc-url", url, "--post-all", "--json")
    finally:
        server.shutdown()
    posted = {b["job_id"]: b for b in bodies}
    assert posted[jid]["cause"] == "completed" and posted[jid]["state"] == "COMPLETED"
    # the result fetched back and kept with the job (what /jobs shows)
    jobs = {j["job_id"]: j for j in json.loads(fetched.stdout)["jobs"]}
    assert jobs[jid]["attrsvc_result"] == {"job_id": jid, "result": "finished normally"}
    assert any(p == "/logs/result" and q["job_id"] == [jid] for p, q in asked), asked


BENCH_MINE = """benchmark:
  name: mine-bench
  services:
    - {{name: mine, job: {job}, monitor_recipe: llamacpp-monitor}}
  monitor: {{recipe: prometheus, scrape_interval: 1s}}
  clients:
    - kind: openai-chat
      target: mine
      concurrency: 2
      duration: 6s
      warmup: 1s
      payload: {{model: test-model, stream: true, max_tokens: 8, ignore_eos: true}}
"""


def test_a_session_benchmarks_the_users_own_job_and_leaves_it_running(run_cli, ssh, users_jobs, tmp_path):
    recipe = tmp_path / "mine.yaml"
    recipe.write_text(BENCH_MINE.format(job=users_jobs["llama"]))
    proc = run_cli("--recipe", str(recipe))
    assert "started outside this tool" in proc.stderr
    out = next((tmp_path / "results").iterdir())
    report = json.loads((out / "report.json").read_text())
    rows = {r["what"]: r for r in report["cross_check"]}
    # llama.cpp's own counters prove the load: its prompt tokens agree with the requests' usage
    assert rows["input tokens"]["agree"] is True and rows["input tokens"]["client"] > 0, rows
    assert rows["output tokens"]["metric"] == "llamacpp:tokens_predicted_total" and rows["output tokens"]["client"] > 0
    said = " ".join(w["text"] for w in report["what_ran"] if w["role"] == "service")
    assert f"job {users_jobs['llama']} on n1" in said and "started outside this tool" in said
    jobs = {j["service_id"]: j for j in json.loads((out / "MANIFEST.json").read_text())["jobs"]}
    assert jobs["ext-mine"]["deployed_by_tool"] is False and jobs["ext-mine"]["job_id"] == users_jobs["llama"]
    assert state(ssh, users_jobs["llama"]) == "RUNNING"   # never stopped


def test_seed_000s_python_snippet_and_module_cli_as_written(sandbox_config_path, users_jobs, tmp_path, monkeypatch):
    import os
    import subprocess
    import sys
    from pathlib import Path
    root = Path(__file__).resolve().parents[2]
    monkeypatch.chdir(root)   # the seed's recipe_directory is relative to the checkout
    monkeypatch.setenv("ORCH_CONFIG", str(sandbox_config_path))
    from src.monitor import MonitorManager
    mgr = MonitorManager(recipe_directory="recipes/monitors")
    try:
        assert {"vllm-monitor", "llamacpp-monitor", "ollama-monitor"} <= set(mgr.list_available_recipes())
        inst = mgr.start_monitor("llamacpp-monitor", target_job_ids=[users_jobs["llama"]])
        assert inst.id.startswith("prometheus_") and inst.prometheus_url.startswith("http://n")
        snapshot = tmp_path / "out" / "snapshot.json"
        mgr.export_metrics(inst.id, snapshot)
        doc = json.loads(snapshot.read_text())
        assert doc["monitor_id"] == inst.id and "up" in doc["metrics"]
        assert mgr.stop_monitor(inst.id) is True
    finally:
        mgr.close()
    # `python -m src.monitor list` / `start --recipe R --targets ID` as seed 000 shows them
    env = dict(os.environ, ORCH_CONFIG=str(sandbox_config_path))
    listed = subprocess.run([sys.executable, "-m", "src.monitor", "list", "--available"], capture_output=True,
                            text=True, env=env, cwd=root, timeout=60)
    assert listed.returncode == 0 and "vllm-monitor" in listed.stdout
