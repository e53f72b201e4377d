"""A cluster is shared: services locked by their job's secret, private job files, and nothing another
user controls (a recipe's package path, a Host header, a job name, a known_hosts line) turned against
the user. The pure parts; the neighbour's own attempts run on the sandbox (tests/e2e/test_neighbour_e2e.py)."""

import json
import os
import stat
import subprocess
import threading
import urllib.error
import urllib.request
from http.server import ThreadingHTTPServer
from pathlib import Path

import bcrypt
import paramiko
import pytest
import yaml

from orchestrator.cluster import jobdir
from orchestrator.cluster.hostkeys import parse_known_hosts
from orchestrator.cluster.remote import Marker
from orchestrator.cluster.shell import quote
from orchestrator.cluster.ssh import Endpoint, _RefuseUnknownKey
from orchestrator.config import SlurmConfig
from orchestrator.errors import HostKeyError, RecipeError
from orchestrator.fileio import NotPrivate, private_dir
from orchestrator.localhttp import host_allowed
from orchestrator.monitoring.targets import ResolvedTarget, render_prometheus_config
from orchestrator.services.auth import curl_config, job_files, web_config
from orchestrator.services.jobscript import render_service_script
from orchestrator.services.recipes import load_recipe, parse_recipe
from orchestrator.services.servers import job_bundle
from orchestrator.terminal import printable

SHIPPED = sorted(Path(__file__).resolve().parents[2].joinpath("recipes/services").glob("*.yaml"))
SLURM = SlurmConfig(partition="cpu")
# what each shipped service must be locked with; `none` only where the recipe says why (read-only host
# counters, a static folder): the report names every open one
LOCKS = {"chroma": "bearer", "grafana": "basic", "llamacpp": "bearer", "llamacpp-rpc": "bearer", "vllm-multinode": "bearer", "minio": "password", "node-exporter": "none",
         "ollama": "bearer", "postgres": "password", "prometheus": "basic", "python-http": "none", "qdrant": "bearer",
         "redis": "password", "standin-llm": "bearer", "vllm": "bearer"}


def recipe(**service):
    return parse_recipe({"service": {"name": "x", "command": "true", **service}}, source="t.yaml")


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_every_shipped_recipe_declares_its_lock(path):
    r = load_recipe(str(path))
    assert r.auth == LOCKS[r.name]
    script = render_service_script(r, SLURM, "x_0123abcd")
    assert "umask 077" in script and 'ORCH_SECRET_FILE="$ORCH_JOB_DIR/secret"' in script
    # no secret or password is ever on a command line: the recipes hand over the file, or read it in a shell builtin
    assert "--api-key " not in script and "--requirepass" not in script and "trust" not in r.command


def test_the_locked_recipes_hand_the_secret_file_to_their_server():
    assert '--api-key-file "${ORCH_SECRET_FILE}"' in render_service_script(load_recipe("llamacpp"), SLURM, "l_0123abcd")
    rpc = render_service_script(load_recipe("llamacpp-rpc"), SLURM, "l_0123abcd")
    # ggml-rpc-server has no lock: it listens on each worker's loopback, reached only through the gate
    assert '--api-key-file "${ORCH_SECRET_FILE}"' in rpc and "rpc_gate.py worker" in rpc and "--secret-file" in rpc
    assert "-- ggml-rpc-server -t" in rpc and "ggml-rpc-server -H 0.0.0.0" not in rpc
    pg = render_service_script(load_recipe("postgres"), SLURM, "p_0123abcd")
    assert "--auth=scram-sha-256" in pg and '--pwfile="${ORCH_SECRET_FILE}"' in pg and "0.0.0.0/0 scram-sha-256" in pg
    assert 'DATA_SOURCE_NAME="postgresql://postgres:$(cat "$ORCH_SECRET_FILE")@' in pg   # its exporter: environment
    redis = render_service_script(load_recipe("redis"), SLURM, "r_0123abcd")
    assert "requirepass" in redis and "rename-command CONFIG" in redis and "protected-mode no" not in redis
    # the exporter never has the main password: its own ACL user, whose password the job makes
    assert 'REDIS_PASSWORD="$(cat "$ORCH_SECRET_FILE")"' not in redis
    assert 'REDIS_USER=orch-exporter REDIS_PASSWORD="$(cat "$ORCH_EXPORTER_SECRET_FILE")"' in redis
    assert "--web.config.file=${ORCH_JOB_DIR}/web.yml" in render_service_script(load_recipe("prometheus"), SLURM,
                                                                                  "prometheus_0123abcd")


def test_curl_configs_and_the_prometheus_web_config():
    assert curl_config("bearer", "s3cr3t") == 'header = "Authorization: Bearer s3cr3t"\n'
    assert curl_config("basic", "s3cr3t") == 'user = "orch:s3cr3t"\n'
    assert curl_config("password", "s3cr3t") == curl_config("none", "s3cr3t") == ""
    users = yaml.safe_load(web_config("s3cr3t"))["basic_auth_users"]
    assert bcrypt.checkpw(b"s3cr3t", users["orch"].encode()) and not bcrypt.checkpw(b"other", users["orch"].encode())
    files = job_files("basic", "s3cr3t")
    assert set(files) == {"secret", "curl.conf", "web.yml"} and files["secret"] == "s3cr3t"
    assert set(job_files("bearer", "k")) == {"secret", "curl.conf"}


def test_the_job_bundle_is_private(tmp_path):
    import base64
    import io
    import tarfile
    data = base64.b64decode(job_bundle({"job.sbatch": b"#!/bin/bash\n", "secret": b"k"}))
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        assert {m.name: stat.S_IMODE(m.mode) for m in tar} == {"job.sbatch": 0o600, "secret": 0o600}


def test_recipe_inputs_that_could_escape_are_refused(tmp_path):
    with pytest.raises(Exception, match="inside the package"):
        recipe(files={"x.py": "package:../../../../etc/shadow"})
    with pytest.raises(Exception, match="inside the package"):
        recipe(files={"x.py": "package:bench/../../../etc/passwd"})
    for reserved in ("secret", "curl.conf", "web.yml"):
        with pytest.raises(Exception, match="plain file name"):
            recipe(files={reserved: "package:oncluster/clientjob.py"})
    with pytest.raises(Exception, match="without NUL"):
        recipe(environment={"X": "a\x00ORCH_JOB_DIR:-$(touch /tmp/pwned)\x00"})
    with pytest.raises(Exception, match="auth"):
        recipe(auth="token")
    r = parse_recipe({"service": {"name": "x", "command": "echo \x00ORCH_NODE:-$(id)\x00"}}, source="t.yaml")
    with pytest.raises(RecipeError, match="without NUL"):
        render_service_script(r, SLURM, "x_0123abcd")


def _probe_cancel(tmp_path, squeue_line: str, submitted: str = "") -> tuple[str, str]:
    """jobdir.probe_script with cancel, run in bash against a squeue that prints ``squeue_line`` for the
    job (user|submit time|name|) and a scancel that logs what it was asked: (what it printed, scancel's log)."""
    import getpass
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    (tmp_path / "line").write_text(squeue_line + "\n")
    (tmp_path / "cancelled").write_text("")
    for name, body in {"squeue": f'cat {tmp_path}/line', "scancel": f'echo "$*" >> {tmp_path}/cancelled',
                       "scontrol": "exit 1", "sacct": "exit 1"}.items():
        (bin_dir / name).write_text(f"#!/bin/bash\n{body}\n")
        (bin_dir / name).chmod(0o755)
    mark = Marker()
    script = jobdir.probe_script(str(tmp_path / "w"), mark, service_id="redis_0123abcd", job_id="42", cancel=True,
                                 submitted=submitted)
    out = subprocess.run(["bash", "-c", script], capture_output=True, text=True, cwd=tmp_path,
                         env={"PATH": f"{bin_dir}:/usr/bin:/bin", "HOME": str(tmp_path)}).stdout
    assert getpass.getuser()
    said = [sec.text.strip() for sec in mark.parse(out) if sec.name == "cancel"]
    return said[0], (tmp_path / "cancelled").read_text().strip()


def test_stop_cancels_only_our_job_of_that_name_and_submission_decided_where_scancel_runs(tmp_path):
    import getpass
    me = getpass.getuser()
    assert _probe_cancel(tmp_path, f"{me}|2026-12-03T10:00:00|redis_0123abcd|", "2026-12-03T10:00:00") == ("rc=0", "42")
    assert _probe_cancel(tmp_path, f"{me}|2026-12-03T10:00:00|redis_0123abcd|") == ("rc=0", "42")  # (none recorded)
    # the same user and name submitted again: not the job of the record, and not cancelled
    assert _probe_cancel(tmp_path, f"{me}|2026-12-03T11:11:11|redis_0123abcd|", "2026-12-03T10:00:00") == ("resubmitted", "")
    # another user's job of our name; one whose name forges our user after a '|': never cancelled
    assert _probe_cancel(tmp_path, "bob|2026-12-03T10:00:00|redis_0123abcd|") == ("refused", "")
    assert _probe_cancel(tmp_path, f"bob|2026-12-03T10:00:00|redis_0123abcd|{me}|x|") == ("refused", "")
    cancel = jobdir.cancel_script({"7": "x_0123abcd"}, Marker())
    assert "-o '%j|%u'" in cancel and '= x_0123abcd"|$me"' in cancel


def _tails(tmp_path, paths: dict[str, str], squeue_user: str, lines: int = 3) -> dict[str, str]:
    """jobdir.log_tails_script run in bash, with a squeue that names ``squeue_user`` as every job's user."""
    import getpass
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / "squeue").write_text(f"#!/bin/sh\necho '{squeue_user}|'\n")
    (bin_dir / "squeue").chmod(0o755)
    mark = Marker()
    script = jobdir.log_tails_script({k: quote(p) for k, p in paths.items()}, lines, mark,
                                     foreign={k: "9" for k in paths})
    out = subprocess.run(["bash", "-c", script], capture_output=True, text=True, cwd=tmp_path,
                         env={"PATH": f"{bin_dir}:/usr/bin:/bin"}).stdout
    assert getpass.getuser()
    return {sec.args[0]: sec.text for sec in mark.parse(out) if sec.name == "log"}


def test_another_users_output_file_is_read_only_when_it_is_that_users_plain_file(tmp_path):
    import getpass
    me = getpass.getuser()
    secret = tmp_path / "secret"
    secret.write_text("s3cr3t\n")
    log = tmp_path / "out.txt"
    log.write_text("".join(f"line {i}\n" for i in range(10)))
    (tmp_path / "link").symlink_to(secret)
    os.mkfifo(tmp_path / "fifo")
    # the job's user's own plain file: its last lines
    assert _tails(tmp_path, {"a": str(log)}, me)["a"].split() == ["line", "7", "line", "8", "line", "9"]
    # the same file when squeue says the job is someone else's (a forged record's user is never asked)
    got = _tails(tmp_path, {"a": str(log), "b": str(tmp_path / "link"), "c": str(tmp_path / "fifo")}, "bob")
    assert all("log not read" in t for t in got.values()) and "s3cr3t" not in str(got)
    # a link to our secret, even when squeue names us: not followed; a FIFO does not hang the watcher
    got = _tails(tmp_path, {"b": str(tmp_path / "link"), "c": str(tmp_path / "fifo")}, me)
    assert all("log not read" in t for t in got.values()) and "s3cr3t" not in str(got)


def test_a_forged_stdout_record_never_reads_our_secret_nor_runs_its_text(tmp_path):
    """scontrol prints a job's --output raw: `StdOut=/tmp/a StdOut=<our secret> UserId=<us>(uid)` must not
    make the watcher read our secret, and a path of `/x'; touch PWNED; '` is a path, not a command."""
    import getpass
    from orchestrator.cluster.slurm import parse_job_records
    me = getpass.getuser()
    secret = tmp_path / "secret"
    secret.write_text("s3cr3t\n")
    record = (f"JobId=9 JobName=bait UserId=bob(1001) GroupId=bob(1001) JobState=FAILED ExitCode=3:0 "
              f"StdErr=/tmp/a StdIn=/dev/null StdOut=/tmp/a StdOut={secret} UserId={me}(0) Power=")
    job = parse_job_records(record)[0]
    assert job.user == "bob" and job.stdout == "/tmp/a"     # scontrol's own keys, not the job's text
    got = _tails(tmp_path, {"9": job.stdout, "8": str(secret)}, "bob")   # even given the secret's path
    assert "s3cr3t" not in str(got) and "log not read" in got["8"]
    evil = "/x'; touch PWNED; '"
    _tails(tmp_path, {"7": evil}, me)
    assert not (tmp_path / "PWNED").exists() and not Path("PWNED").exists()


def test_prometheus_scrapes_locked_targets_with_their_secret_and_itself_with_basic_auth():
    text = render_prometheus_config("prometheus_0123abcd", [
        ResolvedTarget("llamacpp_1", "n1:8080", "/metrics", {"service_id": "llamacpp_11111111"}, "llamacpp_11111111",
                       auth="bearer"),
        ResolvedTarget("llamacpp_1-node", "n1:9100", "/metrics", {}, "llamacpp_11111111", "node")], "5s")
    jobs = {j["job_name"]: j for j in yaml.safe_load(text)["scrape_configs"]}
    assert jobs["prometheus"]["basic_auth"] == {"username": "orch", "password_file": "secret"}
    assert jobs["llamacpp_1"]["authorization"] == {"credentials_file": "../llamacpp_11111111/secret"}
    assert "authorization" not in jobs["llamacpp_1-node"]


def test_local_servers_answer_only_requests_that_name_loopback():
    assert host_allowed("127.0.0.1:8765", 8765) and host_allowed("localhost:8765", 8765)
    assert host_allowed("[::1]:8765", 8765) and host_allowed("LOCALHOST", 8765)
    assert not host_allowed("evil.example:8765", 8765) and not host_allowed("127.0.0.1:9999", 8765)
    assert not host_allowed(None, 8765) and not host_allowed("127.0.0.1.evil.example:8765", 8765)


def test_the_dashboard_refuses_a_rebound_host_name():
    from orchestrator.monitoring.dashboard import serve

    class Page:
        def page(self):
            return "<html>ok</html>"

    srv = serve(Page())
    port = srv.server_address[1]
    try:
        ok = urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5)
        assert ok.status == 200 and b"ok" in ok.read()
        req = urllib.request.Request(f"http://127.0.0.1:{port}/", headers={"Host": f"rebind.example:{port}"})
        with pytest.raises(urllib.error.HTTPError) as exc:
            urllib.request.urlopen(req, timeout=5)
        assert exc.value.code == 403
    finally:
        srv.shutdown()


def test_text_from_the_cluster_reaches_the_terminal_without_escape_sequences():
    name = "job\x1b]52;c;cHduZWQ=\x07\x1b[2J\r\x9bname"
    out = printable(name + "\nline\ttab")
    assert "\x1b" not in out and "\x07" not in out and "\r" not in out and "\x9b" not in out
    assert out == "job\\x1b]52;c;cHduZWQ=\\x07\\x1b[2J\\x0d\\x9bname\nline\ttab"


def test_a_private_dir_is_made_0700_and_a_link_or_a_foreign_one_refused(tmp_path):
    d = private_dir(tmp_path / "state" / "agent")
    assert stat.S_IMODE(d.stat().st_mode) == 0o700
    (tmp_path / "open").mkdir(mode=0o777)
    os.chmod(tmp_path / "open", 0o777)
    assert stat.S_IMODE(private_dir(tmp_path / "open").stat().st_mode) == 0o700   # ours: tightened
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(NotPrivate, match="not a plain directory"):
        private_dir(tmp_path / "link")
    if os.geteuid() == 0:   # (the unit lane also runs unprivileged, where chown is not possible)
        (tmp_path / "theirs").mkdir()
        os.chown(tmp_path / "theirs", 65534, 65534)
        with pytest.raises(NotPrivate, match="belongs to uid 65534"):
            private_dir(tmp_path / "theirs")


def _key_line(host, key):
    return f"{host} {key.get_name()} {key.get_base64()}"


def test_host_keys_revoked_ones_refused_first_and_several_of_one_type_kept():
    old, new, other = (paramiko.ECDSAKey.generate() for _ in range(3))
    kh = parse_known_hosts("\n".join([_key_line("login", old), _key_line("login", new),
                                      f"@revoked login {old.get_name()} {old.get_base64()}"]))
    assert kh.keys_for("login") == [(new.get_name(), new.get_base64())]
    policy = _RefuseUnknownKey(Endpoint(alias="login", hostname="login", port=22, user="u", key_files=(), proxy_jump=()), "~/.ssh/known_hosts", kh)
    policy.missing_host_key(None, "login", new)                 # the second key of the type is accepted
    with pytest.raises(HostKeyError, match="@revoked"):         # listed on a plain line too: still refused
        policy.missing_host_key(None, "login", old)
    with pytest.raises(HostKeyError, match="CHANGED"):
        policy.missing_host_key(None, "login", other)


def test_the_stand_in_server_wants_its_key_as_vllm_does(tmp_path):
    from orchestrator.oncluster.standin_llm import Engine, make_handler
    srv = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(Engine(1, 1000.0, 0.0, 0.0, 8, "m"), "k3y"))
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{srv.server_address[1]}"
    try:
        assert urllib.request.urlopen(base + "/health", timeout=5).status == 200
        assert urllib.request.urlopen(base + "/metrics", timeout=5).status == 200
        with pytest.raises(urllib.error.HTTPError) as exc:
            urllib.request.urlopen(base + "/v1/models", timeout=5)
        assert exc.value.code == 401
        with pytest.raises(urllib.error.HTTPError):
            urllib.request.urlopen(urllib.request.Request(base + "/v1/models", headers={"Authorization": "Bearer no"}),
                                   timeout=5)
        ok = urllib.request.Request(base + "/v1/models", headers={"Authorization": "Bearer k3y"})
        assert urllib.request.urlopen(ok, timeout=5).status == 200
    finally:
        srv.shutdown()


class _Recorded:
    """A transport that answers every command with one recorded probe (marker "rec")."""

    def __init__(self, text):
        self.text = text

    def run(self, command, **kw):
        from orchestrator.cluster.transport import CommandResult
        return CommandResult(command, 0, self.text, "")


def test_a_record_keeps_its_jobs_submit_time_and_refuses_another_submission(tmp_path, data):
    from orchestrator.config import Config, RemoteConfig, SSHConfig
    from orchestrator.errors import OrchestratorError
    from orchestrator.services.servers import ServersModule
    cfg = Config(ssh=SSHConfig(host="login"), slurm=SLURM, remote=RemoteConfig(), state_dir=tmp_path / "state",
                 results_dir=tmp_path / "results")
    import re
    text = data("probe_running.txt")
    sid, job, submitted = re.search(r"JobId=(\d+) JobName=(\S+) .* SubmitTime=(\S+)", text).group(2, 1, 3)
    servers = ServersModule(cfg, _Recorded(text))
    servers.store.update(sid, service_id=sid, job_id=job, state="PENDING")
    servers.probe(sid, mark=Marker("rec"))
    assert servers.store.get(sid)["slurm_submit_time"] == submitted
    servers.store.update(sid, slurm_submit_time="2026-01-01T00:00:00")
    with pytest.raises(OrchestratorError, match="another submission of that name; nothing was done"):
        servers.probe(sid, mark=Marker("rec"))


class _Queue:
    """A transport whose queue lists the given job names (squeue --me -o %j)."""

    def __init__(self, names):
        self.names, self.commands = names, []

    def run(self, command, **kw):
        from orchestrator.cluster.transport import CommandResult
        self.commands.append(command)
        return CommandResult(command, 0, "\n".join(self.names) + "\n", "")


def test_a_service_is_found_by_its_hex_part_alone_as_the_seed_documents_show(tmp_path):
    from orchestrator.config import Config, RemoteConfig, SSHConfig
    from orchestrator.errors import OrchestratorError
    from orchestrator.services.servers import ServersModule
    cfg = Config(ssh=SSHConfig(host="login"), slurm=SLURM, remote=RemoteConfig(), state_dir=tmp_path / "state",
                 results_dir=tmp_path / "results")
    q = _Queue(["ollama_6355d49f", "redis_6355d49e", "someone-elses-job"])
    servers = ServersModule(cfg, q)
    servers.store.update("vllm_0123abcd", service_id="vllm_0123abcd", job_id="41")
    assert servers._ids("0123abcd") == ("vllm_0123abcd", "41") and q.commands == []   # tracked: no remote call
    assert servers._ids("6355d49f") == ("ollama_6355d49f", None)                       # from the user's queue
    assert servers._ids("41") == ("vllm_0123abcd", "41")                               # a job ID still is one
    servers.store.update("redis_6355d49f", service_id="redis_6355d49f", job_id="42")
    servers.store.update("chroma_6355d49f", service_id="chroma_6355d49f", job_id="43")
    with pytest.raises(OrchestratorError, match="names 2 services: chroma_6355d49f, redis_6355d49f"):
        servers._ids("6355d49f")
    with pytest.raises(OrchestratorError, match="no service with ID '<name>_deadbeef'"):
        servers._ids("deadbeef")
    assert servers._ids("12345678") == (None, "12345678")   # all digits, no such service: a job ID


def test_aiperfs_key_reaches_its_argument_parser_but_never_its_command_line(tmp_path):
    """aiperf takes the key only as --api-key: it runs under a launcher, so `ps` (its /proc cmdline) never
    shows the key, while its own sys.argv (what its parser reads) ends with it."""
    import sys as _sys
    from orchestrator.oncluster.refclient import key_command
    tool = tmp_path / "aiperf"
    tool.write_text(f"#!{_sys.executable}\nimport json, os, sys\n"
                    "cmdline = open('/proc/self/cmdline', 'rb').read().split(b'\\0')\n"
                    "print(json.dumps({'argv': sys.argv[1:], 'cmdline': [c.decode() for c in cmdline],"
                    " 'env': [k for k, v in os.environ.items() if 'k3y' in v]}))\n")
    tool.chmod(0o755)
    argv, env, exposed = key_command("aiperf", ["env", "-u", "HF_HUB_OFFLINE", str(tool), "profile", "--model", "m"],
                                     "s3cr3t-k3y")
    assert not exposed
    out = subprocess.run(argv, env={**os.environ, **env}, capture_output=True, text=True, timeout=30)
    seen = json.loads(out.stdout)
    assert seen["argv"] == ["profile", "--model", "m", "--api-key", "s3cr3t-k3y"]
    assert not any("s3cr3t" in c for c in seen["cmdline"]) and seen["env"] == []   # (popped before the tool ran)
    # a tool that is no Python script: the key is in argv, and the caller is told so
    binary = tmp_path / "wrapper"
    binary.write_text("#!/bin/sh\necho \"$@\"\n")
    binary.chmod(0o755)
    assert key_command("aiperf", [str(binary), "profile"], "k")[2] is True
    assert key_command("vllm-bench", ["vllm", "bench", "serve"], "k") == (["vllm", "bench", "serve"], {"OPENAI_API_KEY": "k"}, False)
