#!/usr/bin/env python3
"""The vector client's exact neighbours (its recall@k reference) against the query phase it must
not slow: brute force with numpy, all queries at once, before the query phase starts.

    python benchmarks/vector_recall.py [--dim 128] [--vectors 20000] [--queries 2000] [--top-k 10]

Runs locally, no service: it times the computation the client does before its query phase and
the per-query check during it (a set intersection), beside what one query costs the client.
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from orchestrator.oncluster.vectorload import exact_neighbours  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--vectors", type=int, default=20_000)
    ap.add_argument("--queries", type=int, default=2000)
    ap.add_argument("--top-k", type=int, default=10)
    a = ap.parse_args()
    rng = np.random.default_rng(0)
    data = rng.random((a.vectors, a.dim), dtype=np.float32)
    queries = rng.random((a.queries, a.dim), dtype=np.float32)
    t = time.perf_counter()
    truth = exact_neighbours(data, queries, a.top_k)
    total = time.perf_counter() - t
    ids = [f"n0-{i}" for i in range(a.vectors)]
    got = [[ids[j] for j in row[::-1]] for row in truth]  # a service's answer (same set, any order)
    t = time.perf_counter()
    for i in range(a.queries):
        recall = len({ids[j] for j in truth[i]}.intersection(got[i])) / a.top_k
    check = (time.perf_counter() - t) / a.queries
    assert recall == 1.0
    print(f"{a.vectors:,} vectors x {a.dim}, {a.queries:,} queries, top-{a.top_k}")
    print(f"exact neighbours, before the query phase: {total:.2f} s ({total / a.queries * 1e3:.3f} ms per query)")
    print(f"recall check during the query phase: {check * 1e6:.1f} us per query")
    print(f"peak RSS: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")


if __name__ == "__main__":
    main()
