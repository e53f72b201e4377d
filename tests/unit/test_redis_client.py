"""The Redis load client: RESP parsing, and runs against a real redis-server on loopback
(Debian's, which setup installs; skipped with the reason where it is missing)."""

import json
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

from orchestrator.bench.recipe import load_benchmark_text
from orchestrator.oncluster.redisload import command, parse_ratio, parse_reply

REDISLOAD = Path(__file__).resolve().parents[2] / "orchestrator" / "oncluster" / "redisload.py"


def test_resp_replies_parse_whole_or_not_at_all():
    buf = b"+OK\r\n$5\r\nhello\r\n$-1\r\n-ERR wrong\r\n:42\r\n$10\r\npart"
    pos, got = 0, []
    while (r := parse_reply(buf, pos)) is not None:
        got.append(r[:2])
        pos = r[2]
    assert got == [("+", "OK"), ("$", b"hello"), ("$", None), ("-", "ERR wrong"), (":", "42")]
    assert buf[pos:] == b"$10\r\npart"  # an incomplete bulk reply waits for more bytes
    assert command(b"SET", b"k", b"v\r\n") == b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$3\r\nv\r\n\r\n"


def test_ratio_is_checked_and_normalised():
    assert parse_ratio("get=3,set=1") == {"get": 0.75, "set": 0.25}
    with pytest.raises(SystemExit, match="unknown operation 'del'"):
        parse_ratio("get=1,del=1")


def bench(client: str) -> str:
    return ("benchmark:\n  name: r\n  services: [{recipe: redis}]\n  clients:\n"
            f"    - {{kind: redis, target: redis, duration: 5s, {client}}}\n")


@pytest.mark.parametrize("client, error", [
    ("ratio: {get: 0.5, del: 0.5}", r"clients\[0\]\.ratio\.del: unknown operation 'del': expected get or set"),
    ("slo: {ttft: 1s}", r"clients\[0\]\.slo: a redis client has no tokens: only e2e applies, got ttft"),
    ("payload: {prompt: hi}", r"clients\[0\]\.payload: unknown key"),
    ("pipeline: 0", r"clients\[0\]\.pipeline"),
    ("ratio: {get: 0, set: 0}", r"clients\[0\]\.ratio: expected shares that add up to more than 0"),
])
def test_a_redis_client_refuses_what_it_cannot_do_naming_the_field(client, error):
    with pytest.raises(Exception, match=error):
        load_benchmark_text(bench(client), "bench.yaml")


def test_redis_client_options_reach_the_job_command():
    from orchestrator.bench.clients import client_recipe
    spec = load_benchmark_text(bench("ratio: {get: 0.7, set: 0.3}, keys: 50, value_bytes: 64, pipeline: 4, "
                                     "preload: false"), "b.yaml").clients[0]
    r = client_recipe(spec, "http://n1:41234", node_index=2)
    assert r.command.startswith("python3 redisload.py --address n1:41234 --ratio get=0.7,set=0.3 --keys 50 "
                                "--value-bytes 64 --pipeline 4 --seed 2 --no-preload --concurrency 1")
    assert set(r.files) == {"redisload.py", "clientjob.py"}


@pytest.fixture
def redis_server(tmp_path):
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed (scripts/setup.sh installs it)")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                             "--dir", str(tmp_path), "--maxmemory", "4mb", "--maxmemory-policy", "noeviction"],
                            stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            time.sleep(0.05)
    yield port
    proc.terminate()
    proc.wait(10)


def run_client(tmp_path, port, *args):
    out = tmp_path / "ops.jsonl"
    subprocess.run(["python3", str(REDISLOAD), "--address", f"127.0.0.1:{port}", "--out", str(out), *args],
                   check=True, cwd=tmp_path, capture_output=True, timeout=60)
    return [json.loads(line) for line in open(out)], json.loads((tmp_path / "done.json").read_text())


def test_every_operation_is_recorded_in_the_mix_asked_for(tmp_path, redis_server):
    recs, done = run_client(tmp_path, redis_server, "--requests", "3000", "--concurrency", "4", "--keys", "200",
                            "--value-bytes", "100", "--ratio", "get=0.75,set=0.25", "--pipeline", "3")
    assert len(recs) == 3000 == done["ok"] and all(r["ok"] for r in recs)
    gets = [r for r in recs if r["op"] == "get"]
    assert 0.70 < len(gets) / len(recs) < 0.80
    assert all(r["bytes"] == 100 for r in recs)  # preloaded keys: every GET finds its value
    assert all(r["client_cpu_s"] > 0 and r["latency_s"] > 0 for r in recs)
    stats = subprocess.run(["redis-cli", "-p", str(redis_server), "info", "commandstats"], capture_output=True,
                           text=True).stdout if shutil.which("redis-cli") else ""
    if stats:  # the server counted exactly the operations recorded
        calls = {line.split(":")[0][len("cmdstat_"):]: int(line.split("calls=")[1].split(",")[0])
                 for line in stats.splitlines() if line.startswith("cmdstat_")}
        assert calls["get"] == len(gets) and calls["set"] == len(recs) - len(gets)


def test_refused_writes_are_recorded_as_errors_with_the_servers_message(tmp_path, redis_server):
    """maxmemory 4mb with noeviction: SETs of 64 KiB values start failing with OOM; the client
    records them as failed operations and carries on."""
    recs, done = run_client(tmp_path, redis_server, "--requests", "400", "--keys", "1000", "--value-bytes", "65536",
                            "--ratio", "set=1", "--no-preload")
    failed = [r for r in recs if not r["ok"]]
    assert failed and done["errors"] == len(failed) and len(recs) == 400
    assert failed[0]["error"].startswith("redis: OOM command not allowed")
