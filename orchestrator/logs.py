"""Progress and event lines for every command: text for people, JSON lines for machines.

`--log-format json` makes each line an object with ts, level, msg and the IDs
it concerns (session, service_id, job_id), found in the message when the
caller did not pass them, so every existing progress line carries them.
"""

from __future__ import annotations

import json
import re
import sys
import time
from datetime import datetime, timezone

_FORMAT = {"value": "text"}
_CONTEXT: dict = {}  # fields every line carries while set (e.g. the session being run)
_SERVICE = re.compile(r"\b([a-z][a-z0-9-]*_[0-9a-f]{8})\b")
_JOB = re.compile(r"\bjob (\d+(?:_\d+|\+\d+)?)\b")
_SESSION = re.compile(r"\bsession ([a-z0-9-]+-\d{8}T\d{6}Z-[0-9a-f]{4})\b")


def set_format(fmt: str) -> None:
    if fmt not in ("text", "json"):
        raise ValueError(f"--log-format: expected text or json, got {fmt!r}")
    _FORMAT["value"] = fmt


def fields_from(message: str) -> dict:
    out = {}
    if m := _SERVICE.search(message):
        out["service_id"] = m.group(1)
    if m := _JOB.search(message):
        out["job_id"] = m.group(1)
    if m := _SESSION.search(message):
        out["session"] = m.group(1)
    return out


class log_context:
    """``with log_context(session=ID):`` every line inside carries session=ID."""

    def __init__(self, **fields):
        self.fields = fields
        self.saved: dict = {}

    def __enter__(self):
        self.saved = dict(_CONTEXT)
        _CONTEXT.update(self.fields)
        return self

    def __exit__(self, *exc):
        _CONTEXT.clear()
        _CONTEXT.update(self.saved)


def log(message: str, level: str = "info", stream=None, **fields) -> None:
    stream = stream or sys.stderr
    if _FORMAT["value"] == "json":
        doc = {"ts": datetime.now(timezone.utc).isoformat(timespec="milliseconds"), "level": level, "msg": message,
               **_CONTEXT, **fields_from(message), **{k: v for k, v in fields.items() if v is not None}}
        stream.write(json.dumps(doc) + "\n")
    else:
        prefix = "" if level == "info" else f"{level}: "
        stream.write(f"[{time.strftime('%H:%M:%S')}] {prefix}{message}\n")
    stream.flush()
