"""Waiting for services: until one is ready, until jobs have ended.

A wait is one remote command however long it lasts: the login node repeats the probe and the
rounds stream back (``ServersModule.probe_rounds``, ``cluster.streaming``); the progress lines are
said as the rounds arrive.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from orchestrator import waiting
from orchestrator.cluster.slurm import TERMINAL_STATES
from orchestrator.errors import ServiceNotReady
from orchestrator.services.probe import Probe


def wait_until_ready(rounds: Iterator[Probe], ident: str, timeout: float, progress: Callable[[str], None] | None,
                     last_lines: Callable[[], str]) -> Probe:
    """Until a round (a probe with health) finds the job RUNNING and its health probe answering.

    A job that ends first raises with ``last_lines()`` of its log; a timeout leaves the job running
    and says so."""
    last: list[Probe] = []

    def step(p: Probe) -> tuple[bool, str]:
        last[:] = [p]
        state = p.job.state if p.job else "UNKNOWN"
        if state in TERMINAL_STATES:
            tail = last_lines()
            raise ServiceNotReady(f"service {p.service_id} (job {p.job_id}) ended {state} "
                                  f"before it was ready; last lines of its log:\n{tail}")
        static = p.endpoint["static"] if p.endpoint else {}
        if state == "RUNNING" and p.endpoint and (p.healthy or not (static.get("health_path")
                                                                    or static.get("health_tcp"))):
            return True, f"{p.service_id} ready at {p.health_url or p.endpoint['node']}"
        if state == "PENDING":
            return False, f"{p.service_id}: pending ({p.job.reason or 'queued'})"
        if state == "RUNNING":
            return False, (f"{p.service_id}: starting on {p.job.nodelist}" +
                           (f", health {p.health_url} -> {p.health_code}" if p.health_url else ""))
        return False, f"{p.service_id}: {state}"

    def timed_out() -> ServiceNotReady:
        p = last[0] if last else None
        state = p.job.state if p and p.job else "UNKNOWN"
        sid = p.service_id if p else ident
        return ServiceNotReady(f"service {sid} (job {p.job_id if p else '?'}) not ready after {timeout:.0f}s "
                               f"({state}); the job was left running: stop it with --stop-service {sid}")

    waiting.follow(rounds, step, timeout=timeout, say=progress, on_timeout=timed_out)
    return last[0]


def wait_until_ended(probe_many: Callable[[list[str]], list[Probe]], service_ids: list[str], timeout: float,
                     poll: float) -> list[str]:
    """Until every job has left the running states (after a scancel); returns those still running."""
    left = list(service_ids)

    def step() -> tuple[bool, str]:
        left[:] = [p.service_id for p in probe_many(left)
                   if p.job is not None and p.job.state not in TERMINAL_STATES] if left else []
        return not left, ""

    try:
        waiting.poll_until(step, timeout=timeout, interval=poll, on_timeout=lambda: TimeoutError())
    except TimeoutError:
        pass
    return left
