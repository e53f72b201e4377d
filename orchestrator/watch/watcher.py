"""`watch`: follow jobs to their end, say why they ended, serve status over HTTP.

One remote command per poll: squeue for the watched jobs, and, in the same
command, scontrol (or sacct) only for the tracked jobs that left the queue.
Jobs that ended other than by a user's scancel get their log tail fetched once;
the verdict is stored with the job (and on the service), so a restarted
watcher reports nothing twice. A failing poll (slurmctld briefly down) is
logged and retried at the next interval, never fatal.
"""

from __future__ import annotations

import json
import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable

from orchestrator import waiting
from orchestrator.cluster import jobdir
from orchestrator.cluster.remote import Marker
from orchestrator.cluster.shell import path as remote_path
from orchestrator.cluster.shell import quote
from orchestrator.cluster.slurm import TERMINAL_STATES, JobPoller, Poll, parse_job_ids
from orchestrator.errors import OrchestratorError, SlurmError
from orchestrator.services.probe import SERVICE_ID_RE
from orchestrator.services.servers import ServersModule
from orchestrator.state import ServiceRecord, StateStore
from orchestrator.times import now_iso
from orchestrator.watch.attribution import classify, ended_badly

Log = Callable[..., None]


def split_partitions(text: str) -> list[str]:
    """``gpu,gpu_long`` or, as seed 003 writes them, ``"gpu gpu_long"``."""
    return [p for p in re.split(r"[,\s]+", text.strip()) if p]


@dataclass
class WatchOptions:
    interval: float = 30.0
    partitions: list[str] = field(default_factory=list)
    user: str | None = None
    job_pattern: str | None = None
    log_lines: int = 60
    attrsvc_url: str | None = None   # POST each failed job's verdict and log tail there (seed 003)
    timeout: float = 60.0            # per attribution-service request
    post_all: bool = False           # POST every ended job, not only the failed ones (seed 003's service)

    @classmethod
    def from_env(cls, env, **flags) -> "WatchOptions":
        """ORCH_WATCH_* variables (or seed 003's NVRX_SMONSVC_*; NVRX_ATTRSVC_URL as its quick start
        exports it), then flags (flags win)."""
        def var(name: str) -> str | None:
            return env.get(f"ORCH_WATCH_{name}") or env.get(f"NVRX_SMONSVC_{name}") or None

        def seconds(name: str) -> float | None:
            text = var(name)
            try:
                return float(text) if text else None
            except ValueError:
                raise OrchestratorError(f"$ORCH_WATCH_{name}: expected seconds, got {text!r}") from None
        o = cls()
        o.interval = seconds("INTERVAL") or o.interval
        o.timeout = seconds("TIMEOUT") or o.timeout
        o.partitions = split_partitions(var("PARTITIONS") or "")
        o.user = var("USER")
        o.job_pattern = var("JOB_PATTERN")
        o.attrsvc_url = var("ATTRSVC_URL") or env.get("NVRX_ATTRSVC_URL") or None
        o.post_all = (var("POST_ALL") or "").strip().lower() in ("1", "true", "yes", "on")
        for k, v in flags.items():
            if v not in (None, (), []):
                setattr(o, k, list(v) if k == "partitions" else v)
        if o.job_pattern:
            try:
                re.compile(o.job_pattern)
            except re.error as exc:
                raise OrchestratorError(f"--job-pattern: not a valid regular expression: {exc}") from None
        if o.interval <= 0:
            raise OrchestratorError("--interval: expected a positive number of seconds")
        if o.timeout <= 0:
            raise OrchestratorError("--timeout: expected a positive number of seconds")
        if o.attrsvc_url:
            from orchestrator.watch.attrsvc import check_url
            try:
                o.attrsvc_url = check_url(o.attrsvc_url)
            except ValueError as exc:
                raise OrchestratorError(str(exc)) from None
        return o


@dataclass(frozen=True)
class Seen:
    """What one poll learned of a job, whichever way it was learned: in the queue, from its final record
    (scontrol or sacct) once it left it, or from our own service record when SLURM no longer knows it."""
    name: str = ""
    state: str = ""
    nodelist: str = ""
    reason: str = ""
    partition: str = ""
    user: str = ""
    exit_code: str = ""
    stdout: str = ""
    elapsed: str = ""

    @classmethod
    def queued(cls, job) -> "Seen":
        return cls(name=job.name, state=job.state, nodelist=job.nodelist, reason=job.reason,
                   partition=job.partition, user=job.user)

    @classmethod
    def ended(cls, job) -> "Seen":
        return cls(name=job.name, state=job.state, nodelist=job.nodelist, reason=job.reason, partition=job.partition,
                   user=job.user, exit_code=job.exit_code, stdout=job.stdout, elapsed=job.elapsed)

    def known(self) -> dict[str, str]:
        """The fields it knows, for the job's record (an unknown one never overwrites what was known)."""
        return {k: v for k, v in self.__dict__.items() if v not in (None, "")}


@dataclass
class WatchStats:
    started: float = field(default_factory=time.time)
    polls: int = 0
    errors: int = 0
    last_poll: float | None = None
    last_error: str | None = None
    reports: int = 0
    attrsvc_posted: int = 0
    attrsvc_failed: int = 0


class StatusServer(ThreadingHTTPServer):
    request_queue_size = 128  # dashboards and probes polling together: above Python's default of 5
    daemon_threads = True


class Watcher:
    def __init__(self, config, transport, servers: ServersModule, options: WatchOptions, log: Log):
        self.config = config
        self.transport = transport
        self.servers = servers
        self.options = options
        self.log = log
        self.store = StateStore(config.state_dir, "watch")
        self.stats = WatchStats()
        self.lock = threading.Lock()
        self.stop_event = threading.Event()
        self._last_poll_clock = ""   # the cluster's clock at the last poll: what ended after it is news
        self.attrsvc = None
        if options.attrsvc_url:
            from orchestrator.watch.attrsvc import AttrsvcClient
            self.attrsvc = AttrsvcClient(options.attrsvc_url, timeout=options.timeout)

    # -- what to watch --------------------------------------------------------------
    def _ours(self) -> dict[str, ServiceRecord]:
        """The tool's services by job ID (of two records of one job ID, a reused one, the later)."""
        return {rec.job_id: rec for rec in self.servers.registry.records().values() if rec.job_id}

    def _matches_filters(self, job) -> bool:
        o = self.options
        if not (o.partitions or o.user or o.job_pattern):
            return False
        if o.partitions and not set(job.partition.split(",")) & set(o.partitions):
            return False
        if o.user and job.user != o.user:
            return False
        if o.job_pattern and not re.search(o.job_pattern, job.name):
            return False
        return True

    # -- one poll ---------------------------------------------------------------------
    def poll(self) -> list[dict]:
        """One poll; returns the verdicts reported by it."""
        with self.lock:
            self.stats.polls += 1
            self.stats.last_poll = time.time()
        jobs = self.store.load()
        ours = self._ours()
        # ...and ours seen ended (by --status, say) with no verdict yet: the same command reads their exit code
        unexplained = {j for j, r in ours.items() if r.state in TERMINAL_STATES and not r.verdict
                       and not (jobs.get(j) or {}).get("attributed")}
        open_ids = sorted({j for j, r in jobs.items() if r.get("state") not in TERMINAL_STATES}
                          | {j for j, r in ours.items() if r.state not in TERMINAL_STATES and j not in jobs}
                          | unexplained)
        o = self.options
        try:
            poller = JobPoller(self.transport)
            # every state: a job that started and ended since the last poll (a missing module, a bad path,
            # an OOM at load: the most common failures) is still listed, for SLURM's MinJobAge
            poll = poller.poll(open_ids, user=o.user, partitions=o.partitions,
                               mine=not (o.partitions or o.job_pattern), all_states=True, lookback=o.interval)
            # what ended since the last poll (the first looks back one interval, as a running watcher
            # would have), in the cluster's own clock; what ended before is not this watcher's to explain
            since = self._last_poll_clock or poll.since
            self._last_poll_clock = poll.now or self._last_poll_clock
            old = {j.job_id for j in poll.queued if j.state in TERMINAL_STATES and j.job_id not in jobs
                   and j.job_id not in open_ids and (not j.end_time or j.end_time < since)}
            queued = [j for j in poll.queued if j.job_id not in old]
            # those that no record explains yet: their final records (exit code, log path), one command
            fresh = sorted({j.job_id for j in queued if j.state in TERMINAL_STATES
                            and not (jobs.get(j.job_id) or {}).get("attributed") and j.job_id not in poll.ended
                            and (j.job_id in ours or SERVICE_ID_RE.match(j.name) or self._matches_filters(j))})
            poll = Poll(queued, {**poll.ended, **(poller.final_records(fresh) if fresh else {})}, poll.now, poll.since)
        except SlurmError as exc:
            raise OrchestratorError(str(exc)) from None
        now = now_iso()
        seen: dict[str, Seen] = {}
        # a job ID of our records is ours only while the job carries that service's name (IDs are reused)
        names = {j.job_id: j.name for j in (*poll.queued, *poll.ended.values())}
        ours = {jid: svc for jid, svc in ours.items() if names.get(jid, svc.service_id) == svc.service_id}
        for job in poll.queued:
            if not (job.job_id in ours or SERVICE_ID_RE.match(job.name) or self._matches_filters(job)):
                continue
            if job.job_id in poll.ended:   # listed ended: its final record (below) knows more
                continue
            for jid in parse_job_ids(job.job_id):  # an array summary becomes its tasks
                seen[str(jid)] = Seen.queued(job)
        for jid, job in poll.ended.items():
            seen[jid] = Seen.ended(job)
        # one of those that SLURM no longer knows is explained from what its record says
        for jid, svc in ours.items():
            if jid in unexplained and jid not in seen:
                seen[jid] = Seen(name=svc.service_id, state=svc.state, nodelist=svc.nodelist,
                                 exit_code=svc.exit_code, elapsed=svc.elapsed)
        ended = []
        with self.store.transaction() as data:
            for jid, info in seen.items():
                rec = data.get(jid)
                if rec is not None and rec.get("name") and info.name and rec["name"] != info.name:
                    rec = None   # the ID was reused: a new job, whose record starts afresh
                if rec is None:
                    rec = data[jid] = {"job_id": jid, "first_seen": now}
                if jid in ours:
                    rec["service_id"] = ours[jid].service_id
                if info.state in TERMINAL_STATES and rec.get("state") not in TERMINAL_STATES:
                    rec["ended_at"] = now
                rec.update(info.known())
                if (rec["state"] in TERMINAL_STATES and not rec.get("attributed")
                        and ended_badly(rec["state"], rec.get("exit_code", ""))):
                    ended.append(jid)
                elif rec["state"] in TERMINAL_STATES and not rec.get("attributed"):
                    rec.update(attributed=True, verdict="cancelled" if rec["state"] == "CANCELLED" else "completed",
                               evidence=[])
                    if self.attrsvc is not None and o.post_all:   # its log is the service's to read
                        rec.update(attrsvc="pending", log_path=rec.get("stdout", ""), log_tail="")
            for jid in open_ids:  # left the queue with no record anywhere (MinJobAge passed, no sacct)
                if jid not in seen and jid in data and data[jid].get("state") not in TERMINAL_STATES:
                    data[jid].update(state="UNKNOWN_ENDED", attributed=True,
                                     verdict="left the queue; no record remains (no sacct, MinJobAge passed)")
        self.log(f"poll: {len(seen)} jobs seen, {len(open_ids)} open, {len(ended)} newly ended", level="debug")
        reported = self._attribute(ended, ours) if ended else []
        reported += self._check_unhealthy(ours)
        if self.attrsvc is not None:
            self._post_pending()
            self._fetch_results()
        return reported

    RESULT_POLLS = 20   # a posted job's result is asked for at this many polls, then given up

    def _fetch_results(self) -> None:
        """Each posted job's attribution result (seed 003's ``GET /logs/result``), stored with the job
        (``/jobs`` and ``watch --json`` show it); asked again at later polls until the service has it."""
        waiting_for = {jid: rec for jid, rec in self.store.load().items()
                       if rec.get("attrsvc") == "posted" and "attrsvc_result" not in rec
                       and rec.get("attrsvc_result_polls", 0) < self.RESULT_POLLS}
        for jid, rec in sorted(waiting_for.items()):
            state, doc, detail = self.attrsvc.fetch_result(rec.get("log_path", ""), jid)
            with self.store.transaction() as data:
                r = data.get(jid)
                if r is None:
                    continue
                r["attrsvc_result_polls"] = r.get("attrsvc_result_polls", 0) + 1
                if state == "done":
                    r["attrsvc_result"] = doc
                elif state == "failed" or r["attrsvc_result_polls"] >= self.RESULT_POLLS:
                    r["attrsvc_result"] = None
                    r["attrsvc_result_detail"] = detail
            self.log(f"job {jid}: attribution result {state} ({detail})", level="debug", job_id=jid)

    ATTRSVC_POLLS = 10   # a verdict the service keeps failing to take is retried at this many polls

    def _post_pending(self) -> None:
        """POST every verdict not yet taken by the attribution service (a restarted watcher posts
        nothing twice: watch.json says which were)."""
        from orchestrator.watch.attrsvc import verdict_body
        pending = {jid: rec for jid, rec in self.store.load().items() if rec.get("attrsvc") == "pending"}
        for jid, rec in sorted(pending.items()):
            res = self.attrsvc.post(verdict_body(rec, rec.get("log_path", ""), rec.get("log_tail", "")))
            tries = rec.get("attrsvc_polls", 0) + 1
            with self.store.transaction() as data:
                r = data.get(jid)
                if r is None:
                    continue
                if res.ok or res.final or tries >= self.ATTRSVC_POLLS:
                    r["attrsvc"] = "posted" if res.ok else f"not taken: {res.detail}"
                    r.pop("log_tail", None)
                else:
                    r["attrsvc_polls"] = tries
                r["attrsvc_detail"] = res.detail
            with self.lock:
                if res.ok:
                    self.stats.attrsvc_posted += 1
                else:
                    self.stats.attrsvc_failed += 1
            if res.ok:
                self.log(f"job {jid}: verdict posted to {self.attrsvc.url} ({res.detail})", level="debug", job_id=jid)
            else:
                self.log(f"job {jid}: attribution service did not take the verdict: {res.detail}"
                         + ("" if res.final else " (retried at the next poll)"), level="warning", job_id=jid)

    def _check_unhealthy(self, ours: dict) -> list[dict]:
        """Services RUNNING past their health timeout: probe them (one command); say so once if unhealthy."""
        jobs = self.store.load()
        now = waiting.now()
        starting = [jid for jid, rec in jobs.items() if rec.get("state") == "RUNNING" and "running_since" not in rec]
        due = []
        for jid, rec in jobs.items():
            svc = ours.get(jid)
            if rec.get("state") != "RUNNING" or not svc or svc.health_timeout is None:
                continue
            if svc.ready_at or rec.get("healthy_seen") or rec.get("health_warned"):
                continue
            since = rec.setdefault("running_since", now)
            if now - since > svc.health_timeout:
                due.append((jid, svc.service_id))
        if starting:
            with self.store.transaction() as data:  # remember when each was first seen running
                for jid in starting:
                    if jid in data and "running_since" not in data[jid]:
                        data[jid]["running_since"] = now
        if not due:
            return []
        probes = self.servers.probe_many([sid for _, sid in due], health=True)
        out = []
        with self.store.transaction() as data:
            for (jid, sid), p in zip(due, probes):
                if p.healthy:
                    data[jid]["healthy_seen"] = True
                    continue
                data[jid].update(health_warned=True, verdict="health check never passed (still running)",
                                 evidence=[f"{p.health_url or 'no endpoint'} -> {p.health_code or 'no answer'}"])
                out.append({"job_id": jid, "service_id": sid, "cause": data[jid]["verdict"],
                            "evidence": data[jid]["evidence"]})
        for r in out:
            self.servers.registry.record_verdict(r["service_id"], r["cause"], r["evidence"])
            self.log(f"job {r['job_id']} ({r['service_id']}) still running but its health check never passed: "
                     f"{r['evidence'][0]}", level="warning", job_id=r["job_id"], service_id=r["service_id"],
                     verdict=r["cause"])
        return out

    def _attribute(self, jids: list[str], ours: dict) -> list[dict]:
        """Fetch the log tail of each newly ended job once (one remote command), classify, store."""
        jobs = self.store.load()
        paths, foreign, raw_paths = {}, {}, {}
        for jid in jids:
            rec = jobs[jid]
            if rec.get("service_id"):
                raw_paths[jid] = f"{self.servers.job_dir(rec['service_id'])}/{jobdir.log_name(jid)}"
                paths[jid] = remote_path(raw_paths[jid])
            elif rec.get("stdout"):
                raw_paths[jid] = rec["stdout"]
                paths[jid] = quote(rec["stdout"])
                foreign[jid] = jid   # (its user is asked of squeue where the file is read)
        mark = Marker()
        script = jobdir.log_tails_script(paths, self.options.log_lines, mark, foreign)
        out = self.transport.run(script, timeout=60).stdout if paths else ""
        logs = {sec.args[0]: sec.text for sec in mark.parse(out) if sec.name == "log" and sec.args}
        reported = []
        svc_records = self.servers.registry.records()
        with self.store.transaction() as data:
            for jid in jids:
                rec = data[jid]
                sid = rec.get("service_id")
                ever_ready = None
                if sid in svc_records and svc_records[sid].health_timeout is not None:
                    ever_ready = bool(svc_records[sid].ready_at or rec.get("healthy_seen"))
                v = classify(rec["state"], rec.get("exit_code", ""), logs.get(jid, ""), ever_ready)
                rec.update(attributed=True, verdict=v.cause, evidence=v.evidence, attributed_at=now_iso())
                if self.attrsvc is not None:   # posted after this transaction; kept until taken
                    rec.update(attrsvc="pending", log_tail=logs.get(jid, ""), log_path=raw_paths.get(jid, ""))
                reported.append({"job_id": jid, "service_id": sid, "name": rec.get("name"), "state": rec["state"],
                                 "nodelist": rec.get("nodelist", ""), "elapsed": rec.get("elapsed", ""), **v.to_dict()})
        for r in reported:
            if r["service_id"] and r["service_id"] in svc_records:
                self.servers.registry.record_verdict(r["service_id"], r["cause"], r["evidence"],
                                            state=r["state"], nodelist=r["nodelist"], elapsed=r["elapsed"])
            with self.lock:
                self.stats.reports += 1
            self.log(f"job {r['job_id']} ({r['name']}) ended {r['state']}: {r['cause']}"
                     + (f" | {r['evidence'][-1]}" if r["evidence"] else ""),
                     level="warning", job_id=r["job_id"], service_id=r["service_id"], verdict=r["cause"])
        return reported

    # -- the loop -------------------------------------------------------------------------
    def run(self, count: int | None = None) -> None:
        n = 0
        while not self.stop_event.is_set():
            try:
                self.poll()
            except Exception as exc:  # transient (a controller restart, a dropped connection): retried next interval
                msg = str(exc) if isinstance(exc, OrchestratorError) else f"{type(exc).__name__}: {exc}"
                with self.lock:
                    self.stats.errors += 1
                    self.stats.last_error = msg
                self.log(f"poll failed (will retry in {self.options.interval:g}s): {msg}", level="error")
            n += 1
            if count is not None and n >= count:
                return
            self.stop_event.wait(self.options.interval)

    # -- status -----------------------------------------------------------------------------
    def jobs(self) -> list[dict]:
        return sorted(self.store.load().values(), key=lambda r: r["job_id"])

    def stats_doc(self) -> dict:
        by_state: dict[str, int] = {}
        for r in self.jobs():
            by_state[r.get("state", "UNKNOWN")] = by_state.get(r.get("state", "UNKNOWN"), 0) + 1
        with self.lock:
            s = self.stats
            return {"started": s.started, "polls": s.polls, "errors": s.errors, "last_poll": s.last_poll,
                    "last_error": s.last_error, "reports": s.reports, "jobs_by_state": by_state,
                    "attrsvc_url": self.options.attrsvc_url, "attrsvc_posted": s.attrsvc_posted,
                    "attrsvc_failed": s.attrsvc_failed,
                    "interval": self.options.interval}

    def metrics_text(self) -> str:
        st = self.stats_doc()
        out = ["# TYPE orch_watch_polls_total counter", f"orch_watch_polls_total {st['polls']}",
               "# TYPE orch_watch_poll_errors_total counter", f"orch_watch_poll_errors_total {st['errors']}",
               "# TYPE orch_watch_reports_total counter", f"orch_watch_reports_total {st['reports']}",
               "# TYPE orch_watch_last_poll_timestamp_seconds gauge",
               f"orch_watch_last_poll_timestamp_seconds {st['last_poll'] or 0}",
               "# TYPE orch_watch_jobs gauge"]
        out += [f'orch_watch_jobs{{state="{k}"}} {v}' for k, v in sorted(st["jobs_by_state"].items())]
        return "\n".join(out) + "\n"

    def serve(self, port: int) -> ThreadingHTTPServer:
        watcher = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                from orchestrator.localhttp import host_allowed
                if not host_allowed(self.headers.get("Host"), self.server.server_address[1]):
                    self.send_error(403, "Host must be 127.0.0.1 or localhost (DNS rebinding)")
                    return
                try:
                    body, ctype, code = self._answer(self.path.split("?")[0])
                except Exception as exc:  # a broken request must not kill the connection silently
                    body, ctype, code = json.dumps({"error": f"{type(exc).__name__}: {exc}"}), "application/json", 500
                data = body.encode()
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _answer(self, path: str):
                if path == "/healthz":
                    st = watcher.stats_doc()
                    stale = st["last_poll"] is not None and time.time() - st["last_poll"] > 3 * st["interval"] + 120
                    body, ctype, code = json.dumps({"ok": not stale, "last_poll": st["last_poll"]}), "application/json", 200 if not stale else 503
                elif path == "/stats":
                    body, ctype, code = json.dumps(watcher.stats_doc()), "application/json", 200
                elif path == "/jobs":
                    body, ctype, code = json.dumps(watcher.jobs()), "application/json", 200
                elif path == "/metrics":
                    body, ctype, code = watcher.metrics_text(), "text/plain; version=0.0.4", 200
                else:
                    body, ctype, code = json.dumps({"error": "not found", "paths": ["/healthz", "/stats", "/jobs", "/metrics"]}), "application/json", 404
                return body, ctype, code

            def log_message(self, *a):
                pass

        server = StatusServer(("127.0.0.1", port), Handler)  # localhost only
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, daemon=True).start()
        return server
