"""How a sweep's point edits a benchmark recipe: which fields a sweep may vary (checked before any job),
a client spec with the point's values set, and the fields it sets on a service recipe (pure)."""

from __future__ import annotations

from dataclasses import replace

from orchestrator.analysis.sweep import CLIENT_FIELDS, Point
from orchestrator.errors import RecipeError
from orchestrator.schema import SchemaViolation
from orchestrator.times import parse_duration

MAX_GRID = 10_000   # beyond any sweep a cluster runs; config.yaml limits.sweep_points is the usual bound


def validate_sweep(sweep: dict, service_names: list[str], path: str = "benchmark.sweep") -> dict:
    size = 1
    for values in sweep.values():
        size *= len(values) if isinstance(values, list) else 1
    if size > MAX_GRID:
        raise SchemaViolation(path, f"{size:,} points (the product of the value lists); at most {MAX_GRID:,}")
    out = {}
    for key, values in sweep.items():
        where = f"{path}.{key}"
        if not isinstance(values, list) or not values:
            raise SchemaViolation(where, "expected a non-empty list of values")
        if key.startswith("services."):
            name = key.split(".")[1] if key.count(".") >= 2 else ""
            if name not in service_names:
                raise SchemaViolation(where, f"expected services.<name>.<field> with a service of this benchmark "
                                             f"({', '.join(service_names)})")
        elif key.startswith("payload."):
            pass
        elif key not in CLIENT_FIELDS:
            raise SchemaViolation(where, f"expected a client field ({', '.join(CLIENT_FIELDS)}), payload.<key> "
                                         f"or services.<name>.<field>")
        else:
            for i, v in enumerate(values):
                _coerce(key, v, f"{where}[{i}]")
        out[key] = values
    return out


def _coerce(field: str, value, where: str):
    kind = CLIENT_FIELDS[field]
    try:
        if kind == "duration":
            return parse_duration(value)
        if kind is int:
            if isinstance(value, bool) or int(value) != value or value < 1:
                raise ValueError
            return int(value)
        v = float(value)
        if v <= 0:
            raise ValueError
        return v
    except (ValueError, TypeError):
        raise SchemaViolation(where, f"expected a positive {'duration' if kind == 'duration' else kind.__name__} "
                                     f"for {field}, got {value!r}") from None


def apply_to_client(spec, point: Point):
    """The client spec (a ``bench.recipe.ClientSpec``) with this point's values set."""
    changes = {}
    payload = dict(spec.payload)
    for key, value in point.values.items():
        if key.startswith("payload."):
            payload[key[len("payload."):]] = value
        elif key in CLIENT_FIELDS:
            changes[key] = _coerce(key, value, key)
    return replace(spec, payload=payload, **changes)


def service_changes(point: Point, name: str) -> dict:
    """{dotted field under service: value} that this point sets on service ``name``."""
    prefix = f"services.{name}."
    return {k[len(prefix):]: v for k, v in point.values.items() if k.startswith(prefix)}


def set_path(doc: dict, dotted: str, value) -> None:
    keys = dotted.split(".")
    for k in keys[:-1]:
        doc = doc.setdefault(k, {})
        if not isinstance(doc, dict):
            raise RecipeError(f"sweep: cannot set {dotted}: {k} is not a mapping")
    doc[keys[-1]] = value
