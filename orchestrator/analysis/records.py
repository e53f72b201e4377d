"""Request records as columns on disk, so that KPIs of millions of requests run in bounded memory.

A session reads each client's JSON lines once: every record goes to requests.jsonl (fields in
a fixed order) and its numbers to one binary file per column; no list of dicts is ever held.
KPIs, charts and cross-checks then read the columns back in chunks of ``CHUNK`` rows.

Absent values: NaN in float columns, -1 in integer ones. The gaps between streamed chunks
(ITL samples) are one flat float32 column, with each request's count in ``ngaps``: float32
keeps the microsecond the client records exact for gaps under 8 s and halves the bytes of
the largest column.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import weakref
import tempfile
from array import array
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO

import numpy as np

from orchestrator.errors import OrchestratorError

# column -> (numpy dtype, array typecode)
SCALARS = {
    "start": ("f8", "d"), "latency_s": ("f8", "d"), "ttft_s": ("f8", "d"), "tpot_s": ("f8", "d"),
    "client_cpu_s": ("f8", "d"), "tokens_in": ("i8", "q"), "tokens_out": ("i8", "q"),
    "ok": ("u1", "B"), "warmup": ("u1", "B"), "retried": ("u1", "B"),
    "target": ("i4", "i"), "error": ("i4", "i"), "ngaps": ("i4", "i"),
    "op": ("i4", "i"), "bytes": ("i8", "q"),     # data services: the operation (get, set, ...), its bytes,
    "items": ("i8", "q"), "recall": ("f8", "d"),  # the vectors in it, a query's recall@k
    # open loop: when the schedule meant to send it, and how long it waited for a free slot
    "scheduled": ("f8", "d"), "queued_s": ("f8", "d"),
    # prompt tokens the engine served from its prefix cache (usage), a multiturn request's place
    "cached_tokens": ("i8", "q"), "conversation": ("i8", "q"), "turn": ("i8", "q"),
    "model": ("i4", "i"),                         # the model (a LoRA mix) the request named
}
GAPS = ("f4", "f")
CHUNK = 1 << 16
FLUSH = 1 << 16
REQUEST_FIELDS = ["start", "latency_s", "ttft_s", "tpot_s", "status", "ok", "tokens_in", "tokens_out", "error"]
_FLOATS = ("ttft_s", "tpot_s", "client_cpu_s", "recall", "scheduled", "queued_s")
_INTS = ("tokens_in", "tokens_out", "bytes", "items", "cached_tokens", "conversation", "turn")
_NAN = float("nan")


def normalise(rec: dict) -> dict:
    """A record with the fields every report reads first, in one order."""
    row = {k: rec.get(k) for k in REQUEST_FIELDS}
    row.update({k: v for k, v in rec.items() if k not in row})
    return row


def jsonl_line(rec: dict, extra: dict, raw: str | None = None) -> str:
    """requests.jsonl's line for ``{**rec, **extra}``. ``raw``, the line ``rec`` was parsed from, is
    reused when its fields are already in order: serialising floats again costs as much as
    parsing them."""
    if raw is not None and list(rec)[:len(REQUEST_FIELDS)] == REQUEST_FIELDS and not any(k in rec for k in extra):
        body = raw.rstrip()
        if body.endswith("}"):
            return body[:-1] + "".join(f", {json.dumps(k)}: {json.dumps(v)}" for k, v in extra.items()) + "}\n"
    return json.dumps(normalise({**rec, **extra})) + "\n"


class RecordError(OrchestratorError):
    """A record that is not a request record (which file and line, which field, what was expected)."""


class RequestTable:
    """Columns of request records in a directory; ``close()`` removes a directory it owns."""

    def __init__(self, directory: Path, n: int, ngaps: int, targets: list[str | None], errors: list[str],
                 owned: bool, ops: list[str] | None = None, models: list[str] | None = None) -> None:
        self.dir, self.n, self.ngaps = directory, n, ngaps
        self.targets, self.errors, self._owned = targets, errors, owned
        self.ops = ops or []                   # names of the "op" column's indices
        self.models = models or []             # names of the "model" column's indices
        # a table nobody closes (an exception, a caller that forgot) still leaves no temporary directory
        self._cleanup = weakref.finalize(self, shutil.rmtree, str(directory), True) if owned else None

    def __len__(self) -> int:
        return self.n

    def __enter__(self) -> RequestTable:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self._owned:
            self._cleanup()
            self._owned = False

    @classmethod
    def from_records(cls, records: Iterable[dict], jsonl: Path | None = None) -> RequestTable:
        b = TableBuilder()
        with b.abandon_on_error(), (open(jsonl, "w") if jsonl else contextlib.nullcontext()) as out:
            for r in records:
                b.add(r, out)
        return b.finish()

    @classmethod
    def from_jsonl(cls, path: Path, point: str | None = None) -> RequestTable:
        """requests.jsonl of a session (only one sweep point's records when ``point`` is given)."""
        b = TableBuilder()
        with b.abandon_on_error():
            if path.exists():
                with open(path) as f:
                    for i, line in enumerate(f, 1):
                        if not line.strip():
                            continue
                        try:
                            rec = json.loads(line)
                        except json.JSONDecodeError:
                            raise RecordError(f"{path}: line {i} is not a JSON record") from None
                        if point is None or rec.get("point") == point:
                            b.add(rec, where=f"{path}: line {i}")
        return b.finish()

    def column(self, name: str) -> np.ndarray:
        """One whole column (for small tables and tests; KPIs read chunks)."""
        dtype = GAPS[0] if name == "gaps" else SCALARS[name][0]
        return np.fromfile(self.dir / name, dtype=dtype) if self.n else np.empty(0, dtype=dtype)

    def chunks(self, names: Iterable[str], rows: int | None = None) -> Iterator[dict[str, np.ndarray]]:
        """The named columns, ``rows`` records at a time; "gaps" brings each chunk's gaps and
        "gap_row", the chunk row each gap belongs to."""
        rows = rows or CHUNK
        names = list(dict.fromkeys(names))
        want_gaps = "gaps" in names
        cols = [c for c in names if c not in ("gaps", "gap_row")]
        if want_gaps and "ngaps" not in cols:
            cols.append("ngaps")
        files = {c: open(self.dir / c, "rb") for c in cols + (["gaps"] if want_gaps else [])}
        try:
            for start in range(0, self.n, rows):
                count = min(rows, self.n - start)
                out = {c: np.fromfile(files[c], dtype=SCALARS[c][0], count=count) for c in cols}
                if want_gaps:
                    k = out["ngaps"]
                    out["gaps"] = np.fromfile(files["gaps"], dtype=GAPS[0], count=int(k.sum()))
                    out["gap_row"] = np.repeat(np.arange(count, dtype=np.int32), k)
                yield out
        finally:
            for f in files.values():
                f.close()


class TableBuilder:
    """Appends records to column files (a new temporary directory unless one is given)."""

    def __init__(self, directory: Path | None = None) -> None:
        self._owned = directory is None
        self.dir = Path(tempfile.mkdtemp(prefix="orch-records-")) if directory is None else directory
        self.dir.mkdir(parents=True, exist_ok=True)
        # a builder dropped before finish() (a bad record file) removes its own directory
        self._cleanup = weakref.finalize(self, shutil.rmtree, str(self.dir), True) if self._owned else None
        self._buf = {c: array(t) for c, (_, t) in SCALARS.items()}
        self._gaps = array(GAPS[1])
        self._files = {c: open(self.dir / c, "wb") for c in [*SCALARS, "gaps"]}
        self._targets: dict[str | None, int] = {}
        self._errors: dict[str, int] = {}
        self._ops: dict[str, int] = {}
        self._models: dict[str, int] = {}
        self.n = self.ngaps = 0

    def add(self, rec: dict, out: IO[str] | None = None, where: str = "record") -> None:
        """One record; written to ``out`` (requests.jsonl) as a normalised JSON line too, unless
        the caller writes it (``jsonl_line``)."""
        try:
            start, latency = float(rec["start"]), float(rec["latency_s"])
            ok = bool(rec["ok"])
        except (KeyError, TypeError, ValueError) as exc:
            raise RecordError(f"{where}: needs numbers 'start' and 'latency_s' and a boolean 'ok' ({exc})") from None
        try:  # every value converted before any column grows: a bad record leaves the columns aligned
            floats = [_NAN if rec.get(c) is None else float(rec[c]) for c in _FLOATS]
            ints = [-1 if rec.get(c) is None else int(rec[c]) for c in _INTS]
            itl = rec.get("itl_s")
            gaps = [] if itl is None else [float(g) for g in itl] if isinstance(itl, list) else [float(itl)]
        except (TypeError, ValueError) as exc:
            raise RecordError(f"{where}: {', '.join(_FLOATS + _INTS)} and itl_s must be numbers or null ({exc})") \
                from None
        b = self._buf
        b["start"].append(start)
        b["latency_s"].append(latency)
        for c, v in zip(_FLOATS, floats):
            b[c].append(v)
        for c, v in zip(_INTS, ints):
            b[c].append(v)
        b["ok"].append(ok)
        b["warmup"].append(bool(rec.get("warmup")))
        b["retried"].append(bool(rec.get("retried")))
        b["target"].append(self._targets.setdefault(rec.get("target"), len(self._targets)))
        op = rec.get("op")
        b["op"].append(-1 if op is None else self._ops.setdefault(str(op), len(self._ops)))
        model = rec.get("model")
        b["model"].append(-1 if model is None else self._models.setdefault(str(model), len(self._models)))
        err = rec.get("error")
        b["error"].append(-1 if err is None else self._errors.setdefault(str(err), len(self._errors)))
        b["ngaps"].append(len(gaps))  # (before 0.2 itl_s was one mean per request)
        self._gaps.extend(gaps)
        self.n += 1
        self.ngaps += len(gaps)
        if out is not None:
            out.write(jsonl_line(rec, {}))
        if len(b["start"]) >= FLUSH:
            self._flush()

    @contextlib.contextmanager
    def abandon_on_error(self) -> Iterator[None]:
        """Removes the columns written so far (a directory it made) when the block fails."""
        try:
            yield
        except BaseException:
            self.finish().close()
            raise

    def _flush(self) -> None:
        for c, buf in self._buf.items():
            buf.tofile(self._files[c])
            del buf[:]
        self._gaps.tofile(self._files["gaps"])
        del self._gaps[:]

    def finish(self) -> RequestTable:
        self._flush()
        for f in self._files.values():
            f.close()
        if self._cleanup is not None:
            self._cleanup.detach()   # the table owns the directory from here
        return RequestTable(self.dir, self.n, self.ngaps, _names(self._targets), _names(self._errors), self._owned,
                            _names(self._ops), _names(self._models))


def _names(index: dict) -> list:
    """The keys of ``{name: index}`` in index order."""
    out = [None] * len(index)
    for name, i in index.items():
        out[i] = name
    return out
