"""A small validator for the YAML files users write (config, recipes).

Errors name the file, the dotted field path and what was expected; unknown
keys are errors with the nearest valid key suggested, because a typo such as
``parition`` silently falling back to a default is the worst kind of bug.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any, Callable

import yaml


class SchemaViolation(Exception):
    """Raised by the checks below; callers re-raise it as their own error type."""

    def __init__(self, path: str, message: str):
        self.path = path
        self.message = message
        super().__init__(f"{path}: {message}" if path else message)


MAX_ALIASES = 100          # a recipe needs a few; a "billion laughs" document needs many
MAX_YAML_BYTES = 4 << 20
MAX_EXPANDED = 1_000_000  # values after aliases are followed


class _BoundedLoader(yaml.SafeLoader):
    """SafeLoader that refuses documents expanding through many aliases (a 1 KB file can otherwise
    describe gigabytes once its references are followed)."""

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            self._aliases = getattr(self, "_aliases", 0) + 1
            if self._aliases > MAX_ALIASES:
                raise yaml.YAMLError(f"more than {MAX_ALIASES} aliases (*name): refused")
        return super().compose_node(parent, index)


def safe_load(text: str) -> Any:
    """``yaml.safe_load`` with bounds; raises yaml.YAMLError."""
    if len(text) > MAX_YAML_BYTES:
        raise yaml.YAMLError(f"larger than {MAX_YAML_BYTES >> 20} MiB: refused")
    loader = _BoundedLoader(text)
    try:
        data = loader.get_single_data()
    finally:
        loader.dispose()
    if _expanded_size(data, {}, set()) > MAX_EXPANDED:
        raise yaml.YAMLError(f"its aliases expand to more than {MAX_EXPANDED:,} values: refused")
    return data


def _expanded_size(obj, memo: dict, active: set) -> int:
    """How many values the document holds once every alias is followed (shared nodes counted each time)."""
    key = id(obj)
    if key in memo:
        return memo[key]
    if key in active:
        raise yaml.YAMLError("a recursive alias (a node that contains itself): refused")
    if isinstance(obj, (list, dict)):
        active.add(key)
        items = list(obj.items()) if isinstance(obj, dict) else [(None, v) for v in obj]
        size = 1
        for k, v in items:
            size += _expanded_size(v, memo, active) + (1 if k is not None else 0)
            if size > MAX_EXPANDED:
                break
        active.discard(key)
    else:
        size = 1
    memo[key] = size
    return size


def load_yaml_file(path: Path) -> Any:
    """Read a YAML file; missing or malformed files raise SchemaViolation."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise SchemaViolation("", "file not found") from None
    except OSError as exc:
        raise SchemaViolation("", f"cannot read: {exc.strerror}") from None
    try:
        return safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise SchemaViolation("", f"malformed YAML: {where}{problem}") from None


def join(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


def check_keys(value: dict, allowed: list[str], path: str, required: tuple[str, ...] = ()) -> None:
    for key in value:
        if key not in allowed:
            close = difflib.get_close_matches(str(key), allowed, n=1, cutoff=0.6)
            hint = f"; did you mean '{close[0]}'?" if close else f"; valid keys: {', '.join(allowed)}"
            raise SchemaViolation(join(path, str(key)), f"unknown key{hint}")
    for key in required:
        if value.get(key) is None:
            raise SchemaViolation(join(path, key), "required field is missing")


def _type_name(value: Any) -> str:
    return {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean",
            int: "an integer", float: "a number", type(None): "nothing"}.get(type(value), type(value).__name__)


def expect_mapping(value: Any, path: str) -> dict:
    if not isinstance(value, dict):
        raise SchemaViolation(path, f"expected a mapping, got {_type_name(value)}")
    return value


def expect_list(value: Any, path: str) -> list:
    if not isinstance(value, list):
        raise SchemaViolation(path, f"expected a list, got {_type_name(value)}")
    return value


def expect_str(value: Any, path: str, optional: bool = False) -> str | None:
    if value is None and optional:
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)  # YAML reads `qos: 1` as an int; a SLURM field is text
    if not isinstance(value, str) or not value.strip():
        raise SchemaViolation(path, f"expected a non-empty string, got {_type_name(value)}")
    return value


def expect_int(value: Any, path: str, minimum: int | None = None, maximum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise SchemaViolation(path, f"expected an integer, got {_type_name(value)} {value!r}")
    if minimum is not None and value < minimum or maximum is not None and value > maximum:
        bounds = f"between {minimum} and {maximum}" if maximum is not None else f">= {minimum}"
        raise SchemaViolation(path, f"expected an integer {bounds}, got {value}")
    return value


def expect_number(value: Any, path: str, minimum: float | None = None) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise SchemaViolation(path, f"expected a number, got {_type_name(value)} {value!r}")
    if minimum is not None and value < minimum:
        raise SchemaViolation(path, f"expected a number >= {minimum}, got {value}")
    return float(value)


def expect_pattern(value: Any, path: str, check: Callable[[str], bool], what: str) -> str:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not check(value):
        raise SchemaViolation(path, f"expected {what}, got {value!r}")
    return value


def expect_duration(value: Any, path: str, minimum: float = 0.0, maximum: float | None = None) -> float:
    """Seconds, from the one form every duration field takes: a number of seconds or a string such as
    ``20s``, ``10m`` or ``1h30m``."""
    from orchestrator.times import parse_duration
    try:
        seconds = parse_duration(value)
    except (ValueError, TypeError):
        raise SchemaViolation(path, f"expected a duration such as 30s, 10m or 1h30m (or a number of seconds), "
                                    f"got {_type_name(value)} {value!r}") from None
    if seconds < minimum or maximum is not None and seconds > maximum:
        bounds = f"at least {minimum:g}s" if maximum is None else f"between {minimum:g}s and {maximum:g}s"
        raise SchemaViolation(path, f"expected a duration {bounds}, got {value!r}")
    return seconds
