"""`bench report DIR --format md|pdf|png`: a session's report for a PR, a chat or a slide.

Markdown is rendered from report.json (pure). The PDF and the PNG charts come from the HTML
report through headless Chromium on this machine (print-to-PDF; a screenshot of each chart at
its own size): the HTML report stays the one rendering of the charts. Nothing here touches the
cluster.
"""

from __future__ import annotations

import html
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from orchestrator.analysis.kpi import KPI
from orchestrator.errors import OrchestratorError
from orchestrator.reports.html import display

# the KPIs a summary shows first, when present (the full table is in report.html and the CSV)
HEADLINE = ["requests_total", "requests_error", "throughput", "goodput", "output_tokens_per_second",
            "latency_p50", "latency_p99", "ttft_p50", "ttft_p99", "tpot_p50", "itl_p50", "bytes_per_second",
            "prefix_cache_hit_rate", "cpu_utilisation", "gpu_utilisation", "service_requests_waiting_max"]


def _value(k: dict) -> str:
    """As the HTML report shows it: each value in its own unit."""
    text, unit = display(KPI(**k))
    return "absent" if text is None else f"{text} {unit}"


def markdown(report: dict) -> str:
    """A short summary: what ran, the verdict, the headline KPIs, the cross-check and problems."""
    out = [f"## {report['benchmark']}: `{report['session']}`", ""]
    w = report.get("window") or {}
    if w.get("seconds"):
        out += [f"Measured window: {w['seconds']:.1f} s, from {w.get('start_iso', '?')} to {w.get('end_iso', '?')}."
                + (" **Interrupted.**" if report.get("interrupted") else ""), ""]
    for w in report.get("what_ran") or []:   # the same order as report.html: what ran, the answer, validity
        out.append(f"- **{w.get('role', '')} {w.get('name', '')}**: {w.get('text', '')}")
    if report.get("what_ran"):
        out.append("")
    by = {k["kpi"]: k for k in report.get("kpis", [])}
    rows = [by[n] for n in HEADLINE if n in by]
    ops = [n[:-len("_operations_per_second")] for n in by if n.endswith("_operations_per_second")]
    rows += [by[n] for op in ops for n in (f"{op}_operations_per_second", f"{op}_latency_p99", f"{op}_recall_mean")
             if n in by]
    if rows:
        out += ["| KPI | value | source |", "|---|---:|---|"]
        out += [f"| {k['kpi']} | {_value(k)} | {k['source']} |" for k in rows]
        out.append("")
    if report.get("counts"):
        out += [". ".join(report["counts"]) + ".", ""]
    if report.get("valid") is False:
        out += ["**INVALID session**: its figures do not measure the load it was asked for.", ""]
        out += [f"- {r}" for r in report.get("invalid_reasons") or []] + [""]
    b = report.get("bottleneck")
    if b:
        out += [f"**{b['text']}**" + (f" Next: {b['next']}" if b.get("next") else ""), ""]
    d = report.get("delivery")
    if d and d.get("achieved_rate") is not None:
        out += [f"Load delivered: {d['achieved_rate']:.3g} requests/s sent against the schedule's "
                f"{d['schedule_rate']:.3g}/s; send lag p50 {d['send_lag_p50'] * 1000:.2f} ms, "
                f"p99 {d['send_lag_p99'] * 1000:.2f} ms.", ""]
    beside = report.get("client_beside_engine") or []
    if beside:
        out += ["| latency | client | engine (its own histogram) |", "|---|---:|---:|"]
        ms = lambda v: "-" if v is None else f"{v * 1000:.2f} ms"
        out += [f"| {r['service']}: {r['measure']} {r['quantile']} | {ms(r['client'])} | {ms(r['engine'])} |"
                for r in beside]
        out += ["", "The engine's percentiles are interpolated within its histogram's buckets (one in the lowest "
                "bucket is only known to lie below that bucket's bound).", ""]
    replicas = report.get("replicas") or []
    if replicas:
        out += ["| replica | OK | requests/s | output tokens/s | latency p50 | latency p99 |",
                "|---|---:|---:|---:|---:|---:|"]
        ms = lambda v: "-" if v is None else f"{v * 1000:.1f} ms"
        out += [f"| {r['service']}: {r['replica']} | {r['requests_ok']:,} | {r['throughput']:.2f} | "
                f"{r['output_tokens_per_second']:.1f} | {ms(r['latency_p50'])} | {ms(r['latency_p99'])} |"
                for r in replicas]
        out.append("")
    for w in report.get("rpc_workers") or []:
        out.append(f"RPC worker {w['node']} of {w['service']}: {w['bytes_to_worker']:,} bytes to it, "
                   f"{w['bytes_from_worker']:,} from it in the window ({w['refused']} connections refused)")
    if report.get("rpc_workers"):
        out.append("")
    checks = report.get("cross_check") or []
    if checks:
        out += ["| cross-check | client | service | agree |", "|---|---:|---:|---|"]
        for c in checks:
            agree = {True: "yes", False: "**no**", None: "-"}[c.get("agree")]
            svc = "absent" if c.get("engine_count") is None else f"{c['engine_count']:,.0f}"
            out.append(f"| {c['service']}: {c['what']} | {c['client']:,.0f} | {svc} | {agree} |")
        out.append("")
    if report.get("open_services"):
        out += ["Open to every user of the cluster (recipe `auth: none`): "
                + ", ".join(f"`{s}`" for s in report["open_services"]) + ".", ""]
    if report.get("top_errors"):
        out += ["Errors: " + "; ".join(f"`{msg}` x{n}" for msg, n in report["top_errors"]), ""]
    if report.get("errors"):
        out += ["Problems: " + "; ".join(report["errors"]), ""]
    m = report.get("manifest") or {}
    out.append(f"slurm-ai-orchestrator {m.get('tool_version', '?')}"
               + (f" ({m['git_commit'][:12]})" if m.get("git_commit") else "") + "; full report: report.html")
    return "\n".join(out) + "\n"


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        found = shutil.which(name)
        if found:
            return found
    raise OrchestratorError("--format pdf and png need Chromium (or Chrome) on this machine: install `chromium`")


def _headless(args: list[str], profile: Path) -> None:
    cmd = [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-sync",
           "--disable-background-networking", "--disable-component-update", f"--user-data-dir={profile}", *args]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    except subprocess.TimeoutExpired:
        raise OrchestratorError("Chromium did not finish within 120 s") from None
    if proc.returncode != 0:
        raise OrchestratorError(f"Chromium failed ({proc.returncode}): {proc.stderr.strip()[-500:]}")


def pdf(session_dir: Path, out: Path) -> Path:
    with tempfile.TemporaryDirectory(prefix="orch-chromium-") as tmp:
        _headless(["--no-pdf-header-footer", f"--print-to-pdf={out}", (session_dir / "report.html").as_uri()],
                  Path(tmp))
    if not out.exists() or out.read_bytes()[:5] != b"%PDF-":
        raise OrchestratorError(f"Chromium wrote no PDF at {out}")
    return out


_SVG = re.compile(r'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 (\d+) (\d+)".*?</svg>', re.S)


def charts(session_dir: Path) -> list[tuple[str, str, int, int]]:
    """(title, svg, width, height) of each chart in report.html (pure)."""
    text = (session_dir / "report.html").read_text()
    out = []
    for m in _SVG.finditer(text):
        t = re.search(r'aria-label="([^"]*)"', m.group(0)) or re.search(r'font-weight="bold">([^<]*)<', m.group(0))
        out.append((html.unescape(t.group(1)) if t else f"chart {len(out) + 1}", m.group(0), int(m.group(1)),
                    int(m.group(2))))
    return out


def pngs(session_dir: Path, out_dir: Path) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    with tempfile.TemporaryDirectory(prefix="orch-chromium-") as tmp:
        for i, (title, svg, w, h) in enumerate(charts(session_dir), 1):
            page = Path(tmp) / f"{i}.html"
            page.write_text(f'<!doctype html><html><body style="margin:0;background:#fff">{svg}</body></html>')
            slug = re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-") or f"chart-{i}"
            target = out_dir / f"{i:02d}-{slug}.png"
            _headless([f"--window-size={w},{h}", f"--screenshot={target}", page.as_uri()], Path(tmp) / "profile")
            written.append(target)
    return written
