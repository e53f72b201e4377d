#!/usr/bin/env python3
"""A bearer-token gate in front of a server that has no authentication of its own (Chroma 1.x: its
Rust server ignores the old CHROMA_SERVER_AUTHN_* settings). Shipped into the job dir and run with the
node's python3 (standard library only).

The server listens on the node's loopback; this listens on the cluster network and forwards only
requests that carry ``Authorization: Bearer <key>`` (the job's secret, read from a file), except the
paths named ``--open`` (a health check, an exporter's /metrics), which are served to GET and HEAD only
and without their query string. The key is checked before any byte of a body is read, and a
body must state its length, at most ``--max-body``: a caller without the key costs a header's worth of
memory. Answers are passed on as they come (a streamed answer chunk by chunk, as the server wrote it).
"""

from __future__ import annotations

import argparse
import hmac
import http.client
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailers",
       "transfer-encoding", "upgrade", "host", "content-length"}


MAX_BODY = 64 << 20


def make_handler(backend: tuple[str, int], key: str, open_paths: set[str], max_body: int = MAX_BODY):
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

        def _refuse(self, code: int, message: str) -> None:
            """An answer after which the connection closes (a body we did not read may follow)."""
            self.close_connection = True
            self._reply(code, f'{{"error": "{message}"}}'.encode(),
                        [("Content-Type", "application/json"), ("Connection", "close")])

        def _forward(self) -> None:
            path = self.path.split("?")[0]
            if not hmac.compare_digest(self.headers.get("Authorization", ""), f"Bearer {key}"):
                if path not in open_paths or self.command not in ("GET", "HEAD"):
                    self._refuse(401, "Unauthorized")
                    return
                # an open path is read as it is, without the caller's query: no parameter of it
                # (an exporter's target=, a collector list) is the neighbour's to choose
                self.path = path
            if self.headers.get("Transfer-Encoding"):
                self._refuse(411, "a body must state its Content-Length")
                return
            raw = self.headers.get("Content-Length") or "0"
            if not raw.isdigit():
                self._refuse(400, "bad Content-Length")
                return
            length = int(raw)
            if length > max_body:
                self._refuse(413, f"body over {max_body} bytes")
                return
            body = self.rfile.read(length) if length else None
            conn = http.client.HTTPConnection(*backend, timeout=300)
            try:
                conn.request(self.command, self.path, body=body,
                             headers={k: v for k, v in self.headers.items() if k.lower() not in HOP})
                resp = conn.getresponse()
                self._relay(resp)
            except OSError as exc:
                self._refuse(502, f"backend: {type(exc).__name__}")
            finally:
                conn.close()

        def _relay(self, resp) -> None:
            """The backend's answer as it comes: with its length when it said one, else chunked, each
            piece written as soon as the backend wrote it (a stream's tokens keep their timing)."""
            self.send_response(resp.status)
            for k, v in resp.getheaders():
                if k.lower() not in HOP:
                    self.send_header(k, v)
            length = resp.getheader("Content-Length")
            if length is not None or self.command == "HEAD" or resp.status in (204, 304):
                self.send_header("Content-Length", length or "0")
                self.end_headers()
                while piece := resp.read1(65536):
                    self.wfile.write(piece)
                return
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            while piece := resp.read1(65536):
                self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                self.wfile.flush()
            self.wfile.write(b"0\r\n\r\n")

        do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = _forward

    return Handler


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--listen", required=True, help="HOST:PORT to serve")
    ap.add_argument("--backend", required=True, help="HOST:PORT of the server behind it")
    ap.add_argument("--key-file", required=True, help="the bearer key: the file's first line")
    ap.add_argument("--open", action="append", default=[], help="a path served without the key (repeatable)")
    ap.add_argument("--max-body", type=int, default=MAX_BODY, help="the largest request body taken, in bytes")
    a = ap.parse_args(argv)
    with open(a.key_file) as f:
        key = f.readline().strip()
    if not key:
        raise SystemExit(f"{a.key_file}: empty key")
    host, _, port = a.listen.rpartition(":")
    bhost, _, bport = a.backend.rpartition(":")
    # every client slot of a load opens its connection at once: a backlog above the default 5
    ThreadingHTTPServer.request_queue_size = 256
    server = ThreadingHTTPServer((host, int(port)), make_handler((bhost, int(bport)), key, set(a.open), a.max_body))
    server.daemon_threads = True
    print(f"bearer proxy on {a.listen} -> {a.backend} (open: {', '.join(a.open) or 'none'})", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
