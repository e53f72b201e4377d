"""The vector client: exact neighbours, Chroma for real (from the client venv setup builds, when
present), and Qdrant against responses shaped as Qdrant's REST API documents them (OpenAPI:
collection info, query points, count): no Qdrant runs here, so these are not recordings."""

import json
import socket
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from orchestrator.bench.recipe import load_benchmark_text
from orchestrator.oncluster.vectorload import Http, Qdrant, exact_neighbours

VECTORLOAD = Path(__file__).resolve().parents[2] / "orchestrator" / "oncluster" / "vectorload.py"
VENV = Path("/var/cache/orch-venv")


def test_exact_neighbours_are_the_brute_force_ones():
    rng = np.random.default_rng(4)
    data, queries = rng.random((3000, 16), dtype=np.float32), rng.random((40, 16), dtype=np.float32)
    got = exact_neighbours(data, queries, 5)
    for q, row in zip(queries, got):
        d = ((data.astype("f8") - q.astype("f8")) ** 2).sum(axis=1)
        assert set(row.tolist()) == set(np.argsort(d)[:5].tolist())
        assert (np.diff(d[row]) >= -1e-6).all()  # nearest first


def bench(client: str) -> str:
    return ("benchmark:\n  name: v\n  services: [{recipe: chroma}]\n  clients:\n"
            f"    - {{kind: vector, target: chroma, {client}}}\n")


@pytest.mark.parametrize("client, error", [
    ("collection: ab", r"clients\[0\]\.collection: expected 3-512 letters"),
    ("vectors: 5, top_k: 10", r"clients\[0\]\.top_k: expected at most vectors \(5\), got 10"),
    ("requests: 10", r"clients\[0\]\.requests: a vector client is bounded by vectors and queries"),
    ("engine: milvus", r"clients\[0\]\.engine: expected one of chroma, qdrant"),
    ("ratio: {get: 1}", r"clients\[0\]\.ratio: unknown key"),
])
def test_a_vector_client_refuses_what_it_cannot_do_naming_the_field(client, error):
    with pytest.raises(Exception, match=error):
        load_benchmark_text(bench(client), "bench.yaml")


def test_the_vector_client_runs_from_the_cluster_venv():
    from orchestrator.bench.clients import client_recipe
    spec = load_benchmark_text(bench("dim: 64, vectors: 1000, batch: 100, queries: 10, top_k: 5"), "b.yaml").clients[0]
    r = client_recipe(spec, "http://n1:8000", venv="~/.orchestrator/venv", engine="chroma")
    assert r.command.startswith('"$HOME/.orchestrator/venv/bin/python" vectorload.py --url http://n1:8000 '
                                "--engine chroma --collection orch-bench --dim 64 --vectors 1000 --batch 100")


class FakeQdrant(BaseHTTPRequestHandler):
    """Answers as Qdrant's REST API documents (status/result envelope)."""
    points: dict = {}
    size = None

    def reply(self, code, result):
        body = json.dumps({"result": result, "status": "ok", "time": 0.0001} if code == 200 else
                          {"status": {"error": f"Not found: Collection `{self.path.split('/')[2]}` doesn't exist!"},
                           "time": 0.0}).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def body(self):
        return json.loads(self.rfile.read(int(self.headers["Content-Length"])))

    def do_GET(self):
        if FakeQdrant.size is None:
            return self.reply(404, None)
        self.reply(200, {"status": "green", "points_count": len(self.points),
                         "config": {"params": {"vectors": {"size": FakeQdrant.size, "distance": "Euclid"}}}})

    def do_PUT(self):
        doc = self.body()
        if self.path.endswith("/points?wait=true"):
            for p in doc["points"]:
                FakeQdrant.points[p["id"]] = np.array(p["vector"])
            return self.reply(200, {"operation_id": 1, "status": "completed"})
        FakeQdrant.size = doc["vectors"]["size"]
        self.reply(200, True)

    def do_POST(self):
        doc = self.body()
        if self.path.endswith("/points/count"):
            return self.reply(200, {"count": len(self.points)})
        q = np.array(doc["query"])
        ids = sorted(self.points, key=lambda i: ((self.points[i] - q) ** 2).sum())[:doc["limit"]]
        self.reply(200, {"points": [{"id": i, "version": 1, "score": float(((self.points[i] - q) ** 2).sum() ** 0.5)}
                                    for i in ids]})

    def log_message(self, *a):
        pass


def test_qdrant_collection_upsert_query_and_count(tmp_path):
    srv = ThreadingHTTPServer(("127.0.0.1", 0), FakeQdrant)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{srv.server_address[1]}"
    try:
        q = Qdrant(Http(url), "bench-coll")
        q.open(4)
        assert FakeQdrant.size == 4  # created with the client's dimension
        data = np.eye(4, dtype=np.float32)
        q.upsert(Http(url), [f"n3-{i}" for i in range(4)], data)
        assert min(FakeQdrant.points) == 3 << 40  # the seed in the high bits: IDs of two clients never collide
        assert q.query(Http(url), data[2], 1) == ["n3-2"] and q.count() == 4
        with pytest.raises(SystemExit, match="holds vectors of dimension 4; this client sends 8"):
            Qdrant(Http(url), "bench-coll").open(8)
    finally:
        srv.shutdown()


@pytest.fixture
def chroma(tmp_path):
    if not (VENV / "bin" / "chroma").exists():
        pytest.skip(f"no client venv at {VENV} (scripts/build-venv.sh builds it)")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([str(VENV / "bin" / "chroma"), "run", "--path", str(tmp_path / "db"), "--host", "127.0.0.1",
                             "--port", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            Http(f"http://127.0.0.1:{port}").call("GET", "/api/v2/heartbeat")
            break
        except OSError:
            time.sleep(0.2)
    yield f"http://127.0.0.1:{port}"
    proc.terminate()
    proc.wait(20)


def vectorload(tmp_path, url, *args):
    return subprocess.run([str(VENV / "bin" / "python"), str(VECTORLOAD), "--url", url, "--out",
                           str(tmp_path / "ops.jsonl"), *args], cwd=tmp_path, capture_output=True, text=True, timeout=120)


def test_chroma_for_real_every_vector_stored_and_a_wrong_dimension_refused(tmp_path, chroma):
    p = vectorload(tmp_path, chroma, "--dim", "8", "--vectors", "300", "--batch", "64", "--queries", "20",
                   "--top-k", "3", "--collection", "unit-coll", "--concurrency", "2")
    assert p.returncode == 0, p.stderr
    recs = [json.loads(line) for line in open(tmp_path / "ops.jsonl")]
    assert [r["op"] for r in recs].count("upsert") == 5 and sum(r["items"] or 0 for r in recs) == 300
    assert all(0 <= r["recall"] <= 1 for r in recs if r["op"] == "query") and all(r["ok"] for r in recs)
    assert json.loads((tmp_path / "done.json").read_text())["service_count"] == 300
    p = vectorload(tmp_path, chroma, "--dim", "16", "--vectors", "10", "--queries", "1", "--collection", "unit-coll")
    assert p.returncode == 1 and "Traceback" not in p.stderr
    assert "collection 'unit-coll' holds vectors of dimension 8; this client sends 16" in p.stderr


def test_the_vector_clients_counters_are_the_shared_ones_plus_vectors_recall_and_phase():
    from orchestrator.oncluster.vectorload import Stats
    stats = Stats()
    with stats.lock:
        stats.add("upsert", True, 0.004)
        stats.add("query", False, 0.3)
        stats.items += 64
        stats.recall_sum += 0.9
    stats.phase = "query"
    assert stats.counts() == {"ok": 1, "errors": 1, "in_flight": 0, "phase": "query"}
    text = stats.metrics()
    assert 'orch_client_operations_total{op="upsert",outcome="ok"} 1' in text
    assert 'orch_client_operations_total{op="query",outcome="error"} 1' in text
    assert "orch_client_latency_seconds_count 2" in text  # the latency histogram the other clients serve
    assert "orch_client_vectors_upserted_total 64" in text and "orch_client_recall_sum 0.9" in text
