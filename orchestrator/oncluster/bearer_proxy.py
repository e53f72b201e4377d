#!/usr/bin/env python3
"""A bearer-token gate in front of a server that has no authentication of its own (Chroma 1.x: its
Rust server ignores the old CHROMA_SERVER_AUTHN_* settings). Shipped into the job dir and run with the
node's python3 (standard library only).

The server listens on the node's loopback; this listens on the cluster network and forwards only
requests that carry ``Authorization: Bearer <key>`` (the job's secret, read from a file), except the
paths named ``--open`` (a health check). Requests and answers are passed whole (Chroma's API is plain
JSON, no streaming).
"""

from __future__ import annotations

import argparse
import hmac
import http.client
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailers",
       "transfer-encoding", "upgrade", "host", "content-length"}


def make_handler(backend: tuple[str, int], key: str, open_paths: set[str]):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *a):
            pass

        def _reply(self, code: int, body: bytes, headers: list[tuple[str, str]] = ()) -> None:
            self.send_response(code)
            for k, v in headers:
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _forward(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else None
            if self.path.split("?")[0] not in open_paths and not hmac.compare_digest(
                    self.headers.get("Authorization", ""), f"Bearer {key}"):
                self._reply(401, b'{"error": "Unauthorized"}', [("Content-Type", "application/json")])
                return
            conn = http.client.HTTPConnection(*backend, timeout=300)
            try:
                conn.request(self.command, self.path, body=body,
                             headers={k: v for k, v in self.headers.items() if k.lower() not in HOP})
                resp = conn.getresponse()
                data = resp.read()
                self._reply(resp.status, data, [(k, v) for k, v in resp.getheaders() if k.lower() not in HOP])
            except OSError as exc:
                self._reply(502, f'{{"error": "backend: {type(exc).__name__}"}}'.encode(),
                            [("Content-Type", "application/json")])
            finally:
                conn.close()

        do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = _forward

    return Handler


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--listen", required=True, help="HOST:PORT to serve")
    ap.add_argument("--backend", required=True, help="HOST:PORT of the server behind it")
    ap.add_argument("--key-file", required=True, help="the bearer key: the file's first line")
    ap.add_argument("--open", action="append", default=[], help="a path served without the key (repeatable)")
    a = ap.parse_args(argv)
    with open(a.key_file) as f:
        key = f.readline().strip()
    if not key:
        raise SystemExit(f"{a.key_file}: empty key")
    host, _, port = a.listen.rpartition(":")
    bhost, _, bport = a.backend.rpartition(":")
    server = ThreadingHTTPServer((host, int(port)), make_handler((bhost, int(bport)), key, set(a.open)))
    server.daemon_threads = True
    print(f"bearer proxy on {a.listen} -> {a.backend} (open: {', '.join(a.open) or 'none'})", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
