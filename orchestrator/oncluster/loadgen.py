#!/usr/bin/env python3
"""Benchmark load client, run as a SLURM job next to the service.

Standard library only (the cluster's python3, nothing installed). Waits for
its go file, runs the warm-up then the measured load (closed loop with
`--concurrency` workers, or open loop at `--rate` requests/s with at most
`--concurrency` in flight; arrivals constant, Poisson or gamma, optionally
ramped; or a trace's own times), and records every request as one JSON line:
start, latency_s, ttft_s, tpot_s, itl_s (the gaps between streamed chunks),
status, ok, tokens_in and tokens_out (from the engine's usage), cached_tokens
(where the engine says), row (the dataset row), model (a LoRA mix), retried,
error, warmup, client_cpu_s (this client's own CPU time for the request: its
overhead); open-loop requests add scheduled (when the schedule meant to send
them) and queued_s (how long they waited for a free slot), multiturn ones
conversation and turn. A multiturn slot carries one conversation at a time,
each turn with the whole history and the engine's real answers. Definitions follow vLLM's benchmark (TTFT; TPOT =
(latency - TTFT) / (tokens_out - 1); ITL between chunks). Live counters and
latency histograms are served on /metrics.

Servers that close the connection (llama.cpp does after a streamed response)
are handled: `Connection: close` is honoured, and a request that finds its
kept-alive connection closed before any byte of an answer is sent once more
on a new connection, and marked ``retried``.
"""

from __future__ import annotations

import argparse
import json
import random
import select
import threading
import time
import urllib.parse

try:  # shipped beside this file to the job dir; imported from the package in tests
    from orchestrator.oncluster import clientjob
    from orchestrator.oncluster.formats import build_request, payload_problems
    from orchestrator.oncluster.httpconn import Closed, Connection, timed_lines
except ImportError:
    import clientjob
    from formats import build_request, payload_problems
    from httpconn import Closed, Connection, timed_lines

LAT_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60]


class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.ok = 0
        self.errors = 0
        self.in_flight = 0
        self.tokens_out = 0
        self.cpu_sum = 0.0
        self.latency = clientjob.Histogram(LAT_BUCKETS)
        self.ttft = clientjob.Histogram(LAT_BUCKETS)
        self.phase = "waiting"
        self.retried = 0

    def record(self, rec: dict) -> None:
        with self.lock:
            if rec["ok"]:
                self.ok += 1
            else:
                self.errors += 1
            self.tokens_out += rec["tokens_out"] or 0
            self.retried += 1 if rec.get("retried") else 0
            self.cpu_sum += rec["client_cpu_s"]
            self.latency.observe(rec["latency_s"])
            if rec["ttft_s"] is not None:
                self.ttft.observe(rec["ttft_s"])

    def metrics(self) -> str:
        with self.lock:
            n = self.ok + self.errors
            out = ["# TYPE orch_client_requests_total counter",
                   f'orch_client_requests_total{{outcome="ok"}} {self.ok}',
                   f'orch_client_requests_total{{outcome="error"}} {self.errors}',
                   "# TYPE orch_client_in_flight gauge", f"orch_client_in_flight {self.in_flight}",
                   "# TYPE orch_client_tokens_out_total counter", f"orch_client_tokens_out_total {self.tokens_out}",
                   "# TYPE orch_client_retried_total counter", f"orch_client_retried_total {self.retried}",
                   "# TYPE orch_client_overhead_seconds counter",
                   f"orch_client_overhead_seconds_sum {self.cpu_sum}", f"orch_client_overhead_seconds_count {n}"]
            out += self.latency.lines("orch_client_latency_seconds") + self.ttft.lines("orch_client_ttft_seconds")
        return "\n".join(out) + "\n"


def _usage(kind: str, doc: dict) -> tuple[int | None, int | None]:
    """(prompt tokens, completion tokens) the engine reported, or None each."""
    if kind == "ollama-generate":
        return doc.get("prompt_eval_count"), doc.get("eval_count")
    usage = doc.get("usage") or {}
    return usage.get("prompt_tokens"), usage.get("completion_tokens")


def _cached(doc: dict) -> int | None:
    """Prompt tokens served from the engine's prefix cache, where the answer says: OpenAI's
    ``usage.prompt_tokens_details.cached_tokens`` (vLLM with --enable-prompt-tokens-details),
    llama.cpp's ``timings.cache_n``."""
    details = (doc.get("usage") or {}).get("prompt_tokens_details") or {}
    if isinstance(details.get("cached_tokens"), int):
        return details["cached_tokens"]
    timings = doc.get("timings") or {}
    return timings["cache_n"] if isinstance(timings.get("cache_n"), int) else None


def _text_of(kind: str, doc: dict) -> str:
    if kind == "ollama-generate":
        return doc.get("response") or ""
    out = []
    for ch in doc.get("choices") or []:
        out.append(ch.get("text") or (ch.get("delta") or {}).get("content") or
                   (ch.get("message") or {}).get("content") or "")
    return "".join(out)


def _tokens_in_line(kind: str, line: bytes, text: list | None = None
                    ) -> tuple[int, tuple[int | None, int | None] | None, int | None]:
    """(content pieces in this streamed line, the usage it reports (in, out) or None, cached prompt
    tokens or None); the content itself is appended to ``text`` when given."""
    if kind == "ollama-generate":
        line = line.strip()
        if not line:
            return 0, None, None
        doc = json.loads(line)
        if doc.get("done"):
            return 0, _usage(kind, doc), None
        if text is not None:
            text.append(doc.get("response") or "")
        return (1 if doc.get("response") else 0), None, None
    if not line.startswith(b"data:"):   # the blank line after each event, comments, event: lines
        return 0, None, None
    data = line[5:].strip()
    if data == b"[DONE]":
        return 0, None, None
    doc = _decode(data.decode())[0]   # (json.loads would first sniff the bytes' encoding: per chunk)
    pieces = 0
    for ch in doc.get("choices") or ():
        piece = ch.get("text") or (ch.get("delta") or {}).get("content")
        if piece:
            pieces += 1
            if text is not None:
                text.append(piece)
    if "usage" not in doc and "timings" not in doc:   # every chunk but the last: nothing more to read
        return pieces, None, None
    return pieces, (_usage(kind, doc) if doc.get("usage") else None), _cached(doc)


_decode = json.JSONDecoder().raw_decode


# a kept-alive connection the server had closed: the request may go once more on a new one
STALE = (Closed, ConnectionResetError, BrokenPipeError, ConnectionAbortedError)


def _drop(conn_box: list) -> None:
    """Close a slot's kept-alive connection (the next request opens a new one)."""
    if conn_box[0] is not None:
        conn_box[0].close()
    conn_box[0] = None


class Keepalive:
    """What a server does with kept-alive connections, learned from its answers. llama.cpp's server
    closes the connection after each streamed answer without saying so: each next request would go
    into a closed connection and pay a failed send inside its latency. Once that has been seen twice
    and on at least half the reuses, each request gets a fresh connection before its clock starts."""

    def __init__(self) -> None:
        self.reused = 0      # requests sent on a kept-alive connection
        self.stale = 0       # of them, found closed by the server (sent again on a new one)

    @property
    def fresh_each_time(self) -> bool:
        return self.stale >= 2 and self.stale * 2 >= self.reused


SERVERS: dict[tuple, Keepalive] = {}   # (host, port) -> what it does with kept-alive connections


def _keepalive(url) -> Keepalive:
    return SERVERS.setdefault((url.hostname, url.port), Keepalive())


def _peer_closed(conn) -> bool:
    """The server has closed this kept-alive connection (its FIN is here, or bytes nobody asked for)."""
    sock = conn.sock
    if sock is None:
        return True
    try:
        readable, _, _ = select.select([sock], [], [], 0)
        return bool(readable)   # an idle connection has nothing to read: EOF or stray bytes both end it
    except (OSError, ValueError):
        return True


def _ready(conn_box: list, url, timeout: float) -> None:
    """Before a request's clock starts: a kept-alive connection the server closed is dropped, and where
    the server is known to close after each answer, a fresh one is connected now, outside the latency."""
    if conn_box[0] is not None and (_peer_closed(conn_box[0]) or _keepalive(url).fresh_each_time):
        _drop(conn_box)
    if conn_box[0] is None and _keepalive(url).fresh_each_time:
        conn = Connection(url.hostname, url.port or 80, timeout)
        try:
            conn.connect()
            conn_box[0] = conn
        except OSError:
            conn.close()   # the request's own attempt says what went wrong


def _send(conn_box: list, url, method: str, path: str, data: bytes | None, timeout: float):
    """Send on the kept-alive connection; if the server had closed it (no byte of an answer came),
    once more on a new one. Returns (response, retried)."""
    headers = {**clientjob.auth_headers(), **({"Content-Type": "application/json"} if data else {})}
    reused = conn_box[0] is not None
    # (a connection opened fresh before the clock started is no reuse: only one that served an answer)
    kept = reused and getattr(conn_box[0], "served", False)
    learned = _keepalive(url)
    if kept:
        learned.reused += 1
    for attempt in (0, 1):
        if conn_box[0] is None:
            conn_box[0] = Connection(url.hostname, url.port or 80, timeout)
        conn = conn_box[0]
        try:
            conn.request(method, path, data, headers)
            resp = conn.response()
            conn.served = True
            return resp, attempt == 1
        except STALE:
            _drop(conn_box)
            if not reused or attempt == 1:
                raise
            if kept:
                learned.stale += 1


def one_request(conn_box: list, url: urllib.parse.SplitResult, kind: str, payload: dict, timeout: float,
                row: dict | None = None, answer: list | None = None) -> dict:
    """One request, measured; its answer's text is appended to ``answer`` when given (a multiturn
    conversation sends it back with the next turn)."""
    method, path, body, stream = build_request(kind, payload, row)
    _ready(conn_box, url, timeout)
    cpu0 = time.thread_time()
    start = time.time()
    t0 = time.perf_counter()
    ttft = None
    last_chunk = None
    gaps: list[float] = []
    pieces = 0
    usage = (None, None)
    cached = None
    status = 0
    error = None
    retried = False
    try:
        data = json.dumps(body).encode() if body is not None else None
        resp, retried = _send(conn_box, url, method, path, data, timeout)
        status = resp.status
        if stream and status == 200:
            for now, line in timed_lines(resp):
                n, reported, c = _tokens_in_line(kind, line, answer)
                if n:
                    if ttft is None:
                        ttft = now - t0
                    else:
                        gaps.append(now - last_chunk)
                    last_chunk = now
                pieces += n
                usage = reported if reported is not None else usage
                cached = c if c is not None else cached
        else:
            raw = resp.read()
            if status == 200 and kind != "http":
                doc = json.loads(raw)
                usage, cached = _usage(kind, doc), _cached(doc)
                if answer is not None:
                    answer.append(_text_of(kind, doc))
            elif status != 200:
                error = f"HTTP {status}: {raw[:200].decode(errors='replace')}"
        if resp.will_close:  # Connection: close (or HTTP/1.0): the next request needs a new connection
            _drop(conn_box)
    except Exception as exc:  # a failed request is data, not a crash
        error = f"{type(exc).__name__}: {exc}"
        _drop(conn_box)
    latency = time.perf_counter() - t0
    tokens_in, tokens_out = usage
    tokens = tokens_out if tokens_out is not None else (pieces or None)
    tpot = (latency - ttft) / (tokens - 1) if ttft is not None and tokens and tokens > 1 else None
    ok = error is None and 200 <= status < 300
    if not ok and error is None:
        error = f"HTTP {status}"
    rec = {"start": round(start, 6), "latency_s": round(latency, 6), "ttft_s": None if ttft is None else round(ttft, 6),
           "tpot_s": None if tpot is None else round(tpot, 6), "status": status, "ok": ok, "tokens_in": tokens_in,
           "tokens_out": tokens, "error": error, "client_cpu_s": round(time.thread_time() - cpu0, 6)}
    if gaps:
        rec["itl_s"] = [round(g, 6) for g in gaps]
    if retried:
        rec["retried"] = True
    if cached is not None:
        rec["cached_tokens"] = cached
    if row is not None:
        rec["row"] = row.get("row")
        if row.get("model"):
            rec["model"] = row["model"]
    return rec


def pick_model(models: dict[str, float], selection: str, seed: int, index: int) -> str:
    """The model of request (or conversation) ``index`` of a mix: in turn (round-robin), or drawn by
    weight from the seed, the same for the same index whatever order the threads take them."""
    names = list(models)
    if selection == "round-robin":
        return names[index % len(names)]
    return random.Random(seed * 1_000_003 + index).choices(names, weights=[models[n] for n in names])[0]


def context_tokens(conn_box: list, url: urllib.parse.SplitResult, timeout: float) -> int | None:
    """The server's context length in tokens, as it says: vLLM's /v1/models ``max_model_len``,
    llama.cpp's /props ``n_ctx`` (per slot); None when it does not say."""
    for path, find in (("/v1/models", lambda d: (d.get("data") or [{}])[0].get("max_model_len")),
                       ("/props", lambda d: (d.get("default_generation_settings") or {}).get("n_ctx") or d.get("n_ctx"))):
        try:
            resp, _ = _send(conn_box, url, "GET", path, None, timeout)
            raw = resp.read()
            if resp.will_close:
                _drop(conn_box)
            if resp.status == 200:
                n = find(json.loads(raw))
                if isinstance(n, int) and n > 0:
                    return n
        except Exception:  # a server that does not say: conversations are not cut
            _drop(conn_box)
    return None


def estimate_tokens(text: str) -> int:
    """A generous guess of a text's tokens before the engine counts them (words, punctuation and a
    chat template's wrapping): used only to stop a conversation before it outgrows the context."""
    return int(len(text.split()) * 1.5) + len(text) // 16 + 16


def arrivals(begin: float, rate: float, kind: str = "constant", burstiness: float = 1.0, seed: int = 0,
             ramp: tuple[float, float, float] | None = None):
    """Scheduled send times from ``begin``: constant gaps, Poisson (exponential gaps) or gamma gaps of shape
    ``burstiness`` (1 is Poisson, below 1 burstier), as vLLM's benchmark draws them; with ``ramp``
    (from, to, over seconds) the rate moves linearly from one to the other, then stays."""
    rng = random.Random(seed)
    t = begin
    while True:
        r = rate
        if ramp:
            lo, hi, over = ramp
            r = hi if t - begin >= over else lo + (hi - lo) * (t - begin) / over
        r = max(r, 1e-9)
        yield t
        if kind == "poisson":
            t += rng.expovariate(r)
        elif kind == "gamma":
            t += rng.gammavariate(burstiness, 1.0 / (r * burstiness))
        else:
            t += 1.0 / r


class Run:
    def __init__(self, args, stats: Stats):
        self.args = args
        self.stats = stats
        self.url = urllib.parse.urlsplit(args.url)
        self.payload = json.loads(args.payload)
        problems = payload_problems(args.kind, self.payload)
        if problems:
            raise SystemExit(f"payload: {'; '.join(problems)}")
        self.rows = []
        if args.dataset_file:
            with open(args.dataset_file) as f:
                self.rows = [json.loads(line) for line in f if line.strip()]
        index, parts = (int(v) for v in args.part.split("/"))
        if parts > 1:   # a trace or a conversation set shared by several jobs: each takes its share
            self.rows = self.rows[index::parts]
        self.timed = bool(self.rows) and "at" in self.rows[0]          # a trace: rows carry send times
        self.conversations = bool(self.rows) and "turns" in self.rows[0]
        self.models = json.loads(args.models) if args.models else {}
        self.out = open(args.out, "a", buffering=1)
        self.out_lock = threading.Lock()
        self.stop = threading.Event()
        self.sent = 0
        self.started_conversations = 0
        self.sent_lock = threading.Lock()
        self.context: int | None = None     # the server's context (multiturn: conversations cut to fit)
        self.cut = 0                        # conversations ended before their last turn to fit it

    def take_ticket(self) -> int | None:
        """The request's sequence number (it picks the dataset row), or None when the count is reached
        (or, for a trace, its last line)."""
        with self.sent_lock:
            if self.args.requests and self.sent >= self.args.requests:
                return None
            if self.timed and self.sent >= len(self.rows):
                return None
            self.sent += 1
            return self.sent - 1

    def row_for(self, ticket: int) -> dict | None:
        if not self.rows and not self.models:
            return None
        row = dict(self.rows[ticket % len(self.rows)]) if self.rows else {"row": None}
        if self.models:
            row["model"] = pick_model(self.models, self.args.model_selection, self.args.seed, ticket)
        return row

    def execute(self, conn_box: list, warmup_until: float, row: dict | None, scheduled: float | None = None,
                queued: float | None = None, extra: dict | None = None, answer: list | None = None) -> dict:
        with self.stats.lock:
            self.stats.in_flight += 1
        rec = one_request(conn_box, self.url, self.args.kind, self.payload, self.args.request_timeout, row, answer)
        with self.stats.lock:
            self.stats.in_flight -= 1
        rec["warmup"] = rec["start"] < warmup_until
        rec["client"] = self.args.client_id
        if scheduled is not None:
            rec["scheduled"] = round(scheduled, 6)
            rec["queued_s"] = round(queued or 0.0, 6)
        if extra:
            rec.update(extra)
        self.stats.record(rec)
        with self.out_lock:
            self.out.write(json.dumps(rec) + "\n")
        return rec

    def closed_loop(self, end: float, warmup_until: float) -> None:
        def worker(end: float, warmup_until: float):
            box = [None]
            while not self.stop.is_set() and time.time() < end:
                ticket = self.take_ticket()
                if ticket is None:
                    break
                self.execute(box, warmup_until, self.row_for(ticket))
        self._threads(self.conversation if self.conversations else worker, end, warmup_until)

    def _threads(self, work, *args) -> None:
        threads = [threading.Thread(target=work, args=args, daemon=True) for _ in range(self.args.concurrency)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    def take_conversation(self) -> tuple[int, dict, int] | None:
        """The next conversation, its sequence number and the turns it may send: a conversation reserves
        its turns from --requests when it starts, so the count ends between conversations, not inside one
        (the last may be shorter when the count is not a multiple of the turns)."""
        with self.sent_lock:
            if self.args.requests and self.sent >= self.args.requests:
                return None
            seq = self.started_conversations
            self.started_conversations += 1
            conv = self.rows[seq % len(self.rows)]
            turns = len(conv["turns"])
            if self.args.requests:
                turns = min(turns, self.args.requests - self.sent)
            self.sent += turns
        return seq, conv, turns

    def conversation(self, end: float, warmup_until: float) -> None:
        """One client slot: a conversation at a time, each turn sent with the whole history (the
        engine's own answers included), ``--think-time`` after each answer."""
        box = [None]
        chat = self.args.kind == "openai-chat"
        while not self.stop.is_set() and time.time() < end:
            taken = self.take_conversation()
            if taken is None:
                return
            seq, conv, allowed = taken
            model = pick_model(self.models, self.args.model_selection, self.args.seed, seq) if self.models else None
            history: list[tuple[str, str]] = []
            used = 0                        # tokens of the history so far, as the engine counted them
            for turn, t in enumerate(conv["turns"][:allowed], 1):
                if self.stop.is_set() or time.time() >= end:
                    return
                if self.context and used + estimate_tokens(t["prompt"]) + t["max_tokens"] > self.context:
                    with self.sent_lock:
                        self.cut += 1       # the next turn would not fit: the conversation ends here
                    break
                if chat:
                    msgs = [m for u, a in history for m in ({"role": "user", "content": u},
                                                              {"role": "assistant", "content": a})]
                    row = {"messages": msgs + [{"role": "user", "content": t["prompt"]}]}
                else:
                    row = {"prompt": "".join(f"{u}\n{a}\n" for u, a in history) + t["prompt"]}
                row.update(row=conv.get("row"), max_tokens=t["max_tokens"], **({"model": model} if model else {}))
                answer: list[str] = []
                rec = self.execute(box, warmup_until, row, extra={"conversation": seq, "turn": turn}, answer=answer)
                if not rec["ok"]:
                    break                   # a conversation whose turn failed has no history to go on with
                history.append((t["prompt"], "".join(answer)))
                used = (rec["tokens_in"] or 0) + (rec["tokens_out"] or 0)
                if self.args.think_time and turn < allowed and self.stop.wait(self.args.think_time):
                    return

    def open_loop(self, begin: float, end: float, warmup_until: float) -> None:
        slots = threading.Semaphore(self.args.concurrency)
        boxes = [[None] for _ in range(self.args.concurrency)]
        free = list(range(self.args.concurrency))
        free_lock = threading.Lock()
        threads = []

        def fire(scheduled, ticket, queued):
            with free_lock:
                i = free.pop()
            try:
                self.execute(boxes[i], warmup_until, self.row_for(ticket), scheduled, queued)
            finally:
                with free_lock:
                    free.append(i)
                slots.release()

        a = self.args
        if self.timed:   # a trace: its own times from the go, scaled by --speedup
            schedule = iter([begin + r["at"] / a.speedup for r in self.rows])
        else:
            ramp = (a.ramp_from, a.ramp_to, a.ramp_over) if a.ramp_over else None
            schedule = arrivals(begin, a.rate, a.arrival, a.burstiness, a.seed, ramp)
        while not self.stop.is_set():
            scheduled = next(schedule, None)
            if scheduled is None or scheduled >= end:
                break
            ticket = self.take_ticket()
            if ticket is None:
                break
            delay = scheduled - time.time()
            if delay > 0:
                self.stop.wait(delay)
            # at most `concurrency` in flight: beyond it the request waits for a slot (its queued_s),
            # and its send lag (start - scheduled) shows it
            queued = 0.0
            if not slots.acquire(blocking=False):
                t0 = time.perf_counter()
                slots.acquire()
                queued = time.perf_counter() - t0
            t = threading.Thread(target=fire, args=(scheduled, ticket, queued), daemon=True)
            t.start()
            threads.append(t)
        for t in threads:
            t.join()


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--url", required=True, help="base URL of the service, e.g. http://n1:8000")
    ap.add_argument("--kind", default="openai-completions",
                    choices=["openai-completions", "openai-chat", "ollama-generate", "http"])
    ap.add_argument("--payload", default="{}")
    ap.add_argument("--payload-file", default=None, help="read the payload JSON from this file")
    ap.add_argument("--dataset-file", default=None, help="JSON lines {row, prompt, max_tokens}: request i uses row i")
    ap.add_argument("--arrival", default="constant", choices=["constant", "poisson", "gamma"])
    ap.add_argument("--burstiness", type=float, default=1.0, help="gamma shape (1: Poisson; below 1: burstier)")
    ap.add_argument("--seed", type=int, default=0, help="seeds the arrival times")
    ap.add_argument("--ramp-from", type=float, default=None)
    ap.add_argument("--ramp-to", type=float, default=None)
    ap.add_argument("--ramp-over", type=float, default=None, help="seconds to move the rate from --ramp-from to --ramp-to")
    ap.add_argument("--request-timeout", type=float, default=120)
    ap.add_argument("--speedup", type=float, default=1.0, help="a trace's send times divided by this")
    ap.add_argument("--think-time", type=float, default=0.0, help="multiturn: seconds between an answer and the next turn")
    ap.add_argument("--context-tokens", type=int, default=0,
                    help="multiturn: the server's context (0: ask it); a conversation stops before a turn that would not fit")
    ap.add_argument("--models", default=None, help='a LoRA mix: JSON {"model": weight, ...}')
    ap.add_argument("--model-selection", default="random", choices=["random", "round-robin"])
    ap.add_argument("--part", default="0/1", help="I/N: this job takes every Nth dataset row from the Ith")
    args = clientjob.parse_job_arguments(ap, argv, bounded=False)
    if args.ramp_over and args.rate is None:
        args.rate = args.ramp_to
    if args.payload_file:
        with open(args.payload_file) as f:
            args.payload = f.read()
    stats = Stats()
    if args.metrics_port:
        clientjob.serve_metrics(args.metrics_port, stats.metrics)
    job = clientjob.Job(args)
    run = Run(args, stats)
    run.stop = job.stop
    if not (run.timed or args.duration or args.requests):
        ap.error("one of --duration or --requests is required (a trace is bounded by its own lines)")
    if run.conversations:
        run.context = args.context_tokens or context_tokens([None], run.url, args.request_timeout)

    def counts() -> dict:
        with stats.lock:
            # latency so far, as the histogram's bucket bound that holds the quantile (for the live line)
            return {"ok": stats.ok, "errors": stats.errors, "in_flight": stats.in_flight,
                    "p50_le": stats.latency.upper_bound(0.5), "p99_le": stats.latency.upper_bound(0.99)}

    def load(begin: float, end: float, warmup_until: float) -> None:
        stats.phase = "running"
        if args.rate or run.timed:
            run.open_loop(begin, end, warmup_until)
        else:
            run.closed_loop(end, warmup_until)
        stats.phase = "done"
        run.out.close()

    shape = ("trace replay" if run.timed else "rate %g/s" % args.rate if args.rate else
             "conversations" if run.conversations else "closed loop")
    job.run(load, counts, f"load: {args.kind} -> {args.url}, concurrency {args.concurrency}, {shape}",
            extra=lambda: {"context_tokens": run.context, "conversations_cut": run.cut} if run.conversations else {})


if __name__ == "__main__":
    main()
