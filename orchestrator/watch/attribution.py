"""Why did a job end? A verdict and its evidence from state, exit code and log tail (pure)."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass

from orchestrator.cluster.slurm import STATE_CAUSES

# (cause, patterns), checked in this order; the first whose pattern occurs in the log wins
LOG_CAUSES = [
    ("out of memory (CUDA)", [r"CUDA out of memory", r"torch\.cuda\.OutOfMemoryError", r"CUDA_ERROR_OUT_OF_MEMORY",
                              r"cudaErrorMemoryAllocation"]),
    ("out of memory (host)", [r"exceeded memory limit", r"oom[-_ ]kill", r"Out of memory", r"MemoryError",
                              r"Killed process \d+", r"memory cgroup out of memory"]),
    ("time limit", [r"DUE TO TIME LIMIT", r"TIME LIMIT"]),
    ("node failure", [r"DUE TO NODE FAILURE", r"NODE_FAIL", r"node failure"]),
    ("port already in use", [r"[Aa]ddress already in use", r"EADDRINUSE", r"port is already allocated",
                             r"bind\(\) to .* failed"]),
    ("container image pull failure", [r"image pull failed", r"[Uu]nable to pull", r"failed to pull",
                                      r"manifest unknown", r"FATAL:.*(?:pull|fetch).*image", r"pull access denied"]),
    ("missing binary or module", [r"command not found", r"module load .* failed", r"Lmod has detected the following error",
                                  r"[Nn]o module(?:file)?s? .*found", r"exec: .*: not found",
                                  r"No such file or directory"]),
]
ERROR_LINE = re.compile(r"error|exception|fatal|traceback|failed|killed", re.IGNORECASE)


@dataclass(frozen=True)
class Verdict:
    cause: str
    evidence: list[str]

    def to_dict(self) -> dict:
        return asdict(self)

    def line(self) -> str:
        return self.cause + (f" ({self.evidence[-1][:160]})" if self.evidence else "")


def needs_attribution(state: str) -> bool:
    """Ended other than cleanly or by a user's scancel."""
    return state not in ("COMPLETED", "CANCELLED", "PENDING", "RUNNING", "CONFIGURING", "COMPLETING", "SUSPENDED",
                         "REQUEUED", "RESIZING")


def ended_badly(state: str, exit_code: str) -> bool:
    """Ended in a way that deserves a verdict: a failing state, or a non-zero exit code."""
    return needs_attribution(state) or (exit_code or "0:0") != "0:0"


def classify(state: str, exit_code: str, log: str, ever_ready: bool | None = None) -> Verdict:
    """``exit_code`` as SLURM prints it (``3:0``, ``0:9``); ``ever_ready``: False for a
    service whose health check never passed, None when not a service."""
    lines = [l.rstrip() for l in log.splitlines() if l.strip()]
    for cause, patterns in LOG_CAUSES:
        rx = re.compile("|".join(patterns))
        hits = [l for l in lines if rx.search(l)]
        if hits:
            return Verdict(cause, hits[-3:])
    if state in STATE_CAUSES:
        return Verdict(STATE_CAUSES[state], [f"job state {state}"] + lines[-1:])
    code, _, signal = (exit_code or "0:0").partition(":")
    if code == "127":
        return Verdict("missing binary or module", ["exit code 127 (command not found)"] + lines[-1:])
    if code not in ("", "0") or signal not in ("", "0"):
        errors = [l for l in lines if ERROR_LINE.search(l)]
        last = errors[-1] if errors else (lines[-1] if lines else "(empty log)")
        what = f"exit code {code}" if code not in ("", "0") else f"killed by signal {signal}"
        return Verdict(f"non-zero exit: {what}", [last])
    if ever_ready is False:
        return Verdict("health check never passed", [f"job {state} with exit {exit_code or '0:0'} before the "
                                                     f"service's health check ever passed"] + lines[-2:])
    return Verdict(f"ended {state}", lines[-1:])
