"""Progress and event lines for every command, through the standard ``logging`` module.

Text for people (``[12:00:01] message``), or with ``--log-format json`` one
object per line with ts, level, msg and the IDs it concerns. Those IDs come
from context variables (``log_context(session=..., service_id=...)``) and
from the ``fields`` a caller passes; messages are never parsed for them.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import os
import sys
import time
from datetime import datetime, timezone
from typing import Iterator

LOGGER = logging.getLogger("orchestrator")
_context: contextvars.ContextVar[dict] = contextvars.ContextVar("orchestrator_log_context", default={})
_ID_FIELDS = ("session", "service_id", "job_id")


class _ContextFilter(logging.Filter):
    """Puts the context's fields and the caller's ``fields`` on every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        fields = {**_context.get(), **{k: v for k, v in getattr(record, "fields", {}).items() if v is not None}}
        record.orch_fields = fields
        return True


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        prefix = "" if record.levelno == logging.INFO else f"{record.levelname.lower()}: "
        from orchestrator.terminal import printable  # (a watcher's lines quote other users' job names)
        return f"[{time.strftime('%H:%M:%S', time.localtime(record.created))}] {prefix}{printable(record.getMessage())}"


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        doc = {"ts": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
               "level": record.levelname.lower(), "msg": record.getMessage(), **getattr(record, "orch_fields", {})}
        if record.exc_info:
            doc["traceback"] = self.formatException(record.exc_info)
        return json.dumps(doc, default=str)


def configure(fmt: str = "text", stream=None, debug: bool = False) -> None:
    """One handler on the ``orchestrator`` logger (called once per command)."""
    if fmt not in ("text", "json"):
        raise ValueError(f"--log-format: expected text or json, got {fmt!r}")
    from orchestrator import waiting
    out = stream or sys.stderr
    waiting.live = None
    if fmt == "text" and _is_terminal(out):
        from rich.console import Console

        from orchestrator.terminal import LiveWaits
        waiting.live = LiveWaits(Console(file=out, stderr=out is sys.stderr))
        handler: logging.Handler = _LiveHandler(waiting.live)
    else:
        handler = logging.StreamHandler(out)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.addFilter(_ContextFilter())
    for old in list(LOGGER.handlers):
        LOGGER.removeHandler(old)
    LOGGER.addHandler(handler)
    LOGGER.setLevel(logging.DEBUG if debug else level_from_env(os.environ))
    LOGGER.propagate = False
    LOGGER.orch_format = fmt  # type: ignore[attr-defined]


LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


def level_from_env(env) -> int:
    """``LOG_LEVEL`` (DEBUG, INFO, WARNING, ERROR; seed 003's variable), INFO when unset."""
    name = (env.get("LOG_LEVEL") or "INFO").strip().upper()
    if name not in LEVELS:
        from orchestrator.errors import OrchestratorError
        raise OrchestratorError(f"$LOG_LEVEL: expected one of {', '.join(LEVELS)}, got {env.get('LOG_LEVEL')!r}")
    return getattr(logging, name)


def verbose() -> None:
    """-v: debug lines too."""
    LOGGER.setLevel(logging.DEBUG)


def _is_terminal(stream) -> bool:
    try:
        return stream.isatty() and os.environ.get("TERM") != "dumb"
    except (AttributeError, ValueError):
        return False


class _LiveHandler(logging.Handler):
    """Lines printed above the live wait line (through the same console, so neither garbles the other)."""

    def __init__(self, live):
        super().__init__()
        self.live = live

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.live.print(self.format(record))
        except Exception:  # a log line must never end a command
            self.handleError(record)


def json_format() -> bool:
    return getattr(LOGGER, "orch_format", "text") == "json"


@contextlib.contextmanager
def log_context(**fields) -> Iterator[None]:
    """``with log_context(session=ID):`` every line inside carries session=ID (threads started inside too,
    when they copy the context)."""
    token = _context.set({**_context.get(), **{k: v for k, v in fields.items() if v is not None}})
    try:
        yield
    finally:
        _context.reset(token)


def log(message: str, level: str = "info", **fields) -> None:
    if not LOGGER.handlers:
        configure()
    LOGGER.log(logging.getLevelName(level.upper()), message, extra={"fields": fields})
