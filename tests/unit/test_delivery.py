"""The load client against a scripted streaming server on loopback (known chunk times, known answers),
and what a session makes of its records: TTFT/TPOT/ITL as vLLM defines them, conversations that carry
their history, traces sent at their times, LoRA mixes, and the verdict on whether the load was
delivered. Bounded: every run is a few dozen requests of a few tens of milliseconds."""

import json
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from orchestrator.analysis.kpi import KPI, Window, client_kpis
from orchestrator.analysis.limits import Validity
from orchestrator.analysis.records import RequestTable
from orchestrator.analysis.search import Search, answer, judge, next_value
from orchestrator.analysis.validity import assess, delivery

LOADGEN = Path(__file__).resolve().parents[2] / "orchestrator" / "oncluster" / "loadgen.py"
FIRST, GAP, CHUNKS = 0.06, 0.02, 5


class Scripted:
    """An OpenAI-style server: each streamed answer is CHUNKS chunks, the first FIRST s after the request,
    the others GAP s apart, with usage; its text is "a<n>" for request n; it keeps every request body."""

    def __init__(self):
        self.bodies: list[dict] = []
        self.lock = threading.Lock()

    def handler(self):
        server = self

        class H(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):
                body = json.dumps({"data": [{"id": "base", "max_model_len": 4096}]}).encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self):
                doc = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with server.lock:
                    server.bodies.append(doc)
                    n = len(server.bodies)
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                chat = "messages" in doc
                time.sleep(FIRST)
                for i in range(CHUNKS):
                    if i:
                        time.sleep(GAP)
                    piece = f"a{n}" if i == 0 else ""
                    choice = {"delta": {"content": piece or " "}} if chat else {"text": piece or " "}
                    self._chunk(f"data: {json.dumps({'choices': [choice]})}\n\n")
                usage = {"prompt_tokens": 10 * n, "completion_tokens": CHUNKS,
                         "prompt_tokens_details": {"cached_tokens": 4}}
                self._chunk(f"data: {json.dumps({'choices': [], 'usage': usage})}\n\ndata: [DONE]\n\n")
                self.wfile.write(b"0\r\n\r\n")

            def _chunk(self, text: str):
                data = text.encode()
                self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
                self.wfile.flush()

            def log_message(self, *a):
                pass
        return H


@pytest.fixture
def scripted():
    s = Scripted()
    server = ThreadingHTTPServer(("127.0.0.1", 0), s.handler())
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield s, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def run_loadgen(tmp_path: Path, url: str, *args: str, rows: list | None = None) -> list[dict]:
    argv = [sys.executable, str(LOADGEN), "--url", url, "--out", str(tmp_path / "r.jsonl"), "--max-seconds", "30",
            *args]
    if rows is not None:
        (tmp_path / "d.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        argv += ["--dataset-file", str(tmp_path / "d.jsonl")]
    proc = subprocess.run(argv, capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return [json.loads(line) for line in (tmp_path / "r.jsonl").read_text().splitlines()]


def test_ttft_tpot_and_itl_are_measured_as_vllm_defines_them(scripted, tmp_path):
    _, url = scripted
    recs = run_loadgen(tmp_path, url, "--requests", "4", "--payload", '{"max_tokens": 5}')
    assert len(recs) == 4 and all(r["ok"] and r["tokens_out"] == CHUNKS for r in recs)
    for r in recs:
        # the server sleeps FIRST before the first chunk and GAP between chunks: a busy machine only adds
        # to them (the bounds below hold under load; the formula is checked exactly, from the same record)
        assert FIRST - 0.002 <= r["ttft_s"] < FIRST + 0.5
        assert len(r["itl_s"]) == CHUNKS - 1 and all(GAP - 0.005 <= g < GAP + 0.5 for g in r["itl_s"])
        # TPOT: (latency - TTFT) / (output tokens - 1): the 4 gaps over 4, not over 5
        assert r["tpot_s"] == pytest.approx((r["latency_s"] - r["ttft_s"]) / (CHUNKS - 1), abs=1e-5)
        assert GAP - 0.005 <= r["tpot_s"] < GAP + 0.5
        assert r["cached_tokens"] == 4


def test_each_turn_carries_the_whole_history_with_the_engines_real_answers(scripted, tmp_path):
    server, url = scripted
    conv = [{"row": 0, "conversation": 0, "turns": [{"prompt": f"q{i}", "max_tokens": 5} for i in range(1, 4)]}]
    recs = run_loadgen(tmp_path, url, "--kind", "openai-chat", "--requests", "3", "--concurrency", "1", rows=conv)
    assert [(r["conversation"], r["turn"]) for r in recs] == [(0, 1), (0, 2), (0, 3)]
    msgs = [b["messages"] for b in server.bodies]
    assert msgs[0] == [{"role": "user", "content": "q1"}]
    # the answer of request 1 ("a1" and its spaces), as the engine streamed it, is sent back with turn 2
    assert [m["role"] for m in msgs[2]] == ["user", "assistant", "user", "assistant", "user"]
    assert msgs[1][1]["content"].strip() == "a1" and msgs[2][3]["content"].strip() == "a2"
    assert [m["content"] for m in msgs[2] if m["role"] == "user"] == ["q1", "q2", "q3"]


def test_a_conversation_that_would_outgrow_the_context_ends_before_the_turn(scripted, tmp_path):
    server, url = scripted
    conv = [{"row": 0, "conversation": 0, "turns": [{"prompt": "word " * 30, "max_tokens": 5}] * 4}]
    # a turn is guessed at 75 tokens (30 words, the template, its 5 answer tokens) over the history the engine
    # counted (10 prompt tokens per request so far, 5 answer tokens): 20 + 5 + 75 > 95 stops before turn 3
    recs = run_loadgen(tmp_path, url, "--kind", "openai-chat", "--requests", "4", "--context-tokens", "95", rows=conv)
    # the conversation reserved the 4 requests; it ends after turn 2, and the count with it
    assert [(r["conversation"], r["turn"]) for r in recs] == [(0, 1), (0, 2)]
    assert json.loads((tmp_path / "done.json").read_text())["conversations_cut"] == 1


def test_a_request_count_ends_between_conversations_not_inside_one(scripted, tmp_path):
    _, url = scripted
    convs = [{"row": i, "conversation": i, "turns": [{"prompt": "q", "max_tokens": 5}] * 3} for i in range(4)]
    recs = run_loadgen(tmp_path, url, "--kind", "openai-chat", "--requests", "12", "--concurrency", "2", rows=convs)
    turns: dict = {}
    for r in recs:
        turns.setdefault(r["conversation"], []).append(r["turn"])
    assert sorted(turns) == [0, 1, 2, 3] and all(sorted(t) == [1, 2, 3] for t in turns.values())


def test_a_trace_is_sent_at_its_times_scaled_by_speedup(scripted, tmp_path):
    _, url = scripted
    rows = [{"row": i, "at": at, "prompt": "x", "max_tokens": 5} for i, at in enumerate([0, 0.2, 0.3, 0.8])]
    recs = sorted(run_loadgen(tmp_path, url, "--concurrency", "4", "--speedup", "2", rows=rows),
                  key=lambda r: r["scheduled"])
    begin = recs[0]["scheduled"]
    assert [round(r["scheduled"] - begin, 3) for r in recs] == [0, 0.1, 0.15, 0.4]
    assert all(0 <= r["start"] - r["scheduled"] < 0.05 and r["queued_s"] == 0 for r in recs)


def test_a_lora_mix_picks_each_requests_model_by_weight_or_in_turn(scripted, tmp_path):
    server, url = scripted
    recs = run_loadgen(tmp_path, url, "--requests", "6", "--models", '{"base": 1, "a": 1, "b": 1}',
                       "--model-selection", "round-robin")
    assert sorted(r["model"] for r in recs) == ["a", "a", "b", "b", "base", "base"]
    assert sorted(b["model"] for b in server.bodies) == sorted(r["model"] for r in recs)
    server.bodies.clear()
    (tmp_path / "r.jsonl").unlink()
    weighted = run_loadgen(tmp_path, url, "--requests", "40", "--concurrency", "8",
                           "--models", '{"base": 0.9, "a": 0.1}', "--seed", "5")
    picks = [r["model"] for r in weighted]
    assert picks.count("base") > picks.count("a") > 0


def records(n: int, lag: float, queued: float, ok: bool = True, gap: float = 0.1) -> list[dict]:
    return [{"start": 100 + i * gap + lag * i, "scheduled": 100 + i * gap, "queued_s": queued, "latency_s": 0.05,
             "ok": ok, "warmup": False, "error": None if ok else "ConnectionRefusedError: refused"} for i in range(n)]


def judged(recs: list[dict], kpis: dict | None = None, cross: list | None = None, limits=Validity()):
    with RequestTable.from_records(recs) as t:
        window = Window(100, 200)
        d = delivery(t, window, 10.0, limits, concurrency=2)
        values = {k.kpi: k.value for k in client_kpis(t, window)} | (kpis or {})
        return d, assess(values, d, cross or [], limits, records=len(recs))


def test_a_client_that_kept_its_schedule_is_valid():
    d, (valid, reasons) = judged(records(50, 0.0, 0.0))
    assert valid and reasons == [] and d["achieved_ratio"] == pytest.approx(1.0)
    assert d["send_lag_p99"] == pytest.approx(0.0, abs=1e-6)


def test_a_client_held_by_its_concurrency_cap_is_invalid_and_says_so():
    d, (valid, reasons) = judged(records(50, 0.05, 0.04))       # each send 50 ms later than the last
    assert not valid and d["achieved_ratio"] == pytest.approx(0.1 / 0.15, rel=1e-3)
    assert "concurrency cap" in d["cause"] and "2 slots" in d["cause"] and "load not delivered" in reasons[0]


def test_a_client_late_with_free_slots_is_its_cpu_and_connection_errors_are_named():
    d, _ = judged(records(50, 0.05, 0.0))
    assert d["cause"].startswith("the client's CPU")
    d, (valid, reasons) = judged(records(20, 0.05, 0.0) + records(5, 0.05, 0.0, ok=False))
    assert d["cause"].startswith("the connections") and any("error rate" in r for r in reasons)


def test_failures_and_disagreeing_engine_counts_make_a_session_invalid():
    _, (valid, reasons) = judged(records(100, 0, 0)[:98] + records(100, 0, 0, ok=False)[98:],
                                 limits=Validity(error_rate=0.05))
    assert valid                                                  # 2% under a 5% limit
    row = {"service": "vllm", "what": "output tokens", "client": 100.0, "engine": "vLLM", "engine_count": 200.0,
           "agree": False, "note": "differ by 100"}
    _, (valid, reasons) = judged(records(10, 0, 0), cross=[row])
    assert not valid and "the engine disagrees: vllm output tokens" in reasons[0]
    _, (valid, _) = judged(records(10, 0, 0), cross=[row], limits=Validity(cross_check=False))
    assert valid


def test_goodput_and_slo_attainment_do_not_count_a_fast_failure():
    recs = [{"start": 100 + i, "latency_s": 0.1, "ttft_s": 0.05, "tpot_s": 0.01, "ok": i != 0, "warmup": False}
            for i in range(10)]
    with RequestTable.from_records(recs) as t:
        k = {x.kpi: x.value for x in client_kpis(t, Window(100, 110), slo={"ttft": 0.2})}
    assert k["goodput"] == pytest.approx(9 / 10) and k["slo_attainment"] == pytest.approx(0.9)


def test_the_search_bisects_to_the_highest_load_that_passes():
    search = Search("rate", 1, 64, {"ttft_p99": 0.5}, tolerance=0.1, max_points=12)
    capacity = 11.3                                    # above it, TTFT p99 blows up
    tried: list = []
    value, why = next_value(search, tried)
    while value is not None:
        kpis = {"ttft_p99": 0.2 if value <= capacity else 3.0}
        passed, _ = judge(search, kpis, True, [])
        tried.append((value, passed, min(value, capacity)))
        value, why = next_value(search, tried)
    best = answer(tried)
    assert best <= capacity and best > capacity / 1.1 and len(tried) <= 9 and why.startswith("stopped")
    failed_above = min(v for v, ok, _ in tried if not ok)
    assert failed_above / best <= 1.1


def test_the_search_stops_at_either_end_and_an_invalid_point_fails():
    s = Search("concurrency", 2, 32, {"ttft_p99": 0.5})
    assert next_value(s, [(2, False, 1.0)])[0] is None
    assert next_value(s, [(2, True, 1.0), (32, True, 9.0)])[0] is None
    assert next_value(s, [(2, True, 1.0), (32, False, 1.0)]) == (8.0, next_value(s, [(2, True, 1.0), (32, False, 1.0)])[1])
    assert "past saturation" in next_value(s, [(2, True, 1.0), (32, False, 1.0)])[1]
    assert judge(s, {"ttft_p99": 0.1}, False, ["load not delivered"]) == (False, "invalid: load not delivered")
    g = Search("rate", 1, 8, {"ttft_p99": 0.5}, goodput=0.95)
    assert judge(g, {"ttft_p99": 0.1, "slo_attainment": 0.9}, True, [])[0] is False


def test_the_engines_hit_rate_is_the_delta_of_its_counters_over_the_window():
    from orchestrator.bench.collect import prometheus_kpis_from
    from orchestrator.monitoring.queries import service_kpi_queries
    for engine, hits, queries in (("vllm", (100, 400), (1000, 1600)), ("llamacpp", (10, 70), (200, 260))):
        q = service_kpi_queries({"s": "s_1"}, 10, 1, {"s": engine})
        values = {n: None for n in q}
        values.update({"service_prefix_cache_hits_counted@start": hits[0], "service_prefix_cache_hits_counted@end": hits[1],
                       "service_prefix_cache_queries_counted@start": queries[0],
                       "service_prefix_cache_queries_counted@end": queries[1]})
        k = {x.kpi: x for x in prometheus_kpis_from({"s": "s_1"}, q, values, {"s": engine})}
        assert k["prefix_cache_hit_rate"].value == pytest.approx((hits[1] - hits[0]) / (queries[1] - queries[0]))
    # llama.cpp counts the misses apart: its lookups are misses plus hits
    assert "llamacpp:prompt_tokens_total" in q["service_prefix_cache_queries_counted@end"][0]
    assert "llamacpp:prompt_tokens_cached_total" in q["service_prefix_cache_queries_counted@end"][0]


def test_kpis_by_turn_and_by_model_come_from_the_records():
    from orchestrator.analysis.kpi import group_rows
    recs = [{"start": 100 + i, "latency_s": 0.2, "ttft_s": 0.01 * t, "ok": True, "warmup": False, "turn": t,
             "tokens_in": 50 * t, "model": "base" if i % 2 else "lora"} for i, t in enumerate([1, 2, 3] * 4)]
    with RequestTable.from_records(recs) as t:
        turns = group_rows(t, Window(100, 120), "turn")
        models = group_rows(t, Window(100, 120), "model", t.models)
    assert [(r["turn"], r["requests"], r["tokens_in_mean"]) for r in turns] == [(1, 4, 50), (2, 4, 100), (3, 4, 150)]
    assert [r["ttft_p50"] for r in turns] == pytest.approx([0.01, 0.02, 0.03])
    assert sorted((r["model"], r["requests"]) for r in models) == [("base", 6), ("lora", 6)]


def test_an_invalid_report_heads_its_page_and_compare_calls_no_verdict(tmp_path):
    from orchestrator.analysis.compare import compare_sessions
    from orchestrator.reports.artifacts import ReportContext, write_artifacts
    dirs = []
    for name, lag in (("a", 0.0), ("b", 0.05)):
        ctx = ReportContext(session_id=name, benchmark="b", out_dir=tmp_path / name, scrape_interval="1s",
                            services={})
        with RequestTable.from_records(records(40, lag, lag)) as t:
            rep = write_artifacts(ctx, t, Window(100, 110))
        dirs.append(tmp_path / name)
        (tmp_path / name / "requests.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records(40, lag, lag)))
    assert rep["valid"] is False and list(rep)[:2] == ["valid", "invalid_reasons"]
    page = (dirs[1] / "report.html").read_text()
    assert page.index("INVALID SESSION") < page.index("<h2>All KPIs") and "concurrency cap" in page
    rows, _, refused = compare_sessions(dirs[0], dirs[1])
    assert rows and all(r.verdict == "not judged (invalid session)" for r in rows)
    assert len(refused) == 1 and refused[0].startswith("B is invalid: load not delivered")


def test_a_client_lost_before_its_load_ended_makes_the_session_invalid():
    why = "client-x: client job 7 on n2 ended NODE_FAIL (node failure) before it finished"
    valid, reasons = assess({}, None, [], Validity(), records=10, lost=[why])
    assert not valid and reasons == [f"load not delivered: {why}"]
