"""A session's last phase: every job it started cancelled, or recorded with the one command that cancels it."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

from orchestrator import waiting
from orchestrator.bench.context import SessionContext
from orchestrator.errors import TransportError
from orchestrator.fileio import write_atomic

LEFT_RUNNING = "LEFT_RUNNING.json"   # jobs a session could not cancel, and how to
CLEANUP_PATIENCE = 60.0              # seconds of retries before a cleanup gives up


class Cleanup:
    """The last phase: every job the session started (the context's state.started, and submissions that
    got no answer) cancelled, or recorded in LEFT_RUNNING.json with the one command that cancels it."""

    def __init__(self, ctx: SessionContext):
        self.ctx = ctx

    def run(self) -> None:
        """Cancel every job this session started, in one command; while the cluster cannot be reached,
        retry with backoff (about a minute), then record what is left and the one command that cancels it.
        Jobs whose submission got no answer count too (they may exist)."""
        left = list(dict.fromkeys(self.ctx.state.started + self.ctx.orch.servers.submitted_since(self.ctx.attempted_from)))
        if not left:
            return
        delay, waited = 1.0, 0.0
        while True:
            try:
                result = self.ctx.orch.servers.cancel_many(left)
                refused = {sid: r for sid, r in result.items() if r.startswith("refused")}
                for sid, r in refused.items():
                    self.ctx.state.errors.append(f"{sid}: not cancelled: its job ID now names another job ({r})")
                self._left_file().unlink(missing_ok=True)
                return
            except (TransportError, OSError) as exc:
                if waited >= CLEANUP_PATIENCE:
                    self._record_left(left, exc)
                    return
                self.ctx.say(f"cluster unreachable ({exc}); retrying the cleanup in {delay:.0f}s")
                waiting.sleep(delay)
                waited += delay
                delay = min(delay * 2, 16.0)
                with contextlib.suppress(Exception):
                    self.ctx.orch.transport.close()  # the next call opens a fresh connection

    def _left_file(self) -> Path:
        return self.ctx.state.out_dir / LEFT_RUNNING

    def _record_left(self, left: list[str], exc: BaseException) -> None:
        tracked = self.ctx.orch.servers.registry.records()
        jobs = [{"service_id": sid, "job_id": tracked[sid].job_id if sid in tracked else None} for sid in left]
        self.ctx.state.out_dir.mkdir(parents=True, exist_ok=True)
        write_atomic(self._left_file(), json.dumps({"session": self.ctx.state.session_id, "reason": str(exc),
                                                    "jobs": jobs}, indent=2))
        self.ctx.say(f"could not reach the cluster to cancel {len(jobs)} job(s) ({exc}); they are recorded in "
                 f"{self._left_file()}; cancel them with: orch bench cleanup {self.ctx.state.out_dir}")
        self.ctx.state.errors.append(f"jobs left running (cluster unreachable): {', '.join(left)}")
