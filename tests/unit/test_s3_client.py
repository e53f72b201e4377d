"""The S3 client: AWS Signature Version 4 against AWS's own documented example, and a run against
a local S3 stand-in (PUT/GET of objects, as MinIO answers them: no MinIO runs here)."""

import json
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from orchestrator.bench.recipe import load_benchmark_text
from orchestrator.oncluster.s3load import EMPTY_SHA256, sign

S3LOAD = Path(__file__).resolve().parents[2] / "orchestrator" / "oncluster" / "s3load.py"


def test_signature_matches_the_example_in_amazon_s3_documentation():
    """"GET Object" example of the S3 API reference (Authenticating Requests: AWS Signature Version 4)."""
    auth = sign("GET", "examplebucket.s3.amazonaws.com", "/test.txt", {"Range": "bytes=0-9"}, EMPTY_SHA256,
                "AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "us-east-1", "20130524T000000Z")
    assert auth == ("AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request,"
                    "SignedHeaders=host;range;x-amz-content-sha256;x-amz-date,"
                    "Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41")


class FakeS3(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    objects: dict = {}
    buckets: set = set()
    unsigned = 0

    def _reply(self, code: int, body: bytes = b""):
        self.send_response(code)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _signed(self) -> bool:
        auth = self.headers.get("Authorization", "")
        ok = auth.startswith("AWS4-HMAC-SHA256 Credential=orchkey/") and "Signature=" in auth
        FakeS3.unsigned += not ok
        return ok

    def do_PUT(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if not self._signed():
            return self._reply(403)
        parts = self.path.strip("/").split("/", 1)
        if len(parts) == 1:
            code = 409 if parts[0] in FakeS3.buckets else 200
            FakeS3.buckets.add(parts[0])
            return self._reply(code)
        FakeS3.objects[self.path] = body
        self._reply(200)

    def do_GET(self):
        if not self._signed():
            return self._reply(403)
        body = FakeS3.objects.get(self.path)
        self._reply(200, body) if body is not None else self._reply(404, b"<Error><Code>NoSuchKey</Code></Error>")

    def log_message(self, *a):
        pass


def test_the_client_writes_the_objects_then_puts_and_gets_them_signed(tmp_path):
    srv = ThreadingHTTPServer(("127.0.0.1", 0), FakeS3)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    cred = tmp_path / "minio.env"
    cred.write_text("MINIO_ROOT_USER=orchkey\nMINIO_ROOT_PASSWORD=s3cret\n")
    try:
        subprocess.run(["python3", str(S3LOAD), "--url", f"http://127.0.0.1:{srv.server_address[1]}", "--objects", "5",
                        "--object-bytes", "2048", "--ratio", "put=1,get=3", "--requests", "200", "--concurrency", "3",
                        "--credentials", str(cred), "--out", str(tmp_path / "ops.jsonl")], check=True, cwd=tmp_path,
                       capture_output=True, timeout=60)
    finally:
        srv.shutdown()
    recs = [json.loads(line) for line in open(tmp_path / "ops.jsonl")]
    assert len(recs) == 200 and all(r["ok"] and r["bytes"] == 2048 for r in recs)
    gets = sum(r["op"] == "get" for r in recs)
    assert 120 < gets < 180 and FakeS3.unsigned == 0 and len(FakeS3.objects) == 5


def bench(client: str) -> str:
    return ("benchmark:\n  name: s\n  services: [{recipe: minio}]\n  clients:\n"
            f"    - {{kind: s3, target: minio, duration: 5s, {client}}}\n")


@pytest.mark.parametrize("client, error", [
    ("ratio: {put: 1, delete: 1}", r"clients\[0\]\.ratio\.delete: unknown operation 'delete': expected put or get"),
    ("bucket: My_Bucket", r"clients\[0\]\.bucket: expected an S3 bucket name"),
    ("object_bytes: 0", r"clients\[0\]\.object_bytes"),
])
def test_an_s3_client_refuses_what_it_cannot_do_naming_the_field(client, error):
    with pytest.raises(Exception, match=error):
        load_benchmark_text(bench(client), "bench.yaml")
