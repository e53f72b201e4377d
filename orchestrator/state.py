"""Local state in ``state_dir``: what this tool started, across invocations.

One JSON file per kind of record (``services.json``, ...). Writes go to a
temporary file that replaces the old one (atomic), under an exclusive flock
held for the whole read-modify-write, so two commands running at once never
lose each other's updates. A corrupt file is reported, never overwritten.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Iterator

from orchestrator.errors import StateError
from orchestrator.fileio import NotPrivate, atomic_open, private_dir


class StateStore:
    def __init__(self, state_dir: Path, name: str):
        self.dir = Path(state_dir)
        self.path = self.dir / f"{name}.json"
        self._lock_path = self.dir / f".{name}.lock"

    def _read(self) -> dict:
        try:
            text = self.path.read_text()
        except FileNotFoundError:
            return {}
        except OSError as exc:
            raise StateError(f"{self.path}: cannot read: {exc.strerror}") from None
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise StateError(f"{self.path}: corrupt state file ({exc.msg} at line {exc.lineno}); "
                             f"it was left as is: fix or move it away") from None
        if not isinstance(data, dict):
            raise StateError(f"{self.path}: corrupt state file (expected a JSON object); left as is")
        return data

    def load(self) -> dict:
        """A snapshot of the records (no lock needed: files are only ever replaced whole). An entry that
        is not a record (edited by hand, a foreign tool) is left in the file but not handed out."""
        return {k: v for k, v in self._read().items() if isinstance(v, dict)}

    def get(self, key: str) -> dict | None:
        return self.load().get(key)

    @contextlib.contextmanager
    def transaction(self) -> Iterator[dict]:
        """Read-modify-write under an exclusive lock; written only if the block succeeds and changed
        something."""
        try:
            private_dir(self.dir)   # the records name jobs and job dirs: the user's alone (0700)
            lock = open(self._lock_path, "a+")
        except NotPrivate as exc:
            raise StateError(f"state_dir: {exc}") from None
        except OSError as exc:
            raise StateError(f"{self.dir}: cannot create state dir: {exc.strerror}") from None
        with lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            # temp files are only made under this lock: any found now was left by a writer that died
            for stale in self.dir.glob(f".{self.path.name}.*.tmp"):
                with contextlib.suppress(OSError):
                    stale.unlink()
            data = self._read()
            before = json.dumps(data, sort_keys=True, default=str)  # (C encoder: a fraction of a write)
            yield data
            if json.dumps(data, sort_keys=True, default=str) != before:  # unchanged: no rewrite, no fsync
                self._write(data)

    def _write(self, data: dict) -> None:
        # one record per line: readable, and each line by json's C encoder (indent=2 takes the pure-Python
        # one, 5x slower: a watcher of 10,000 jobs writes this file every poll)
        body = ",\n".join(f"{json.dumps(k)}: {json.dumps(v, sort_keys=True, default=str)}"
                           for k, v in sorted(data.items()))
        with atomic_open(self.path) as f:
            f.write("{\n" + body + "\n}\n" if data else "{}\n")

    def update(self, key: str, **fields) -> dict:
        with self.transaction() as data:
            record = data.setdefault(key, {})
            record.update(fields)
            return dict(record)

    def remove(self, key: str) -> None:
        with self.transaction() as data:
            data.pop(key, None)


# -- typed records ---------------------------------------------------------------------------
@dataclass
class ServiceRecord:
    """What local state knows of a service this tool started (services.json). Fields a later version
    writes and this one does not name are kept in ``other``, so reading never loses them."""
    service_id: str
    recipe: str = ""
    recipe_source: str = ""
    recipe_sha256: str = ""
    job_id: str = ""
    job_dir: str = ""
    state: str = ""
    nodelist: str = ""
    elapsed: str = ""
    exit_code: str = ""
    engine: str | None = None        # whose metric names (engines.py)
    auth: str = ""                   # how the service is locked (recipe field auth)
    role: str = ""                   # monitor | exporter | "" (a service or a load client)
    submitted_at: str = ""
    ready_at: str = ""
    stopped_at: str = ""
    stopped_by_user: bool = False    # scancel'd by --stop-service (a cancel that needs no verdict)
    health_timeout: int | None = None
    verdict: str | None = None
    evidence: list = field(default_factory=list)
    other: dict = field(default_factory=dict)

    @classmethod
    def from_dict(cls, sid: str, d: dict) -> "ServiceRecord":
        return _typed(cls, {"service_id": sid, **d})


@dataclass
class MonitorRecord:
    """A monitor this tool started (monitors.json): its scrape targets and the exporter jobs it began."""
    monitor_id: str
    job_id: str = ""
    targets: list = field(default_factory=list)
    scrape_interval: str = ""
    retention_time: str = ""
    exporter_jobs: list = field(default_factory=list)
    submitted_at: str = ""
    started_at: str = ""
    stopped_at: str = ""
    other: dict = field(default_factory=dict)

    @classmethod
    def from_dict(cls, mid: str, d: dict) -> "MonitorRecord":
        return _typed(cls, {"monitor_id": mid, **d})


def _typed(cls, d: dict):
    names = {f.name for f in fields(cls)} - {"other"}
    known = {k: v for k, v in d.items() if k in names and v is not None}
    return cls(**known, other={k: v for k, v in d.items() if k not in names})
