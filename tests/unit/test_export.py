"""Exports of a report: Markdown from report.json, PDF and PNG charts through headless Chromium
(run on this machine; skipped, saying why, where Chromium is missing)."""

import shutil

import pytest

from orchestrator.analysis.kpi import KPI
from orchestrator.analysis.records import RequestTable
from orchestrator.reports import export
from orchestrator.reports.artifacts import PrometheusData, ReportContext, window_for, write_artifacts
from orchestrator.analysis.bottleneck import Load
from tests.pngcheck import colour_counts


@pytest.fixture
def session_dir(tmp_path):
    out = tmp_path / "s"
    recs = [{"start": 1000.0 + i * 0.05, "latency_s": 0.1 + (i % 7) * 0.01, "ok": i % 50 != 7, "ttft_s": 0.02,
             "tokens_out": 16, "error": None if i % 50 != 7 else "HTTP 503 | busy"} for i in range(400)]
    prom = PrometheusData(kpis=[KPI("cpu_utilisation", 35.0, "%", "prometheus"),
                                KPI("service_requests_waiting_max", 3.0, "requests", "prometheus"),
                                KPI("service_requests_running_max", 4.0, "requests", "prometheus")],
                          series={"cpu_utilisation": [("svc_0123abcd", [(1002.0, 30.0), (1010.0, 40.0)])]})
    ctx = ReportContext(session_id="s-1", benchmark="unit", out_dir=out, scrape_interval="1s",
                        services={"svc": "svc_0123abcd"}, prometheus=prom, load=Load(jobs=1, concurrency=8))
    out.mkdir()
    with RequestTable.from_records(recs, jsonl=out / "requests.jsonl") as t:
        return out, write_artifacts(ctx, t, window_for(t, 1001.0))


def test_markdown_leads_with_the_verdict_and_the_headline_kpis(session_dir):
    _, report = session_dir
    md = export.markdown(report)
    assert md.startswith("## unit: `s-1`")
    assert "**Bound by the engine's slots: up to 3 requests waited while 4 ran" in md
    assert "| throughput | " in md and "| latency_p99 | " in md and " ms | client |" in md
    assert "Errors: `HTTP 503 | busy` x" in md  # error text is quoted as code, a pipe cannot break the table
    assert report["bottleneck"]["kind"] == "slots"


def test_each_chart_is_found_with_its_title(session_dir):
    out, _ = session_dir
    titles = [t for t, _, _, _ in export.charts(out)]
    assert titles[:4] == ["Latency over time", "Throughput over time", "Time to first token over time",
                          "Latency distribution"]   # (no TPOT in these records: no inter-token chart)


def test_requests_with_a_tpot_get_an_inter_token_latency_chart_in_ms(tmp_path):
    out = tmp_path / "t"
    out.mkdir()
    recs = [{"start": 1000.0 + i * 0.05, "latency_s": 0.2, "ok": True, "ttft_s": 0.02, "tpot_s": 0.012,
             "tokens_out": 16} for i in range(100)]
    ctx = ReportContext(session_id="s-2", benchmark="unit", out_dir=out, scrape_interval="1s", services={})
    with RequestTable.from_records(recs, jsonl=out / "requests.jsonl") as t:
        write_artifacts(ctx, t, window_for(t, 1001.0))
    titles = [t for t, _, _, _ in export.charts(out)]
    assert "Inter-token latency over time (each request's TPOT)" in titles
    page = (out / "report.html").read_text()
    assert "TPOT (ms)" in page and "p50 12.0 ms" in page


@pytest.mark.skipif(not (shutil.which("chromium") or shutil.which("chromium-browser")),
                    reason="Chromium is not installed (scripts/setup.sh installs it)")
def test_pdf_and_png_come_from_headless_chromium(session_dir, tmp_path):
    out, _ = session_dir
    pdf = export.pdf(out, out / "report.pdf")
    assert pdf.read_bytes()[:5] == b"%PDF-" and pdf.stat().st_size > 10_000
    pngs = export.pngs(out, out / "charts")
    assert [p.name for p in pngs][:2] == ["01-latency-over-time.png", "02-throughput-over-time.png"]
    counts = colour_counts(pngs[1])
    assert counts["blue"] > 200 and counts["dark"] > 200  # a line was drawn, and its labels


@pytest.mark.skipif(not (shutil.which("chromium") or shutil.which("chromium-browser")),
                    reason="Chromium is not installed (scripts/setup.sh installs it)")
def test_the_first_screen_at_1300_px_says_what_ran_and_the_answer(tmp_path):
    """Laid out by Chromium in a 1300 x 900 window: what was run, the headline card, the validity line and
    the bottleneck verdict all end above the fold; the KPI table is folded below them."""
    import subprocess

    from orchestrator.reports.export import chromium
    out = tmp_path / "s"
    out.mkdir()
    recs = [{"start": 1000.0 + i * 0.05, "latency_s": 0.1 + (i % 7) * 0.01, "ok": True, "ttft_s": 0.02,
             "tokens_out": 16, "tokens_in": 8} for i in range(400)]
    ctx = ReportContext(session_id="s-1", benchmark="unit", out_dir=out, scrape_interval="1s",
                        services={"svc": "svc_0123abcd"}, load=Load(jobs=1, concurrency=8),
                        what_ran=[{"role": "service", "name": "svc", "text": "vllm, version 0.32.0, on n1"},
                                  {"role": "client", "name": "0", "text": "openai-chat against svc; 8 connection(s)"}])
    with RequestTable.from_records(recs, jsonl=out / "requests.jsonl") as t:
        report = write_artifacts(ctx, t, window_for(t, 1001.0))
    assert report["headline"][0]["label"] == "requests/s" and report["bottleneck"]
    page = (out / "report.html").read_text()
    probe = """<script>window.onload = () => { const r = {}; for (const [k, sel] of Object.entries({ran: ".ran",
      headline: ".headline", validity: ".valid, .invalid", verdict: "h2 + p strong", kpis: "details.kpis"})) {
      const e = document.querySelector(sel); r[k] = e ? Math.round(e.getBoundingClientRect().bottom) : -1; }
      document.body.setAttribute("data-layout", JSON.stringify(r)); };</script>"""
    (out / "probe.html").write_text(page.replace("</body>", probe + "</body>"))
    dom = subprocess.run([chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--window-size=1300,900",
                          f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=2000", "--dump-dom",
                          (out / "probe.html").as_uri()], capture_output=True, text=True, timeout=120).stdout
    import html
    import json
    import re
    layout = json.loads(html.unescape(re.search(r'data-layout="([^"]+)"', dom).group(1)))
    for part in ("ran", "headline", "validity", "verdict"):
        assert 0 < layout[part] <= 900, (part, layout)
    assert layout["kpis"] > layout["verdict"], layout
