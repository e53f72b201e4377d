"""Artifacts are pure: records and gathered data in, files out, no cluster and no clock."""

import csv
import json

from orchestrator.analysis.kpi import KPI
from orchestrator.analysis.records import RequestTable
from orchestrator.reports.artifacts import (
    PrometheusData,
    ReportContext,
    rerender_session,
    window_for,
    write_artifacts,
)


def write(ctx, recs, warmup_until=1002.0):
    """requests.jsonl as a session writes it (while reading the records), then every other artifact."""
    ctx.out_dir.mkdir(parents=True, exist_ok=True)
    with RequestTable.from_records(recs, jsonl=ctx.out_dir / "requests.jsonl") as t:
        window = window_for(t, warmup_until)
        return write_artifacts(ctx, t, window), window


def records(n=40, t0=1000.0):
    out = []
    for i in range(n):
        ok = i % 10 != 9
        out.append({"start": t0 + i * 0.25, "latency_s": 0.1 + (i % 5) * 0.01, "ttft_s": 0.02, "status": 200 if ok else 500,
                    "ok": ok, "tokens_out": 8 if ok else 0, "error": "" if ok else "HTTP 500 <b>boom</b>"})
    return out


def context(tmp_path, **kw):
    return ReportContext(session_id="s-1", benchmark="unit <script>", out_dir=tmp_path / "out", scrape_interval="1s",
                         services={"svc": "svc_0123abcd"}, clients=["client-x_0123abcd"], monitor_id="prometheus_01234567",
                         jobs=[{"role": "service", "service_id": "svc_0123abcd", "job_id": "7", "nodes": "n1",
                                "recipe": "svc", "recipe_sha256": "x"}], **kw)


def test_every_artifact_is_written_from_the_data_alone(tmp_path):
    recs = records()
    prom = PrometheusData(kpis=[KPI("cpu_utilisation", 42.0, "%", "prometheus", "")], promql={"cpu_utilisation": "q"},
                          series={"cpu_utilisation": [("svc_0123abcd", [(1002.0, 40.0), (1003.0, 44.0)])]})
    report, window = write(context(tmp_path, prometheus=prom), recs)
    out = tmp_path / "out"
    for name in ("requests.jsonl", "metrics_summary.csv", "MANIFEST.json", "report.json", "report.html",
                 "timeseries/throughput.csv", "timeseries/cpu_utilisation.csv"):
        assert (out / name).exists(), name
    assert [json.loads(line)["start"] for line in open(out / "requests.jsonl")] == [r["start"] for r in recs]
    measured = [r for r in recs if window.start <= r["start"] <= window.end]
    assert report["records"] == {"total": len(recs), "measured": len(measured)}
    by = {k["kpi"]: k for k in report["kpis"]}
    assert by["cpu_utilisation"]["value"] == 42.0 and by["cpu_utilisation"]["source"] == "prometheus"
    assert json.loads((out / "MANIFEST.json").read_text())["promql"] == {"cpu_utilisation": "q"}
    rows = list(csv.DictReader(open(out / "timeseries" / "cpu_utilisation.csv")))
    assert [r["value"] for r in rows] == ["40.0", "44.0"]


def test_html_escapes_what_came_from_recipes_and_services(tmp_path):
    write(context(tmp_path), records())
    html = (tmp_path / "out" / "report.html").read_text()
    assert "unit &lt;script&gt;" in html and "<script>" not in html
    assert "HTTP 500 &lt;b&gt;boom&lt;/b&gt;" in html
    assert "<svg" in html  # our charts are inserted as markup


def test_kpi_table_shows_each_value_in_the_unit_it_is_printed_in(tmp_path):
    write(context(tmp_path), records())
    html = (tmp_path / "out" / "report.html").read_text()
    row = next(line for line in html.splitlines() if "<td>latency_p50</td>" in line)
    assert "<td>ms</td>" in row and "ms</td><td>s</td>" not in row


def test_offline_rerender_keeps_prometheus_kpis_and_recomputes_client_ones(tmp_path):
    recs = records()
    prom = PrometheusData(kpis=[KPI("cpu_utilisation", 42.0, "%", "prometheus", "")])
    first, _ = write(context(tmp_path, prometheus=prom), recs)
    again = rerender_session(tmp_path / "out")
    assert again["kpis"] == first["kpis"]


def test_interrupted_session_without_records_still_has_a_report(tmp_path):
    report, _ = write(context(tmp_path, interrupted=True, errors=["stopped by the user"]), [], None)
    assert report["interrupted"] and report["records"]["total"] == 0
    assert "INTERRUPTED" in (tmp_path / "out" / "report.html").read_text()


def test_job_logs_are_linked_with_a_watchers_verdict_where_there_is_one(tmp_path):
    logs = [{"service_id": "svc_0123abcd", "role": "service", "job_id": "7", "path": "logs/svc_0123abcd.log"},
            {"service_id": "client-x_0123abcd", "role": "client", "job_id": "8", "path": "logs/client-x_0123abcd.log",
             "verdict": "OUT_OF_MEMORY: the job exceeded its memory", "evidence": []}]
    report, _ = write(context(tmp_path, logs=logs), records())
    html = (tmp_path / "out" / "report.html").read_text()
    assert '<a href="logs/svc_0123abcd.log">svc_0123abcd</a> (service, job 7)</li>' in html
    assert "<strong>OUT_OF_MEMORY: the job exceeded its memory</strong>" in html
    assert report["logs"] == logs and rerender_session(tmp_path / "out")["logs"] == logs  # kept offline too


def test_the_cross_check_counts_the_window_between_the_counters_scrapes(tmp_path):
    # requests end at start + latency: 1000.1 ... 1009.9; the engine's counter was scraped at 1003.0 and 1011.0
    recs = [{**r, "tokens_in": 5} for r in records()]
    ends = [r["start"] + r["latency_s"] for r in recs]
    inside = sum(1 for r, e in zip(recs, ends) if r["ok"] and 1003.0 < e <= 1011.0)
    edge = [r for r, e in zip(recs, ends) if r["ok"] and (r["start"] < 1003.0 < e or abs(e - 1003.0) <= 0.05)]
    prom = PrometheusData(kpis=[KPI("service_requests_counted", float(inside - 1), "requests", "prometheus"),
                                KPI("service_output_tokens_counted", 8.0 * inside, "tokens", "prometheus"),
                                KPI("service_input_tokens_counted", 5.0 * inside + 40, "tokens", "prometheus")],
                          counted_between={"svc": (1003.0, 1011.0)})
    report, _ = write(context(tmp_path, engines={"svc": "vllm"}, prometheus=prom), recs)
    rows = {c["what"]: c for c in report["cross_check"]}
    assert rows["requests"]["client"] == inside and "measured window" in rows["requests"]["span"]
    assert rows["requests"]["tolerance"] == max(1, len(edge)) and rows["requests"]["agree"] is True
    assert rows["output tokens"]["agree"] is True
    assert rows["input tokens"]["agree"] is False and "differ by 40" in rows["input tokens"]["note"]
    assert "cached prompt tokens included" in rows["input tokens"]["metric"]
    assert json.loads((tmp_path / "out" / "report.json").read_text())["counted_between"] == {"svc": [1003.0, 1011.0]}
    # offline: the same rows again from the files alone
    again = rerender_session(tmp_path / "out")
    assert [c["client"] for c in again["cross_check"]] == [c["client"] for c in report["cross_check"]]


def test_requests_that_end_while_the_engine_answers_a_scrape_are_edges_of_the_check(tmp_path):
    """A sample is stamped when its scrape began; a busy engine reads its counters later. The three requests
    ending 0.12-0.64 s after the sample at 1003.0 were counted in it, read 0.6 s into its scrape: only the
    scrape's own duration (Prometheus's scrape_duration_seconds) says they may be on either side."""
    recs = records()
    ends = [r["start"] + r["latency_s"] for r in recs]
    inside = sum(1 for r, e in zip(recs, ends) if r["ok"] and 1003.0 < e <= 1011.0)
    late = [e for r, e in zip(recs, ends) if r["ok"] and 1003.0 < e <= 1003.65]
    assert len(late) == 3
    for reads, agree in (({}, False), ({"svc": (0.65, 0.0)}, True)):
        prom = PrometheusData(kpis=[KPI("service_requests_counted", float(inside - len(late)), "requests", "prometheus")],
                              counted_between={"svc": (1003.0, 1011.0)}, counter_reads=reads)
        out = tmp_path / f"r{len(reads)}"
        report, _ = write(context(out, engines={"svc": "vllm"}, prometheus=prom), recs)
        row = {c["what"]: c for c in report["cross_check"]}["requests"]
        assert row["agree"] is agree and row["tolerance"] == (3 if agree else 1), row
        if agree:
            assert "took 0.65 s" in row["span"]
            assert json.loads((out / "out" / "report.json").read_text())["counter_reads_s"] == {"svc": [0.65, 0.0]}
            again = {c["what"]: c for c in rerender_session(out / "out")["cross_check"]}["requests"]
            assert again["agree"] is True and again["tolerance"] == 3   # offline: the same edges from the files


def test_the_engines_own_histograms_stand_beside_the_clients_figures(tmp_path):
    prom = PrometheusData(kpis=[KPI("service_ttft_p50", 0.018, "s", "prometheus", "vLLM's own vllm:x histogram"),
                                KPI("service_queue_time_p99", 0.004, "s", "prometheus", "vLLM's own vllm:q histogram"),
                                KPI("service_itl_p50", None, "s", "prometheus", "absent")])
    report, _ = write(context(tmp_path, engines={"svc": "vllm"}, prometheus=prom), records())
    beside = {(r["measure"], r["quantile"]): r for r in report["client_beside_engine"]}
    assert set(beside) == {("TTFT", "p50"), ("queue time", "p99")}   # an absent engine figure is no row
    assert beside[("TTFT", "p50")]["client"] == 0.02 and beside[("TTFT", "p50")]["engine"] == 0.018
    assert beside[("queue time", "p99")]["client"] is None
    assert "Latency from both sides" in (tmp_path / "out" / "report.html").read_text()


EVIL = '<img src=x onerror=alert(1)>"\'`'


def _live_markup(html: str) -> list[str]:
    """What in ``html`` a browser would run: event-handler attributes, javascript: links, and tags beyond
    the report's own (its tables, lists, headings and SVG charts)."""
    from html.parser import HTMLParser
    allowed = {"html", "head", "meta", "title", "style", "body", "h1", "h2", "h3", "h4", "p", "div", "span", "table",
               "thead", "tbody", "tr", "th", "td", "ul", "ol", "li", "a", "strong", "em", "code", "pre", "small", "br",
               "details", "summary", "section", "header", "footer", "nav", "figure", "figcaption", "hr", "b", "i",
               "svg", "g", "path", "line", "polyline", "rect", "circle", "text", "title", "desc", "tspan", "defs",
               "clippath", "polygon", "sup", "sub", "caption", "colgroup", "col", "main", "abbr", "label"}
    found = []

    class Parser(HTMLParser):
        def handle_starttag(self, tag, attrs):
            if tag not in allowed:
                found.append(f"<{tag}>")
            for name, value in attrs:
                if name.startswith("on") or (value or "").strip().lower().startswith("javascript:"):
                    found.append(f"{tag} {name}={value}")
    Parser().feed(html)
    return found


def test_no_string_that_reaches_the_report_becomes_live_markup(tmp_path):
    """Every string a report shows that came from a recipe, a cluster, a service or a results folder, set to
    an <img onerror> and a javascript: link: the page has no tag, handler or link of theirs."""
    recs = [{**r, "error": EVIL if not r["ok"] else "", "model": EVIL, "conversation": i % 3, "turn": 1}
            for i, r in enumerate(records())]
    prom = PrometheusData(kpis=[KPI("cpu_utilisation", 42.0, "%", "prometheus", EVIL)], promql={"cpu_utilisation": EVIL},
                          series={"cpu_utilisation": [(EVIL, [(1002.0, 40.0), (1003.0, 44.0)])]})
    ctx = ReportContext(
        session_id=EVIL, benchmark=EVIL, out_dir=tmp_path / "out", scrape_interval=EVIL, services={EVIL: EVIL},
        clients=[EVIL], monitor_id=EVIL, errors=[EVIL], interrupted=True,
        jobs=[{"role": EVIL, "service_id": EVIL, "job_id": EVIL, "nodes": EVIL, "recipe": EVIL, "recipe_sha256": EVIL}],
        runtime={EVIL: [EVIL]}, engines={EVIL: "vllm"}, cache={EVIL: EVIL}, lost_clients=[EVIL], prometheus=prom,
        logs=[{"service_id": EVIL, "role": EVIL, "job_id": EVIL, "path": "javascript:alert(1)", "verdict": EVIL,
               "evidence": [EVIL]},
              {"service_id": "s_0123abcd", "role": "service", "job_id": "7", "path": "logs/x.log\" onmouseover=\"alert(1)"}],
        replicas={EVIL: [EVIL]}, conversations={"cut": 1, "context_tokens": {EVIL: 1}})
    write(ctx, recs)
    html = (tmp_path / "out" / "report.html").read_text()
    assert _live_markup(html) == [] and "&lt;img" in html
    # and again when the report is rendered offline from a results folder someone else may have written
    rerender_session(tmp_path / "out")
    assert _live_markup((tmp_path / "out" / "report.html").read_text()) == []


def test_an_engine_that_counts_twice_the_clients_tokens_disagrees_windowed_or_whole(tmp_path):
    """The tolerance is what requests at the edges explain (a request's worth of tokens), never a share of
    the total: an engine counting double is a disagreement in both forms of the check."""
    recs = [{**r, "tokens_in": 5} for r in records()]
    ok = [r for r in recs if r["ok"]]
    ends = [r["start"] + r["latency_s"] for r in ok]
    inside = sum(1 for e in ends if 1003.0 < e <= 1011.0)
    for between, n in (({"svc": (1003.0, 1011.0)}, inside), ({}, len(ok))):
        prom = PrometheusData(kpis=[KPI("service_requests_counted", float(n), "requests", "prometheus"),
                                    KPI("service_output_tokens_counted", 2 * 8.0 * n, "tokens", "prometheus"),
                                    KPI("service_input_tokens_counted", 5.0 * n, "tokens", "prometheus")],
                              counted_between=between)
        out = tmp_path / f"w{len(between)}"
        report, _ = write(context(out, engines={"svc": "vllm"}, prometheus=prom), recs)
        rows = {c["what"]: c for c in report["cross_check"]}
        assert rows["requests"]["agree"] is True and rows["input tokens"]["agree"] is True, rows
        assert rows["output tokens"]["agree"] is False and rows["output tokens"]["engine_count"] == 16.0 * n, rows
        assert ("measured window" in rows["output tokens"]["span"]) == bool(between)


def test_bench_report_out_writes_a_copy_and_leaves_the_session_as_it_was(tmp_path):
    from click.testing import CliRunner

    from orchestrator.cli.main import cli
    write(context(tmp_path), records())
    session = tmp_path / "out"
    before = {p.relative_to(session): p.read_bytes() for p in session.rglob("*") if p.is_file()}
    (session / "report.html").touch()
    stamp = (session / "report.html").stat().st_mtime_ns
    r = CliRunner().invoke(cli, ["bench", "report", str(session), "--out", str(tmp_path / "copy"), "--format", "md"])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "copy" / "report.html").exists() and (tmp_path / "copy" / "report.md").exists()
    assert not (session / "report.md").exists() and (session / "report.html").stat().st_mtime_ns == stamp
    assert {p.relative_to(session): p.read_bytes() for p in session.rglob("*") if p.is_file()} == before
    # a directory with something in it is never written into
    r = CliRunner().invoke(cli, ["bench", "report", str(session), "--out", str(tmp_path / "copy")])
    assert "not empty; --out needs a new or empty directory" in str(r.exception)


def test_the_headline_shows_what_was_measured_in_the_tables_units_and_the_counts_explain_themselves():
    from orchestrator.reports.artifacts import counts_explained, headline
    values = {"throughput": 10.36, "output_tokens_per_second": 331.4, "ttft_p50": 0.4263, "ttft_p99": None,
              "tpot_p50": 0.0104, "requests_error": 3.0, "error_rate": 0.0125, "goodput": None}
    shown = {h["label"]: h["text"] for h in headline(values)}
    assert shown == {"requests/s": "10.36", "output tokens/s": "331.4", "TTFT p50": "426.3 ms",
                     "TPOT p50": "10.4 ms", "errors": "3 (1.25%)"}   # absent ones left out, never 0
    said = counts_explained(272, 212, {"requests_retried": 2.0}, [{"what": "requests", "client": 216.0}])
    assert said[0].startswith("272 requests were sent in all; 212 fall in the measured window")
    assert said[1].startswith("The cross-check counts 216: the requests that completed between")
    assert said[2].startswith("2 request(s) were sent a second time on a new connection")
    assert counts_explained(212, 212, {"requests_retried": 0.0}, [{"what": "requests", "client": 212.0}]) == []
