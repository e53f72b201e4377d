"""KPIs of a measured window, computed exactly from the clients' raw records (pure).

Percentiles are exact, with linear interpolation between closest ranks (numpy's
default "linear" method; see ``quantiles``). The records are a ``RequestTable``
read in chunks, so the memory needed does not grow with the number of requests.

Definitions follow vLLM's benchmark (``vllm bench serve``): TTFT, time to the
first streamed chunk; TPOT per request, (latency - TTFT) / (output tokens - 1);
ITL, every gap between streamed chunks; goodput, requests/s of the window that
met every per-request SLO given (ttft, tpot, e2e).
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import asdict, dataclass

import numpy as np

from orchestrator.analysis.definitions import DEFAULT_PERCENTILES, DEFINITIONS  # noqa: F401 (re-exported)
from orchestrator.analysis.quantiles import Summary, summarise
from orchestrator.analysis.records import RequestTable


@dataclass(frozen=True)
class KPI:
    kpi: str
    value: float | None          # None: the source is absent (never reported as zero)
    unit: str
    source: str                  # client | prometheus
    note: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Window:
    start: float
    end: float

    @property
    def seconds(self) -> float:
        return max(self.end - self.start, 1e-9)


def _label(p: float) -> str:
    return f"p{p:g}".replace(".", "_")


def _in_window(c: dict, window: Window) -> np.ndarray:
    """Requests of the measured window: not warm-up, started inside it."""
    return (c["warmup"] == 0) & (c["start"] >= window.start) & (c["start"] <= window.end)


def window_of(table: RequestTable, warmup_until: float) -> Window:
    """From the end of the warm-up to the completion of the last measured request."""
    end = warmup_until
    for c in table.chunks(["start", "latency_s", "warmup"]):
        ends = (c["start"] + c["latency_s"])[c["warmup"] == 0]
        if ends.size:
            end = max(end, float(ends.max()))
    return Window(warmup_until, end)


ROW_COLUMNS = ("start", "latency_s", "ok", "warmup", "op")
# each latency distribution's column ("gaps": every ITL sample of every request)
DIST_COLUMNS = {"latency": "latency_s", "ttft": "ttft_s", "tpot": "tpot_s", "itl": "gaps"}


def _dist(name: str, summary: Summary, unit: str, percentiles) -> list[KPI]:
    note = "" if summary.n else "no samples"
    out = [KPI(f"{name}_{_label(p)}", summary.percentiles.get(p / 100), unit, "client", note) for p in percentiles]
    return out + [KPI(f"{name}_max", summary.max, unit, "client", note),
                  KPI(f"{name}_mean", summary.mean, unit, "client", note)]


def meets_slo(c: dict, slo: dict) -> np.ndarray:
    """Every per-request SLO met (seconds: ttft, tpot, e2e); a request with no streamed chunks has no TTFT."""
    good = np.ones(c["start"].size, dtype=bool)
    if "ttft" in slo:
        good &= ~np.isnan(c["ttft_s"]) & (c["ttft_s"] <= slo["ttft"])
    if "tpot" in slo:
        good &= np.isnan(c["tpot_s"]) | (c["tpot_s"] <= slo["tpot"])
    if "e2e" in slo:
        good &= c["latency_s"] <= slo["e2e"]
    return good


def client_kpis(table: RequestTable, window: Window, percentiles=DEFAULT_PERCENTILES,
                slo: dict | None = None, phases: dict[str, Window] | None = None) -> list[KPI]:
    """``phases``: ``op_phases(table, window)`` when the caller has it already (a pass over the table)."""
    n = n_ok = good = retried = n_cpu = 0
    tok_out = tok_in = nbytes = cached = cached_of = 0
    any_cached = False
    any_out = any_in = any_bytes = has_requests = False
    cpu = 0.0
    nops = len(table.ops)
    ops_ok, ops_err, ops_items = (np.zeros(nops, dtype=np.int64) for _ in range(3))
    recall_sum, recall_n = np.zeros(nops), np.zeros(nops, dtype=np.int64)
    for c in table.chunks(["start", "latency_s", "ok", "warmup", "tokens_out", "tokens_in", "retried",
                           "client_cpu_s", "ttft_s", "tpot_s", "op", "bytes", "items", "recall", "cached_tokens"]):
        m = _in_window(c, window)
        ok = m & (c["ok"] == 1)
        n += int(m.sum())
        n_ok += int(ok.sum())
        out_ok, in_ok, b_ok = c["tokens_out"][ok], c["tokens_in"][ok], c["bytes"][ok]
        tok_out += int(out_ok[out_ok >= 0].sum())
        tok_in += int(in_ok[in_ok >= 0].sum())
        nbytes += int(b_ok[b_ok >= 0].sum())
        any_out |= bool((out_ok >= 0).any())
        any_in |= bool((in_ok >= 0).any())
        any_bytes |= bool((b_ok >= 0).any())
        has_requests |= bool((c["op"] < 0).any())
        said = ok & (c["cached_tokens"] >= 0) & (c["tokens_in"] > 0)   # the engine's usage told the cached part
        cached += int(c["cached_tokens"][said].sum())
        cached_of += int(c["tokens_in"][said].sum())
        any_cached |= bool(said.any())
        if table.ops:
            op = c["op"]
            ops_ok += np.bincount(op[ok & (op >= 0)], minlength=nops)
            ops_err += np.bincount(op[m & ~ok & (op >= 0)], minlength=nops)
            sel = ok & (op >= 0) & (c["items"] >= 0)
            ops_items += np.bincount(op[sel], weights=c["items"][sel], minlength=nops).astype(np.int64)
            sel = ok & (op >= 0) & ~np.isnan(c["recall"])
            recall_sum += np.bincount(op[sel], weights=c["recall"][sel], minlength=nops)
            recall_n += np.bincount(op[sel], minlength=nops)
        if slo:
            good += int((ok & meets_slo(c, slo)).sum())
        retried += int((m & (c["retried"] == 1)).sum())
        v = c["client_cpu_s"][m]
        v = v[~np.isnan(v)]
        cpu += float(v.sum())
        n_cpu += v.size
    out = [KPI("requests_total", float(n), "requests", "client"),
           KPI("requests_ok", float(n_ok), "requests", "client"),
           KPI("requests_error", float(n - n_ok), "requests", "client"),
           KPI("window_seconds", window.seconds, "s", "client"),
           KPI("throughput", n_ok / window.seconds, "requests/s", "client")]
    if has_requests or not table.ops:  # LLM and HTTP requests; a data service's operations have no tokens
        out += [KPI("output_tokens_per_second", tok_out / window.seconds if any_out else None, "tokens/s", "client",
                    "" if any_out else "the API reported no token counts"),
                KPI("input_tokens_per_second", tok_in / window.seconds if any_in else None, "tokens/s", "client",
                    "" if any_in else "the API reported no prompt token counts")]
    if any_bytes:
        out.append(KPI("bytes_per_second", nbytes / window.seconds, "bytes/s", "client",
                       "values sent (SET) and received (GET) by OK operations"))
    out += [KPI("success_rate", n_ok / n if n else None, "ratio", "client"),
            KPI("error_rate", (n - n_ok) / n if n else None, "ratio", "client")]
    if slo:
        met = "requests meeting " + ", ".join(f"{k} <= {v * 1000:g} ms" for k, v in slo.items())
        out.append(KPI("goodput", good / window.seconds, "requests/s", "client", met))
        out.append(KPI("slo_attainment", good / n if n else None, "ratio", "client",
                       f"share of the window's requests (failed ones included) {met}"))
    if any_cached:
        out.append(KPI("client_prefix_cache_hit_rate", cached / cached_of if cached_of else None, "ratio", "client",
                       "prompt tokens the engine's usage reported cached (cached_tokens) over all prompt tokens "
                       "of the OK requests that reported it"))
    qs = [p / 100 for p in percentiles]

    def ok_in_window(c):
        return _in_window(c, window) & (c["ok"] == 1)

    dists = ["latency"] + (["ttft", "tpot", "itl"] if has_requests or not table.ops else [])
    for name in dists:
        out += _dist(name, summary_of(table, DIST_COLUMNS[name], ok_in_window, qs), "s", percentiles)
    phases = op_phases(table, window) if phases is None else phases
    for i, op in enumerate(table.ops):
        def this_op(c, i=i):
            return ok_in_window(c) & (c["op"] == i)
        span, note = window.seconds, ""
        if op in phases:
            span = phases[op].seconds
            note = f"over its phase, {span:.3g} s of the window"
        out += [KPI(f"{op}_operations_per_second", int(ops_ok[i]) / span, "operations/s", "client", note),
                KPI(f"{op}_errors", float(ops_err[i]), "operations", "client")]
        if ops_items[i]:
            out.append(KPI(f"{op}_items_per_second", int(ops_items[i]) / span, "items/s", "client",
                           "vectors (or rows) the OK operations carried" + (f", {note}" if note else "")))
        if recall_n[i]:
            out.append(KPI(f"{op}_recall_mean", float(recall_sum[i] / recall_n[i]), "ratio", "client",
                           "recall@k against the exact nearest neighbours, mean over the OK queries"))
        out += _dist(f"{op}_latency", summary_of(table, "latency_s", this_op, qs), "s", percentiles)
    out.append(KPI("requests_retried", float(retried), "requests", "client",
                   "sent again once on a new connection: the server had closed the kept-alive one"))
    out.append(KPI("client_overhead_cpu_per_request", cpu / n_cpu if n_cpu else None, "s", "client",
                   "the load client's own CPU time per request"))
    return out


def op_phases(table: RequestTable, window: Window) -> dict[str, Window]:
    """Operations that ran one after another (a vector client inserts, then queries) as phases: each
    op's own window, from its first start to its last completion. Empty when the ops interleave
    (a GET/SET mix): their rates are over the whole window."""
    if len(table.ops) < 2:
        return {}
    first = np.full(len(table.ops), np.inf)
    last = np.full(len(table.ops), -np.inf)
    for c in table.chunks(ROW_COLUMNS):
        m = _in_window(c, window) & (c["ok"] == 1) & (c["op"] >= 0)
        op, start, end = c["op"][m], c["start"][m], c["start"][m] + c["latency_s"][m]
        for i in np.unique(op).tolist():
            first[i] = min(first[i], float(start[op == i].min()))
            last[i] = max(last[i], float(end[op == i].max()))
    seen = [i for i in np.argsort(first).tolist() if np.isfinite(first[i])]
    if len(seen) < 2 or any(last[a] > first[b] for a, b in zip(seen, seen[1:])):
        return {}
    return {table.ops[i]: Window(float(first[i]), float(last[i])) for i in seen}


def summary_of(table: RequestTable, column: str, keep, qs, extra: tuple[str, ...] = ()) -> Summary:
    """Count, mean, max and exact percentiles of ``column`` (or "gaps", the ITL samples) over the
    records ``keep(chunk)`` selects (reading ``extra`` columns besides the usual); NaN (absent) values
    excluded."""
    if column == "gaps":
        def source():
            for c in table.chunks(["gaps", *ROW_COLUMNS, *extra]):
                yield c["gaps"][keep(c)[c["gap_row"]]]
    else:
        def source():
            for c in table.chunks([column, *ROW_COLUMNS, *extra]):
                v = c[column][keep(c)]
                yield v[~np.isnan(v)]
    return summarise(source, qs)


def throughput_series(table: RequestTable, window: Window, bin_s: float = 1.0) -> list[tuple[float, float]]:
    """Completed OK requests per second, in bins from the window start."""
    nbins = max(1, math.ceil(window.seconds / bin_s))
    counts = np.zeros(nbins, dtype=np.int64)
    for c in table.chunks(ROW_COLUMNS):
        ok = _in_window(c, window) & (c["ok"] == 1)
        i = ((c["start"][ok] + c["latency_s"][ok] - window.start) / bin_s).astype(np.int64)
        counts += np.bincount(np.clip(i, 0, nbins - 1), minlength=nbins)
    return [(window.start + (i + 0.5) * bin_s, int(v) / bin_s) for i, v in enumerate(counts)]


def group_rows(table: RequestTable, window: Window, column: str, names: list | None = None,
               percentiles=(50, 99)) -> list[dict]:
    """Per value of ``column`` (a multiturn request's ``turn``, a LoRA mix's ``model``): the window's
    requests, errors, throughput, output tokens/s, mean prompt tokens, and TTFT, TPOT and latency
    quantiles of its OK requests. ``names``: the column's index names (models)."""
    values: set = set()
    for c in table.chunks([column]):
        values.update(np.unique(c[column][c[column] >= 0]).tolist())
    qs = [p / 100 for p in percentiles]
    rows = []
    for v in sorted(values):
        def sel(c, v=v):
            return _in_window(c, window) & (c[column] == v)
        n = n_ok = tok = tin = n_in = 0
        for c in table.chunks(["start", "ok", "warmup", "tokens_out", "tokens_in", column]):
            m = sel(c)
            ok = m & (c["ok"] == 1)
            n, n_ok = n + int(m.sum()), n_ok + int(ok.sum())
            out, inp = c["tokens_out"][ok], c["tokens_in"][ok]
            tok += int(out[out >= 0].sum())
            tin += int(inp[inp >= 0].sum())
            n_in += int((inp >= 0).sum())
        row = {column: names[v] if names else v, "requests": n, "errors": n - n_ok,
               "throughput": n_ok / window.seconds, "output_tokens_per_second": tok / window.seconds,
               "tokens_in_mean": tin / n_in if n_in else None}
        for name in ("ttft", "tpot", "latency"):
            col = DIST_COLUMNS[name]
            summary = summary_of(table, col, lambda c, sel=sel: sel(c) & (c["ok"] == 1), qs, (column,))
            row.update({f"{name}_{_label(p)}": summary.percentiles.get(q) for p, q in zip(percentiles, qs)})
        rows.append(row)
    return rows


@dataclass
class Totals:
    """OK requests and their token counts (a target's, or every target's)."""
    requests: int = 0
    tokens_out: int = 0
    tokens_in: int = 0
    max_out: int = 0
    max_in: int = 0
    any_out: bool = False
    any_in: bool = False
    items: int = 0                  # vectors (rows) the OK operations carried
    cached: int = 0                 # prompt tokens the engine's usage said it served from its cache
    any_cached: bool = False

    def add(self, other: Totals) -> None:
        self.items += other.items
        self.cached += other.cached
        self.any_cached |= other.any_cached
        self.requests += other.requests
        self.tokens_out += other.tokens_out
        self.tokens_in += other.tokens_in
        self.max_out, self.max_in = max(self.max_out, other.max_out), max(self.max_in, other.max_in)
        self.any_out |= other.any_out
        self.any_in |= other.any_in


@dataclass
class TargetTotals:
    by_target: dict

    def merged(self, target: str | None = None) -> Totals:
        """One target's totals, or every target's together (None)."""
        out = Totals()
        for name, t in self.by_target.items():
            if target is None or name == target:
                out.add(t)
        return out


def ok_totals(table: RequestTable) -> TargetTotals:
    """Per target, the OK requests of the whole run (warm-up included: the engine counted those too)."""
    return ok_totals_between(table)[0]


EDGE_SLOP_S = 0.05   # a completion this close to a counter's sample may land on either side of it


def ok_totals_between(table: RequestTable, between: tuple[float, float] | None = None,
                      reads: tuple[float, float] = (0.0, 0.0)) -> tuple[TargetTotals, TargetTotals]:
    """Per target, the OK requests that completed in ``(a, b]`` (every one when ``between`` is None),
    and the edge: the requests an engine's counter sampled at ``a`` and ``b`` may have counted in part
    or on the other side. A sample is stamped when its scrape began and read by the engine at some
    moment of the scrape (``reads``: how long the scrapes at a and b took), so the edge is every
    request in flight at a moment of ``[t - EDGE_SLOP_S, t + read + EDGE_SLOP_S]``, or completed in it.
    Engines that count tokens as they generate them (vLLM) count part of those; the edge bounds how
    far the two sides may differ."""
    inside: dict = {}
    edge: dict = {}
    for c in table.chunks(["ok", "target", "tokens_out", "tokens_in", "items", "start", "latency_s", "cached_tokens"]):
        ok = c["ok"] == 1
        if between is None:
            sel_in, sel_edge = ok, np.zeros_like(ok)
        else:
            a, b = between
            end = c["start"] + c["latency_s"]
            sel_in = ok & (end > a) & (end <= b)
            sel_edge = np.zeros_like(ok)
            for t, read in zip((a, b), reads):
                sel_edge |= ok & (c["start"] < t + read + EDGE_SLOP_S) & (end >= t - EDGE_SLOP_S)
        for into, sel_all in ((inside, sel_in), (edge, sel_edge)):
            for i in np.unique(c["target"][sel_all]).tolist():
                sel = sel_all & (c["target"] == i)
                out, inp, items = c["tokens_out"][sel], c["tokens_in"][sel], c["items"][sel]
                hit = c["cached_tokens"][sel]
                t = Totals(int(sel.sum()), int(out[out >= 0].sum()), int(inp[inp >= 0].sum()),
                           int(max(out.max(), 0)), int(max(inp.max(), 0)), bool((out >= 0).any()),
                           bool((inp >= 0).any()), int(items[items >= 0].sum()), int(hit[hit >= 0].sum()),
                           bool((hit >= 0).any()))
                into.setdefault(table.targets[i], Totals()).add(t)
    return TargetTotals(inside), TargetTotals(edge)


def errors_in_window(table: RequestTable, window: Window, top: int = 10) -> list[tuple[str, int]]:
    """The most frequent error messages of the window's failed requests."""
    counts: Counter = Counter()
    for c in table.chunks(["error", *ROW_COLUMNS]):
        e = c["error"][_in_window(c, window) & (c["ok"] == 0)]
        idx, n = np.unique(e, return_counts=True)
        for i, k in zip(idx.tolist(), n.tolist()):
            counts[table.errors[i] if i >= 0 else None] += k
    return counts.most_common(top)


def count_in_window(table: RequestTable, window: Window) -> int:
    return sum(int(_in_window(c, window).sum()) for c in table.chunks(["start", "warmup"]))


def latency_points(table: RequestTable, window: Window, limit: int = 20000,
                   column: str = "latency_s") -> list[tuple[float, float]]:
    """(start, value of ``column``: latency, or TTFT) of at most ``limit`` OK requests of the window that
    have it, evenly spread over them (a scatter chart)."""
    columns = tuple(dict.fromkeys(ROW_COLUMNS + (column,)))

    def has(c):
        return _in_window(c, window) & (c["ok"] == 1) & ~np.isnan(c[column].astype(float))
    n_ok = sum(int(has(c).sum()) for c in table.chunks(columns))
    step = max(1, math.ceil(n_ok / limit))
    pts: list[tuple[float, float]] = []
    seen = 0
    for c in table.chunks(columns):
        ok = has(c)
        s, v = c["start"][ok], c[column][ok].astype(float)
        first = (-seen) % step
        pts += list(zip(s[first::step].tolist(), v[first::step].tolist()))
        seen += s.size
    return pts


def histogram(table: RequestTable, window: Window, bins: int = 30) -> tuple[float, float, list[int]]:
    """Latency of the window's OK requests in ``bins`` equal bins: (low, high, counts)."""
    lo, hi = math.inf, -math.inf
    for c in table.chunks(ROW_COLUMNS):
        v = c["latency_s"][_in_window(c, window) & (c["ok"] == 1)]
        if v.size:
            lo, hi = min(lo, float(v.min())), max(hi, float(v.max()))
    if lo > hi:
        return 0.0, 0.0, []
    width = (hi - lo) / bins or 1e-9
    counts = np.zeros(bins, dtype=np.int64)
    for c in table.chunks(ROW_COLUMNS):
        v = c["latency_s"][_in_window(c, window) & (c["ok"] == 1)]
        counts += np.bincount(np.clip(((v - lo) / width).astype(np.int64), 0, bins - 1), minlength=bins)
    return lo, lo + width * bins, counts.tolist()


def replica_rows(table: RequestTable, window: Window, replicas: dict[str, list[str]], kpis: list[KPI],
                 percentiles=(50, 99)) -> list[dict]:
    """Per replica of each replicated service, and in total: the clients' OK requests, errors, throughput,
    output tokens/s and latency quantiles over the window (records name the replica they loaded), beside
    the engine's own counts of that replica (its ``<replica>.service_*_counted`` KPIs). The total's
    quantiles are over every replica's requests together, its counts and rates the replicas' sums."""
    by = {k.kpi: k.value for k in kpis}
    index = {name: i for i, name in enumerate(table.targets)}
    qs = [p / 100 for p in percentiles]
    rows = []
    for group, names in replicas.items():
        ids = [index[n] for n in names if n in index]
        for name, wanted in [*((n, [index[n]] if n in index else []) for n in names), ("total", ids)]:
            def latencies(wanted=wanted):
                for c in table.chunks(["latency_s", "target", *ROW_COLUMNS]):
                    yield c["latency_s"][_in_window(c, window) & (c["ok"] == 1) & np.isin(c["target"], wanted)]
            n = n_ok = tok = 0
            for c in table.chunks(["start", "ok", "warmup", "target", "tokens_out"]):
                m = _in_window(c, window) & np.isin(c["target"], wanted)
                ok = m & (c["ok"] == 1)
                n, n_ok = n + int(m.sum()), n_ok + int(ok.sum())
                out = c["tokens_out"][ok]
                tok += int(out[out >= 0].sum())
            lat = summarise(latencies, qs)
            members = names if name == "total" else [name]
            counted = {what: [by.get(f"{m}.service_{what}_counted") for m in members]
                       for what in ("requests", "output_tokens")}
            rows.append({
                "service": group, "replica": name, "requests_ok": n_ok, "requests_error": n - n_ok,
                "throughput": n_ok / window.seconds, "output_tokens_per_second": tok / window.seconds,
                **{f"latency_{_label(p)}": lat.percentiles.get(q) for p, q in zip(percentiles, qs)},
                **{f"engine_{what}_counted": (sum(v) if v and all(x is not None for x in v) else None)
                   for what, v in counted.items()}})
    return rows
