#!/usr/bin/env python3
"""S3 load client (MinIO or any S3 API), run as a SLURM job next to the service.

Standard library only: requests are signed with AWS Signature Version 4
(hmac, hashlib), path-style (http://host:port/bucket/key). Before the go it
creates the bucket and writes every object once, so GETs find them; then
``--concurrency`` workers PUT and GET objects of ``--object-bytes`` in the
``--ratio`` given over ``--objects`` keys. Every operation is one JSON line:
start, latency_s, ok, error, op (put | get), bytes, client_cpu_s, warmup.
Credentials come from a KEY=VALUE file on the cluster (``--credentials``:
MINIO_ROOT_USER/MINIO_ROOT_PASSWORD or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY).
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import http.client
import json
import os
import random
import threading
import time
import urllib.parse
from datetime import datetime, timezone

try:  # shipped beside this file to the job dir; imported from the package in tests
    from orchestrator.oncluster import clientjob
except ImportError:
    import clientjob

OPS = ("put", "get")
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()


def _hmac(key: bytes, msg: str) -> bytes:
    return hmac.new(key, msg.encode(), hashlib.sha256).digest()


def sign(method: str, host: str, path: str, headers: dict[str, str], payload_sha256: str, access_key: str,
         secret_key: str, region: str, amz_date: str, service: str = "s3", query: str = "") -> str:
    """The Authorization header of AWS Signature Version 4 for a request (``headers`` are the ones
    signed besides host, x-amz-date and x-amz-content-sha256, which are always signed)."""
    signed = {k.lower(): v.strip() for k, v in headers.items()}
    signed.update({"host": host, "x-amz-date": amz_date, "x-amz-content-sha256": payload_sha256})
    names = sorted(signed)
    canonical = "\n".join([method, urllib.parse.quote(path, safe="/~"), query,
                           "".join(f"{k}:{signed[k]}\n" for k in names), ";".join(names), payload_sha256])
    day = amz_date[:8]
    scope = f"{day}/{region}/{service}/aws4_request"
    to_sign = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()])
    key = _hmac(_hmac(_hmac(_hmac(("AWS4" + secret_key).encode(), day), region), service), "aws4_request")
    signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    return f"AWS4-HMAC-SHA256 Credential={access_key}/{scope},SignedHeaders={';'.join(names)},Signature={signature}"


def read_credentials(path: str) -> tuple[str, str]:
    env = {}
    with open(os.path.expanduser(path)) as f:
        for line in f:
            k, sep, v = line.strip().partition("=")
            if sep:
                env[k.strip()] = v.strip().strip('"')
    for user, secret in (("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"), ("MINIO_ROOT_USER", "MINIO_ROOT_PASSWORD")):
        if env.get(user) and env.get(secret):
            return env[user], env[secret]
    raise SystemExit(f"{path}: no AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or MINIO_ROOT_USER/MINIO_ROOT_PASSWORD")


class S3:
    """One kept-alive connection (per worker thread)."""

    def __init__(self, url: str, access_key: str, secret_key: str, region: str = "us-east-1"):
        u = urllib.parse.urlsplit(url)
        self.host = u.netloc
        self.addr = (u.hostname, u.port or 80)
        self.keys, self.region = (access_key, secret_key), region
        self.conn: http.client.HTTPConnection | None = None

    def request(self, method: str, path: str, body: bytes = b"") -> tuple[int, bytes]:
        digest = hashlib.sha256(body).hexdigest() if body else EMPTY_SHA256
        amz_date = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        headers = {"x-amz-date": amz_date, "x-amz-content-sha256": digest,
                   "Authorization": sign(method, self.host, path, {}, digest, *self.keys, self.region, amz_date)}
        if body:
            headers["Content-Length"] = str(len(body))
        for attempt in (0, 1):
            if self.conn is None:
                self.conn = http.client.HTTPConnection(*self.addr, timeout=60)
            try:
                self.conn.request(method, urllib.parse.quote(path, safe="/~"), body=body or None, headers=headers)
                resp = self.conn.getresponse()
                return resp.status, resp.read()
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                self.conn.close()
                self.conn = None
                if attempt:
                    raise
        raise AssertionError("unreachable")


class Load:
    def __init__(self, a, stats: clientjob.OpStats, stop: threading.Event):
        self.a, self.stats, self.stop = a, stats, stop
        self.keys = read_credentials(a.credentials)
        self.body = (b"%d-" % a.seed * a.object_bytes)[:a.object_bytes].ljust(a.object_bytes, b"o")
        self.share_put = {k: float(v) for k, v in (x.split("=") for x in a.ratio.split(","))}.get("put", 0.0)
        self.share_put /= sum(float(x.split("=")[1]) for x in a.ratio.split(","))
        self.out = open(a.out, "a", buffering=1)
        self.lock = threading.Lock()
        self.sent = 0

    def client(self) -> S3:
        return S3(self.a.url, *self.keys)

    def prepare(self) -> None:
        s3 = self.client()
        status, body = s3.request("PUT", f"/{self.a.bucket}")
        if status not in (200, 409):  # 409: BucketAlreadyOwnedByYou
            raise SystemExit(f"creating bucket {self.a.bucket}: HTTP {status}: {body[:300].decode(errors='replace')}")
        for i in range(self.a.objects):
            status, body = s3.request("PUT", f"/{self.a.bucket}/obj-{i}", self.body)
            if status != 200:
                raise SystemExit(f"writing obj-{i}: HTTP {status}: {body[:300].decode(errors='replace')}")

    def run(self, begin: float, end: float, warmup_until: float) -> None:
        a = self.a

        def worker(n: int):
            s3, rng = self.client(), random.Random(a.seed * 1000 + n)
            while not self.stop.is_set() and time.time() < end:
                with self.lock:
                    if a.requests and self.sent >= a.requests:
                        return
                    self.sent += 1
                op = "put" if rng.random() < self.share_put else "get"
                path = f"/{a.bucket}/obj-{rng.randrange(a.objects)}"
                cpu0, t0, start = time.thread_time(), time.perf_counter(), time.time()
                try:
                    status, body = s3.request("PUT" if op == "put" else "GET", path, self.body if op == "put" else b"")
                    ok, err = status == 200, None if status == 200 else f"HTTP {status}"
                except (OSError, http.client.HTTPException) as exc:
                    status, body, ok, err = 0, b"", False, f"{type(exc).__name__}: {exc}"
                latency = time.perf_counter() - t0
                nbytes = len(self.body) if op == "put" else len(body)
                rec = {"start": round(start, 6), "latency_s": round(latency, 6), "ttft_s": None, "tpot_s": None,
                       "status": status, "ok": ok, "tokens_in": None, "tokens_out": None, "error": err, "op": op,
                       "bytes": nbytes if ok else 0, "client_cpu_s": round(time.thread_time() - cpu0, 7),
                       "warmup": start < warmup_until, "client": a.client_id}
                with self.stats.lock:
                    self.stats.add(op, ok, latency, rec["bytes"], rec["client_cpu_s"])
                with self.lock:
                    self.out.write(json.dumps(rec) + "\n")
        threads = [threading.Thread(target=worker, args=(n,), daemon=True) for n in range(a.concurrency)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.out.close()


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--url", required=True, help="the S3 endpoint, e.g. http://n1:9000")
    ap.add_argument("--bucket", default="orch-bench")
    ap.add_argument("--objects", type=int, default=100)
    ap.add_argument("--object-bytes", type=int, default=1 << 20)
    ap.add_argument("--ratio", default="put=0.5,get=0.5")
    ap.add_argument("--credentials", default="~/.orchestrator/minio.env")
    ap.add_argument("--seed", type=int, default=0)
    a = clientjob.parse_job_arguments(ap, argv)
    job = clientjob.Job(a)
    stats = clientjob.OpStats(OPS)
    load = Load(a, stats, job.stop)
    try:
        load.prepare()  # before /metrics answers: the session's readiness check waits for it
    except OSError as exc:
        raise SystemExit(f"S3 at {a.url}: {exc}") from None
    if a.metrics_port:
        clientjob.serve_metrics(a.metrics_port, stats.metrics)
    job.run(load.run, stats.counts, f"load: s3 -> {a.url}/{a.bucket}, {a.ratio}, {a.objects} objects of "
            f"{a.object_bytes} bytes, concurrency {a.concurrency}")


if __name__ == "__main__":
    main()
