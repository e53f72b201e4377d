"""Exact percentiles of more values than memory should hold, by selection over repeated passes.

Percentiles use linear interpolation between closest ranks (numpy's default "linear" method):
p = v[floor(h)] + (h - floor(h)) * (v[ceil(h)] - v[floor(h)]), h = (n - 1) * q over the sorted values.
So only the values at a few ranks are needed, never the sorted whole.

``source`` is a function returning a fresh iterator of 1-D arrays (the values, chunk by chunk,
e.g. read from column files); it is called once per pass. When the values fit ``limit_bytes``
they are gathered into one array and partitioned in place (two passes). Otherwise each wanted
rank is found by histogramming the values into ``BINS`` equal bins, keeping only the bin that
holds the rank, and repeating inside it until the candidates fit in memory; every pass holds one
chunk and a histogram. Bin membership is recomputed by the same arithmetic on every pass, so a
value on a bin edge is counted in exactly one bin and the answer is the true order statistic.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np

Source = Callable[[], Iterable[np.ndarray]]
BINS = 1 << 16
LIMIT_BYTES = 128 << 20


@dataclass(frozen=True)
class Summary:
    n: int
    mean: float | None
    max: float | None
    percentiles: dict[float, float]      # q (0..1) -> value; empty when n == 0


def summarise(source: Source, qs: Sequence[float], limit_bytes: int = LIMIT_BYTES) -> Summary:
    n, total, lo, hi, dtype = 0, 0.0, math.inf, -math.inf, np.dtype("f8")
    for chunk in source():
        if chunk.size:
            n += chunk.size
            total += float(chunk.sum(dtype="f8"))
            lo, hi = min(lo, float(chunk.min())), max(hi, float(chunk.max()))
            dtype = chunk.dtype
    if n == 0:
        return Summary(0, None, None, {})
    wanted = {q: (n - 1) * q for q in qs}
    ranks = sorted({r for h in wanted.values() for r in (math.floor(h), math.ceil(h))})
    if not ranks:
        at = {}
    elif n * dtype.itemsize <= limit_bytes:
        values = _gather(source, [], n, dtype)
        values.partition(ranks)
        at = {r: float(values[r]) for r in ranks}
    else:
        at = _select(source, ranks, n, lo, hi, dtype, limit_bytes)
    out = {}
    for q, h in wanted.items():
        a, b = at[math.floor(h)], at[math.ceil(h)]
        out[q] = a + (h - math.floor(h)) * (b - a)
    return Summary(n, total / n, hi, out)


def _bins(v: np.ndarray, lo: float, hi: float) -> np.ndarray:
    idx = ((v.astype("f8") - lo) * (BINS / (hi - lo))).astype(np.int64)
    return np.clip(idx, 0, BINS - 1, out=idx)


def _members(chunk: np.ndarray, path: list[tuple[float, float, int]]) -> np.ndarray:
    for lo, hi, b in path:
        chunk = chunk[_bins(chunk, lo, hi) == b]
    return chunk


def _gather(source: Source, path, count: int, dtype) -> np.ndarray:
    out, i = np.empty(count, dtype=dtype), 0
    for chunk in source():
        m = _members(chunk, path)
        out[i:i + m.size] = m
        i += m.size
    return out


def _select(source: Source, ranks: list[int], n: int, lo: float, hi: float, dtype, limit_bytes: int) -> dict[int, float]:
    found: dict[int, float] = {}
    # (path to the candidates, their min and max, rank of the first candidate, their count, ranks among them)
    tasks = [([], lo, hi, 0, n, ranks)]
    while tasks:
        path, lo, hi, base, count, rs = tasks.pop()
        if count * dtype.itemsize <= limit_bytes:
            values = _gather(source, path, count, dtype)
            values.partition([r - base for r in rs])
            found.update({r: float(values[r - base]) for r in rs})
            continue
        if lo == hi:
            found.update({r: lo for r in rs})
            continue
        hist = np.zeros(BINS, dtype=np.int64)
        for chunk in source():
            hist += np.bincount(_bins(_members(chunk, path), lo, hi), minlength=BINS)
        cum = np.cumsum(hist)
        by_bin: dict[int, list[int]] = {}
        for r in rs:
            by_bin.setdefault(int(np.searchsorted(cum, r - base, side="right")), []).append(r)
        for b, group in by_bin.items():
            child = path + [(lo, hi, b)]
            cmin, cmax = math.inf, -math.inf
            # candidates that fit memory are gathered next: their range is not needed
            for chunk in (source() if hist[b] * dtype.itemsize > limit_bytes else ()):
                m = _members(chunk, child)
                if m.size:
                    cmin, cmax = min(cmin, float(m.min())), max(cmax, float(m.max()))
            tasks.append((child, cmin, cmax, base + (int(cum[b - 1]) if b else 0), int(hist[b]), group))
    return found
