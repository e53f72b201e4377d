"""What limited a run: one verdict from the window's own numbers (pure).

Checked in this order, the first that holds is the verdict: errors; the load client (its own CPU
near a full core, or a closed loop whose connections were all busy while the service sat mostly
idle); compute (GPU or CPU at 90% or more); memory; the engine's slots or queue (requests
waiting while GPU and CPU stayed under 80%). Each verdict carries the numbers behind it and what
to try next; "none" says the service kept up with the load offered.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

ERRORS = 0.05              # error rate at or above which errors are the verdict
COMPUTE = 90.0             # % utilisation: compute-bound
QUEUE_IDLE = 80.0          # % utilisation below which waiting requests mean the engine's slots limit
IDLE = 50.0                # % utilisation below which a service counts as mostly idle
CLIENT_CORE = 0.9          # cores of client CPU per client job: the client limits


@dataclass(frozen=True)
class Load:
    """What the clients offered: closed loop (rate None) with ``concurrency`` in flight per job."""
    jobs: int
    concurrency: int
    rate: float | None = None


@dataclass
class Verdict:
    kind: str                   # errors | client | compute | memory | slots | none | unknown
    text: str
    evidence: dict = field(default_factory=dict)
    next: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


def _first(kpis: dict, *names: str):
    for n in names:
        if kpis.get(n) is not None:
            return kpis[n]
    return None


def verdict(kpis: dict, load: Load | None, memory_total: float | None = None) -> Verdict:
    """``kpis``: name -> value of the report (client and Prometheus; a multi-service session's
    prefixed ones are not read); ``memory_total``: bytes of the service's node, when known."""
    err = kpis.get("error_rate")
    tput = kpis.get("throughput")
    cpu = _first(kpis, "cpu_utilisation")
    gpu = _first(kpis, "gpu_utilisation")
    waiting = _first(kpis, "service_requests_waiting_max")
    running = _first(kpis, "service_requests_running_max")
    cpu_per_req = kpis.get("client_overhead_cpu_per_request")
    ev = {k: v for k, v in {"error_rate": err, "throughput": tput, "cpu_utilisation": cpu, "gpu_utilisation": gpu,
                            "service_requests_waiting_max": waiting, "service_requests_running_max": running}.items()
          if v is not None}
    if err is not None and err >= ERRORS:
        return Verdict("errors", f"Bound by errors: {err * 100:.1f}% of the window's requests failed.", ev,
                       "Read the report's errors and the service's log (logs/): the rates above are not its capacity.")
    if load and tput and cpu_per_req is not None:
        cores = tput * cpu_per_req / max(load.jobs, 1)
        if cores >= CLIENT_CORE:
            return Verdict("client", f"Bound by the load client: each client job used {cores:.2f} cores of its own "
                           f"CPU ({cpu_per_req * 1e3:.2f} ms per request at {tput:,.0f} requests/s over "
                           f"{load.jobs} job(s)).", {**ev, "client_cores_per_job": cores},
                           "Spread the load over more client jobs (clients[].nodes).")
    busiest = max([u for u in (cpu, gpu) if u is not None], default=None)
    if load and load.rate is None and busiest is not None and busiest < IDLE and not waiting:
        return Verdict("client", f"Bound by the load client's concurrency: all {load.jobs * load.concurrency} "
                       f"requests in flight were always busy (closed loop) while the service stayed under {IDLE:.0f}% "
                       f"(CPU {_pct(cpu)}, GPU {_pct(gpu)}) with nothing waiting.",
                       {**ev, "in_flight": load.jobs * load.concurrency},
                       "Raise the clients' concurrency (or sweep it) to find the service's limit.")
    if busiest is not None and busiest >= COMPUTE:
        what = "GPU" if gpu is not None and gpu >= COMPUTE else "CPU"
        return Verdict("compute", f"Compute-bound: {what} at {busiest:.0f}% over the window.", ev,
                       f"More or faster {what}s, a smaller model or batch, or more replicas.")
    mem = kpis.get("memory_used_max")
    if mem is not None and memory_total and mem / memory_total >= 0.9:
        return Verdict("memory", f"Bound by memory: {mem / 2**30:.1f} of {memory_total / 2**30:.1f} GiB used at the "
                       "peak.", {**ev, "memory_used_max": mem, "memory_total": memory_total},
                       "More memory per job (resources.mem), or a smaller working set.")
    if waiting and waiting >= 1 and (busiest is None or busiest < QUEUE_IDLE):
        return Verdict("slots", f"Bound by the engine's slots: up to {waiting:.0f} requests waited while "
                       f"{running:.0f} ran, with CPU {_pct(cpu)} and GPU {_pct(gpu)} (under {QUEUE_IDLE:.0f}%)."
                       if running is not None else f"Bound by the engine's slots: up to {waiting:.0f} requests waited "
                       f"with CPU {_pct(cpu)} and GPU {_pct(gpu)}.", ev,
                       "Give the engine more slots (parallel sequences, max_num_seqs, --slots): it has compute to spare.")
    if busiest is None and waiting is None:
        return Verdict("unknown", "No verdict: the monitor reported neither utilisation nor queue for this window.",
                       ev, "Add exporters: [node] (and gpu) to the service recipe.")
    return Verdict("none", "No bottleneck in the window: the service kept up with the load offered "
                   f"(CPU {_pct(cpu)}, GPU {_pct(gpu)}, nothing waiting).", ev,
                   "Offer more load (rate or concurrency) to find its limit.")


def _pct(v) -> str:
    return "absent" if v is None else f"{v:.0f}%"
