#!/usr/bin/env python3
"""Vector database load client (Chroma or Qdrant over their REST APIs), run as a SLURM job.

Needs numpy (it runs from the cluster's client venv). Two phases, each a window
of its own in the report: insert (``--vectors`` seeded random vectors of
dimension ``--dim``, upserted in batches of ``--batch``), then query
(``--queries`` seeded random vectors, top ``--top-k`` each). ``--concurrency``
workers share each phase. Every batch and every query is one JSON line: start,
latency_s, ok, error, op (upsert | query), items (vectors upserted),
recall (a query's recall@k against the exact nearest neighbours, which the
client computes by brute force with numpy before the query phase, so the
check never slows the queries), warmup. After the load it asks the service how
many vectors the collection holds (done.json: service_count).

A collection that already exists with another dimension is refused before any
vector is sent.
"""

from __future__ import annotations

import argparse
import http.client
import json
import threading
import time
import urllib.parse

try:  # shipped beside this file to the job dir; imported from the package in tests
    from orchestrator.oncluster import clientjob
except ImportError:
    import clientjob

try:
    import numpy as np
except ImportError:  # the job's log says what to do; the session names the job that failed
    raise SystemExit("vectorload.py needs numpy: run it with the cluster's client venv "
                     "(remote.venv in config.yaml; `doctor` checks it)") from None

CHROMA = "/api/v2/tenants/default_tenant/databases/default_database/collections"


class ServiceError(Exception):
    pass


class Http:
    """One kept-alive connection (per worker thread)."""

    def __init__(self, url: str, timeout: float = 60):
        u = urllib.parse.urlsplit(url)
        self.host, self.port, self.timeout = u.hostname, u.port or 80, timeout
        self.conn: http.client.HTTPConnection | None = None

    def call(self, method: str, path: str, body=None):
        data = json.dumps(body).encode() if body is not None else None
        for attempt in (0, 1):
            if self.conn is None:
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
            try:
                self.conn.request(method, path, body=data,
                                  headers={**clientjob.auth_headers(), "Content-Type": "application/json"})
                resp = self.conn.getresponse()
                text = resp.read()
                break
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                self.conn.close()
                self.conn = None
                if attempt:
                    raise
        if resp.status >= 300:
            raise ServiceError(f"HTTP {resp.status} {method} {path}: {text[:300].decode(errors='replace')}")
        return json.loads(text) if text else None


class Chroma:
    """Chroma's v2 REST API (chromadb 1.x)."""

    def __init__(self, http: Http, name: str):
        self.http, self.name, self.id = http, name, None

    def open(self, dim: int) -> None:
        doc = self.http.call("POST", CHROMA, {"name": self.name, "get_or_create": True})
        have = doc.get("dimension")
        if have is not None and have != dim:
            raise SystemExit(f"collection {self.name!r} holds vectors of dimension {have}; this client sends {dim} "
                             "(use another collection name, or the same dim)")
        self.id = doc["id"]

    def upsert(self, http: Http, ids: list[str], vectors) -> None:
        http.call("POST", f"{CHROMA}/{self.id}/upsert", {"ids": ids, "embeddings": vectors.tolist()})

    def query(self, http: Http, vector, k: int) -> list[str]:
        doc = http.call("POST", f"{CHROMA}/{self.id}/query",
                        {"query_embeddings": [vector.tolist()], "n_results": k, "include": ["distances"]})
        return doc["ids"][0]

    def count(self) -> int:
        return int(self.http.call("GET", f"{CHROMA}/{self.id}/count"))


class Qdrant:
    """Qdrant's REST API (1.10 and later), Euclidean distance. Point IDs are unsigned integers: the
    client's "n<seed>-<i>" is sent as (seed << 40) + i."""

    def __init__(self, http: Http, name: str):
        self.http, self.name = http, urllib.parse.quote(name, safe="")

    def open(self, dim: int) -> None:
        try:
            doc = self.http.call("GET", f"/collections/{self.name}")
        except ServiceError as exc:
            if "HTTP 404" not in str(exc):
                raise
            self.http.call("PUT", f"/collections/{self.name}", {"vectors": {"size": dim, "distance": "Euclid"}})
            return
        have = doc["result"]["config"]["params"]["vectors"]["size"]
        if have != dim:
            raise SystemExit(f"collection {self.name!r} holds vectors of dimension {have}; this client sends {dim} "
                             "(use another collection name, or the same dim)")

    def upsert(self, http: Http, ids: list[str], vectors) -> None:
        points = [{"id": int(i.rsplit("-", 1)[1]) + (int(i.split("-")[0][1:]) << 40), "vector": v}
                  for i, v in zip(ids, vectors.tolist())]
        http.call("PUT", f"/collections/{self.name}/points?wait=true", {"points": points})

    def query(self, http: Http, vector, k: int) -> list[str]:
        # the universal query API (Qdrant 1.10 on; /points/search is its deprecated predecessor)
        doc = http.call("POST", f"/collections/{self.name}/points/query", {"query": vector.tolist(), "limit": k})
        return [f"n{p['id'] >> 40}-{p['id'] & ((1 << 40) - 1)}" for p in doc["result"]["points"]]

    def count(self) -> int:
        return int(self.http.call("POST", f"/collections/{self.name}/points/count", {"exact": True})["result"]["count"])


ENGINES = {"chroma": Chroma, "qdrant": Qdrant}


def exact_neighbours(data: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k nearest rows of ``data`` to each query (squared L2), by brute force in blocks:
    |x - q|^2 = |x|^2 - 2 x.q + |q|^2, one matrix product per block of queries (at most 2 M distances
    at a time)."""
    block = max(1, (2 << 20) // max(1, len(data)))
    norms = (data * data).sum(axis=1)
    out = np.empty((len(queries), k), dtype=np.int64)
    for lo in range(0, len(queries), block):
        q = queries[lo:lo + block]
        d = norms[None, :] - 2 * q @ data.T
        idx = np.argpartition(d, k - 1, axis=1)[:, :k]
        order = np.take_along_axis(d, idx, axis=1).argsort(axis=1)
        out[lo:lo + block] = np.take_along_axis(idx, order, axis=1)
    return out


class Stats(clientjob.OpStats):
    """The data-service counters, plus vectors upserted, recall and the phase under way."""

    def __init__(self):
        super().__init__(("upsert", "query"))
        self.items = 0
        self.recall_sum = 0.0
        self.phase = "waiting"

    def counts(self) -> dict:
        return {**super().counts(), "phase": self.phase}

    def metrics(self) -> str:
        text = super().metrics()
        with self.lock:
            return text + ("# TYPE orch_client_vectors_upserted_total counter\n"
                           f"orch_client_vectors_upserted_total {self.items}\n"
                           "# TYPE orch_client_recall_sum counter\n"
                           f"orch_client_recall_sum {self.recall_sum}\n")


class Load:
    def __init__(self, a, stats: Stats, stop: threading.Event):
        self.a, self.stats, self.stop = a, stats, stop
        rng = np.random.default_rng(a.seed)
        self.data = rng.random((a.vectors, a.dim), dtype=np.float32)
        self.queries = rng.random((a.queries, a.dim), dtype=np.float32)
        self.ids = [f"n{a.seed}-{i}" for i in range(a.vectors)]
        self.engine = ENGINES[a.engine](Http(a.url), a.collection)
        self.out = open(a.out, "a", buffering=1)
        self.out_lock = threading.Lock()
        self.truth = None
        self.service_count = None

    def record(self, op: str, start: float, latency: float, ok: bool, error: str | None, items: int | None,
               warmup_until: float, cpu: float, recall: float | None = None) -> None:
        rec = {"start": round(start, 6), "latency_s": round(latency, 6), "ttft_s": None, "tpot_s": None,
               "status": None, "ok": ok, "tokens_in": None, "tokens_out": None, "error": error, "op": op,
               "items": items, "recall": None if recall is None else round(recall, 6),
               "client_cpu_s": round(cpu, 7), "warmup": start < warmup_until, "client": self.a.client_id}
        with self.stats.lock:
            self.stats.add(op, ok, latency, cpu=cpu)
            if ok and op == "upsert":
                self.stats.items += items
            if recall is not None:
                self.stats.recall_sum += recall
        with self.out_lock:
            self.out.write(json.dumps(rec) + "\n")

    def phase(self, jobs: list, work, end: float) -> None:
        """``work(http, job)`` for every job, on ``concurrency`` threads, until done, stopped or ``end``."""
        lock = threading.Lock()
        it = iter(jobs)

        def worker():
            http = Http(self.a.url)
            while not self.stop.is_set() and time.time() < end:
                with lock:
                    job = next(it, None)
                if job is None:
                    return
                work(http, job)
        threads = [threading.Thread(target=worker, daemon=True) for _ in range(self.a.concurrency)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    def run(self, begin: float, end: float, warmup_until: float) -> None:
        a = self.a

        def upsert(http, lo):
            hi = min(lo + a.batch, a.vectors)
            cpu0, t0, start = time.thread_time(), time.perf_counter(), time.time()
            try:
                self.engine.upsert(http, self.ids[lo:hi], self.data[lo:hi])
                ok, err = True, None
            except (ServiceError, OSError, http_errors) as exc:
                ok, err = False, str(exc)
            latency = time.perf_counter() - t0
            self.record("upsert", start, latency, ok, err, hi - lo, warmup_until, time.thread_time() - cpu0)

        def query(http, i):
            cpu0, t0, start = time.thread_time(), time.perf_counter(), time.time()
            try:
                got = self.engine.query(http, self.queries[i], a.top_k)
                ok, err = True, None
            except (ServiceError, OSError, http_errors, KeyError, IndexError) as exc:
                got, ok, err = [], False, str(exc)
            latency = time.perf_counter() - t0
            truth = {self.ids[j] for j in self.truth[i]}
            self.record("query", start, latency, ok, err, None, warmup_until, time.thread_time() - cpu0,
                        len(truth.intersection(got)) / a.top_k if ok else None)

        self.stats.phase = "insert"
        self.phase(list(range(0, a.vectors, a.batch)), upsert, end)
        self.stats.phase = "query"
        self.phase(list(range(a.queries)), query, end)
        self.stats.phase = "done"
        self.out.close()
        try:
            self.service_count = self.engine.count()
        except (ServiceError, OSError, http_errors) as exc:
            print(f"could not read the collection's count: {exc}", flush=True)


http_errors = (http.client.HTTPException, ValueError)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--url", required=True, help="base URL of the service, e.g. http://n1:8000")
    ap.add_argument("--engine", default="chroma", choices=sorted(ENGINES))
    ap.add_argument("--collection", default="orch-bench")
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--vectors", type=int, default=20_000)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--queries", type=int, default=2000)
    ap.add_argument("--top-k", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    a = clientjob.parse_job_arguments(ap, argv, bounded=False)  # bounded by its vectors and queries
    if not a.duration:
        a.duration = a.max_seconds  # bounded by the vectors and queries; the time is a cap
    job = clientjob.Job(a)
    stats = Stats()
    load = Load(a, stats, job.stop)
    try:
        load.engine.open(a.dim)  # before /metrics answers: a wrong dimension fails the job before the go
    except (ServiceError, OSError) as exc:
        raise SystemExit(f"{a.engine} at {a.url}: cannot open collection {a.collection!r}: {exc}") from None
    load.truth = exact_neighbours(load.data, load.queries, a.top_k)
    if a.metrics_port:
        clientjob.serve_metrics(a.metrics_port, stats.metrics)
    job.run(load.run, stats.counts, f"load: {a.engine} -> {a.url}, collection {a.collection}, {a.vectors} x {a.dim} "
            f"in batches of {a.batch}, then {a.queries} top-{a.top_k} queries, concurrency {a.concurrency}",
            extra=lambda: {"service_count": load.service_count})


if __name__ == "__main__":
    main()
