"""Posting verdicts to an attribution service (seed 003's ``--attrsvc-url``).

The body is what NVIDIA's nvrx-attrsvc takes at ``POST /logs`` (``log_path``, ``user``, ``job_id``:
it reads the log itself when it runs where the log is), plus what the watcher already knows, so a
service that cannot read the cluster's files still has the log's tail and the local cause. A 5xx,
a 429 or a refused connection is retried (a Retry-After is honoured up to a cap); any other 4xx is
final. Standard library only: one POST per ended job, each bounded by ``timeout``.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Callable

MAX_RETRY_AFTER = 60.0


@dataclass
class PostResult:
    ok: bool
    final: bool          # no point retrying (posted, or refused with a 4xx)
    detail: str


def check_url(url: str) -> str:
    """The base URL, validated: http(s) with a host."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"--attrsvc-url: expected http://host:port or https://..., got {url!r}")
    return url.rstrip("/")


class AttrsvcClient:
    def __init__(self, base_url: str, timeout: float = 60.0, attempts: int = 3, retry_delay: float = 5.0,
                 sleep: Callable[[float], None] = time.sleep):
        self.url = check_url(base_url) + "/logs"
        self.timeout = timeout
        self.attempts = attempts
        self.retry_delay = retry_delay
        self.sleep = sleep

    def post(self, body: dict) -> PostResult:
        data = json.dumps(body, default=str).encode()
        last = ""
        for attempt in range(1, self.attempts + 1):
            req = urllib.request.Request(self.url, data=data, method="POST",
                                         headers={"Content-Type": "application/json", "Accept": "application/json"})
            wait = self.retry_delay
            try:
                with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                    return PostResult(True, True, f"HTTP {resp.status}")
            except urllib.error.HTTPError as exc:
                text = exc.read(300).decode(errors="replace").strip()
                last = f"HTTP {exc.code}" + (f": {text}" if text else "")
                if exc.code != 429 and exc.code < 500:
                    return PostResult(False, True, last)
                retry_after = exc.headers.get("Retry-After") if exc.headers else None
                if retry_after:
                    try:
                        wait = min(float(retry_after), MAX_RETRY_AFTER)
                    except ValueError:
                        pass
            except (urllib.error.URLError, OSError) as exc:   # refused, unreachable, timed out
                last = str(getattr(exc, "reason", exc))
            if attempt < self.attempts:
                self.sleep(wait)
        return PostResult(False, False, f"{last} (after {self.attempts} attempts)")


    def fetch_result(self, log_path: str, job_id: str) -> tuple[str, dict | None, str]:
        """Seed 003's ``GET /logs/result`` for a posted job: ("done", its JSON, detail) once the service
        has one; ("pending", None, detail) while it answers 202, 204 or 404 (not yet analysed) or cannot
        be reached; ("failed", None, detail) for another 4xx or an answer that is not JSON. One request,
        bounded by ``timeout``: the next poll asks again."""
        query = urllib.parse.urlencode({"log_path": log_path, "job_id": job_id})
        req = urllib.request.Request(f"{self.url}/result?{query}", headers={"Accept": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                if resp.status in (202, 204):
                    return "pending", None, f"HTTP {resp.status}"
                raw = resp.read(1 << 20)
        except urllib.error.HTTPError as exc:
            state = "pending" if exc.code in (404, 429) or exc.code >= 500 else "failed"
            return state, None, f"HTTP {exc.code}"
        except (urllib.error.URLError, OSError) as exc:
            return "pending", None, str(getattr(exc, "reason", exc))
        try:
            doc = json.loads(raw)
        except ValueError:
            return "failed", None, "the result is not JSON"
        return ("done", doc, "HTTP 200") if isinstance(doc, dict) else ("failed", None, "the result is not an object")


def verdict_body(job: dict, log_path: str, log_tail: str) -> dict:
    """What is posted for one ended job."""
    return {"log_path": log_path, "user": job.get("user") or "unknown", "job_id": job["job_id"],
            "job_name": job.get("name"), "service_id": job.get("service_id"), "state": job.get("state"),
            "exit_code": job.get("exit_code"), "nodelist": job.get("nodelist"), "cause": job.get("verdict"),
            "evidence": job.get("evidence") or [], "log_tail": log_tail}
