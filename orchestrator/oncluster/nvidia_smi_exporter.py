#!/usr/bin/env python3
"""GPU metrics from `nvidia-smi`, served with DCGM exporter's metric names.

Used on nodes without NVIDIA's dcgm-exporter, so that queries and reports work
the same whichever ran. Standard library only: it runs with the cluster's
python3, copied into the job dir by the service's job script.

    nvidia_smi_exporter.py --port 9400 [--command "nvidia-smi ..."]
"""

from __future__ import annotations

import argparse
import shlex
import socket
import subprocess
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

QUERY_FIELDS = ["index", "uuid", "name", "utilization.gpu", "memory.used", "memory.total", "power.draw",
                "temperature.gpu"]
NVIDIA_SMI = ["nvidia-smi", "--query-gpu=" + ",".join(QUERY_FIELDS), "--format=csv,noheader,nounits"]

# DCGM name, help, nvidia-smi field (None: computed)
METRICS = [
    ("DCGM_FI_DEV_GPU_UTIL", "GPU utilization (in %).", "utilization.gpu"),
    ("DCGM_FI_DEV_FB_USED", "Framebuffer memory used (in MiB).", "memory.used"),
    ("DCGM_FI_DEV_FB_FREE", "Framebuffer memory free (in MiB).", None),
    ("DCGM_FI_DEV_POWER_USAGE", "Power draw (in W).", "power.draw"),
    ("DCGM_FI_DEV_GPU_TEMP", "GPU temperature (in C).", "temperature.gpu"),
]


def _number(text: str) -> float | None:
    text = text.strip()
    try:
        return float(text)
    except ValueError:
        return None  # "[N/A]", "[Not Supported]": absent, never 0


def parse_nvidia_smi(text: str) -> list[dict]:
    """Rows of `nvidia-smi --query-gpu=... --format=csv,noheader,nounits` into dicts."""
    gpus = []
    for line in text.splitlines():
        if not line.strip():
            continue
        cells = [c.strip() for c in line.split(",")]
        if len(cells) != len(QUERY_FIELDS):
            raise ValueError(f"expected {len(QUERY_FIELDS)} fields, got {len(cells)}: {line!r}")
        row = dict(zip(QUERY_FIELDS, cells))
        values = {f: _number(row[f]) for f in QUERY_FIELDS[3:]}
        used, total = values["memory.used"], values["memory.total"]
        values["memory.free"] = total - used if used is not None and total is not None else None
        gpus.append({"gpu": row["index"], "UUID": row["uuid"], "modelName": row["name"], "values": values})
    return gpus


def _escape(v: str) -> str:
    return v.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def render_metrics(gpus: list[dict], hostname: str, scrape_ok: bool = True) -> str:
    """Prometheus text exposition format, DCGM's names and labels."""
    out = []
    for name, help_text, field in METRICS:
        out.append(f"# HELP {name} {help_text}")
        out.append(f"# TYPE {name} gauge")
        for g in gpus:
            value = g["values"]["memory.free" if field is None else field]
            if value is None:
                continue
            labels = {"gpu": g["gpu"], "UUID": g["UUID"], "modelName": g["modelName"], "Hostname": hostname}
            lab = ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items())
            out.append(f"{name}{{{lab}}} {value:g}")
    out.append("# HELP orch_nvidia_smi_up Whether the last nvidia-smi call succeeded.")
    out.append("# TYPE orch_nvidia_smi_up gauge")
    out.append(f"orch_nvidia_smi_up {1 if scrape_ok else 0}")
    return "\n".join(out) + "\n"


def collect(command: list[str], hostname: str) -> str:
    try:
        proc = subprocess.run(command, capture_output=True, text=True, timeout=10)
        if proc.returncode != 0:
            raise RuntimeError(proc.stderr.strip())
        return render_metrics(parse_nvidia_smi(proc.stdout), hostname)
    except Exception as exc:  # the endpoint keeps answering; up=0 says why data is missing
        print(f"nvidia-smi failed: {exc}", file=sys.stderr)
        return render_metrics([], hostname, scrape_ok=False)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, default=9400)
    ap.add_argument("--address", default="0.0.0.0")
    ap.add_argument("--command", help="command printing nvidia-smi's CSV (default: nvidia-smi itself)")
    args = ap.parse_args(argv)
    command = shlex.split(args.command) if args.command else NVIDIA_SMI
    hostname = socket.gethostname()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            if self.path.split("?")[0] != "/metrics":
                self.send_error(404)
                return
            body = collect(command, hostname).encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *a):
            pass

    ThreadingHTTPServer.request_queue_size = 128  # scrapes only, but more than Python's default of 5
    ThreadingHTTPServer((args.address, args.port), Handler).serve_forever()


if __name__ == "__main__":
    main()
