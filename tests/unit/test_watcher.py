"""The watcher's loop, options and status server, with a transport that fails or answers as told."""

import json
import urllib.error
import urllib.request

import pytest

from orchestrator.cluster.transport import CommandResult, TransportStats
from orchestrator.config import Config, RemoteConfig, SlurmConfig, SSHConfig
from orchestrator.errors import OrchestratorError
from orchestrator.services.servers import ServersModule
from orchestrator.watch.watcher import Watcher, WatchOptions


class FailingSqueue:
    """A login node whose slurmctld is down: squeue exits non-zero."""
    description = "fake"

    def __init__(self):
        self.stats = TransportStats()
        self.commands = []

    def run(self, command, **kw):
        self.commands.append(command)
        return CommandResult(command, 3, "", "squeue: error: Unable to contact slurm controller (connect failure)")


def watcher(tmp_path, transport=None, **options):
    cfg = Config(ssh=SSHConfig(host="x"), slurm=SlurmConfig(), remote=RemoteConfig(), state_dir=tmp_path,
                 results_dir=tmp_path)
    events = []
    t = transport or FailingSqueue()
    w = Watcher(cfg, t, ServersModule(cfg, t), WatchOptions(**options), log=lambda m, **f: events.append((m, f)))
    return w, events, t


def test_a_failing_poll_is_logged_counted_and_retried_never_fatal(tmp_path):
    w, events, t = watcher(tmp_path, interval=0.01)
    w.run(count=3)
    assert len(t.commands) == 3
    st = w.stats_doc()
    assert (st["polls"], st["errors"]) == (3, 3) and "Unable to contact slurm controller" in st["last_error"]
    assert [f["level"] for _, f in events] == ["error"] * 3
    assert w.jobs() == []  # a failed poll is not "every job gone"


def test_options_from_environment_then_flags(tmp_path):
    env = {"ORCH_WATCH_INTERVAL": "7", "ORCH_WATCH_PARTITIONS": "gpu,cpu", "ORCH_WATCH_USER": "bob"}
    o = WatchOptions.from_env(env, interval=None, partitions=None, user="alice", job_pattern="^vllm")
    assert (o.interval, o.partitions, o.user, o.job_pattern) == (7.0, ["gpu", "cpu"], "alice", "^vllm")
    with pytest.raises(OrchestratorError, match="--job-pattern: not a valid regular expression"):
        WatchOptions.from_env({}, job_pattern="(")
    with pytest.raises(OrchestratorError, match="--interval: expected a positive number"):
        WatchOptions.from_env({}, interval=0)


def test_filters_select_other_jobs_by_partition_user_and_name(tmp_path):
    from orchestrator.cluster.slurm import Job
    w, _, _ = watcher(tmp_path, partitions=["gpu"], job_pattern="^train")
    assert w._matches_filters(Job("1", "train-llm", "RUNNING", partition="gpu"))
    assert not w._matches_filters(Job("2", "train-llm", "RUNNING", partition="cpu"))
    assert not w._matches_filters(Job("3", "eval", "RUNNING", partition="gpu"))
    plain, _, _ = watcher(tmp_path)
    assert not plain._matches_filters(Job("4", "anything", "RUNNING"))  # no filter: only the tool's own jobs


def get(url):
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def test_status_server_answers_on_localhost(tmp_path):
    w, _, _ = watcher(tmp_path, interval=0.01)
    w.store.update("12", job_id="12", state="FAILED", verdict="time limit")
    w.run(count=1)
    server = w.serve(0)
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}"
        assert server.server_address[0] == "127.0.0.1"
        code, body = get(f"{base}/healthz")
        assert code == 200 and json.loads(body)["ok"] is True
        code, body = get(f"{base}/jobs")
        assert [j["verdict"] for j in json.loads(body)] == ["time limit"]
        code, body = get(f"{base}/stats")
        assert json.loads(body)["errors"] == 1 and json.loads(body)["jobs_by_state"] == {"FAILED": 1}
        code, body = get(f"{base}/metrics")
        assert 'orch_watch_jobs{state="FAILED"} 1' in body and "orch_watch_poll_errors_total 1" in body
        code, body = get(f"{base}/nope")
        assert code == 404 and "/healthz" in body
    finally:
        server.shutdown()


class ShellCluster:
    """A login node in a folder: every command runs in bash there, with a squeue and a scontrol that answer
    from files (``queue`` for squeue's list, ``record`` for scontrol show job, ``owner`` for squeue -O)."""
    description = "shell"

    def __init__(self, root):
        import os
        self.root = root
        self.stats = TransportStats()
        self.commands = []
        bin_dir = root / "bin"
        bin_dir.mkdir()
        (bin_dir / "squeue").write_text('#!/bin/bash\ncase "$*" in *UserName*) cat "$ROOT/owner";; '
                                        '*) cat "$ROOT/queue" 2>/dev/null;; esac\n')
        (bin_dir / "scontrol").write_text('#!/bin/bash\ncat "$ROOT/record"\n')
        (bin_dir / "sacct").write_text("#!/bin/bash\nexit 1\n")
        for f in bin_dir.iterdir():
            f.chmod(0o755)
        self.env = {"PATH": f"{bin_dir}:{os.environ['PATH']}", "ROOT": str(root), "HOME": str(root)}

    def run(self, command, **kw):
        import subprocess
        self.commands.append(command)
        p = subprocess.run(["bash", "-c", command], capture_output=True, text=True, cwd=self.root, env=self.env)
        return CommandResult(command, p.returncode, p.stdout, p.stderr)


def test_a_neighbours_forged_output_path_is_a_path_never_a_command_nor_our_secret(tmp_path):
    """Another user's failed job whose StdOut (printed raw by scontrol) holds shell text and a forged
    `StdOut=<our secret> UserId=<us>`: the watcher quotes what it sends, reads the user from squeue's
    `UserName` and opens only a plain file of that user: nothing runs, and our secret is never read."""
    from orchestrator.cluster.slurm import SEP
    secret = tmp_path / "secret"
    secret.write_text("s3cr3t\n")
    cluster = ShellCluster(tmp_path)
    w, events, _ = watcher(tmp_path / "state", transport=cluster, user="bob", interval=0.01)
    (tmp_path / "queue").write_text(SEP.join(["9", "bait", "RUNNING", "0:05", "n1", "None", "cpu", "bob",
                                              "10:00", "2026-01-01T00:00:00", "2026-01-01T00:00:01"]) + "\n")
    assert w.poll() == []
    (tmp_path / "queue").write_text("")
    (tmp_path / "owner").write_text("bob|\n")
    evil = "/x'; touch PWNED; '$(touch PWNED)"   # (breaks out of single quotes, or runs where unquoted)
    (tmp_path / "record").write_text(f"JobId=9 JobName=bait UserId=bob(1001) JobState=FAILED ExitCode=3:0 "
                                     f"StdOut={evil} StdOut={secret} UserId=root(0) Power=\n")
    verdicts = w.poll()
    assert [v["job_id"] for v in verdicts] == ["9"]
    assert not (tmp_path / "PWNED").exists()
    assert "s3cr3t" not in json.dumps(w.jobs()) and all("s3cr3t" not in m for m, _ in events)
    # the forged path itself was offered to the reader quoted whole
    assert any("touch PWNED" in c for c in cluster.commands)
