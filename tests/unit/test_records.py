"""Request records as columns, and exact percentiles of more values than memory holds."""

import json
import statistics

import numpy as np
import pytest

from orchestrator.analysis.quantiles import summarise
from orchestrator.analysis.records import RecordError, RequestTable


def chunked(a, size):
    return lambda: (a[i:i + size] for i in range(0, a.size, size))


@pytest.mark.parametrize("shape", ["lognormal", "ties", "outliers", "float32"])
@pytest.mark.parametrize("limit_bytes", [1 << 30, 4096, 64])
def test_selection_finds_the_exact_order_statistics_whatever_memory_allows(shape, limit_bytes):
    """64 bytes holds 8 values: every rank is found by histogram passes, refined level after level."""
    rng = np.random.default_rng(5)
    a = {"lognormal": lambda: rng.lognormal(-1, 0.7, 20_001),
         "ties": lambda: np.concatenate([np.full(9000, 0.25), rng.random(3001)]),
         "outliers": lambda: np.concatenate([rng.random(10_000) * 1e-3, [1e9, -5.0]]),
         "float32": lambda: rng.lognormal(-4, 0.5, 15_001).astype("f4")}[shape]()
    qs = [0.0, 0.5, 0.9, 0.99, 0.999, 1.0]
    s = summarise(chunked(a, 1000), qs, limit_bytes=limit_bytes)
    expected = np.percentile(a.astype("f8"), [q * 100 for q in qs])
    assert [s.percentiles[q] for q in qs] == pytest.approx(expected.tolist(), rel=1e-12)
    assert s.n == a.size and s.max == float(a.max()) and s.mean == pytest.approx(float(a.astype("f8").mean()))


def test_selection_agrees_with_the_standard_library():
    values = np.random.default_rng(7).lognormal(0, 0.6, 1001)
    cuts = statistics.quantiles(values.tolist(), n=100, method="inclusive")
    s = summarise(chunked(values, 100), [0.5, 0.95, 0.99], limit_bytes=256)
    assert [s.percentiles[q] for q in (0.5, 0.95, 0.99)] == pytest.approx([cuts[49], cuts[94], cuts[98]], rel=1e-12)
    assert summarise(chunked(np.empty(0), 10), [0.5]).n == 0


def test_columns_hold_what_the_records_said_absent_values_included(tmp_path):
    recs = [{"start": 1.5, "latency_s": 0.25, "ok": True, "ttft_s": None, "tokens_out": 7, "itl_s": [0.01, 0.02],
             "target": "a", "error": None},
            {"start": 2.5, "latency_s": 1.0, "ok": False, "tokens_out": None, "error": "HTTP 503", "target": "b",
             "warmup": True, "itl_s": None}]
    with RequestTable.from_records(recs, jsonl=tmp_path / "requests.jsonl") as t:
        assert len(t) == 2 and t.targets == ["a", "b"] and t.errors == ["HTTP 503"]
        assert t.column("start").tolist() == [1.5, 2.5] and np.isnan(t.column("ttft_s")).all()
        assert t.column("tokens_out").tolist() == [7, -1] and t.column("error").tolist() == [-1, 0]
        assert t.column("gaps").tolist() == pytest.approx([0.01, 0.02]) and t.column("ngaps").tolist() == [2, 0]
        lines = [json.loads(line) for line in open(tmp_path / "requests.jsonl")]
        assert list(lines[0])[:9] == ["start", "latency_s", "ttft_s", "tpot_s", "status", "ok", "tokens_in",
                                      "tokens_out", "error"]
        directory = t.dir
    assert not directory.exists()  # the columns go with the table


def test_a_bad_record_names_its_file_and_line_and_leaves_no_columns_behind(tmp_path, monkeypatch):
    import tempfile
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    path = tmp_path / "requests.jsonl"
    path.write_text('{"start": 1, "latency_s": 0.1, "ok": true}\n{"start": "soon", "latency_s": 0.1, "ok": true}\n')
    with pytest.raises(RecordError, match=r"requests.jsonl: line 2: needs numbers 'start' and 'latency_s'"):
        RequestTable.from_jsonl(path)
    path.write_text('{"start": 1, "latency_s": 0.1, "ok": true}\n{"start": 1,\n')
    with pytest.raises(RecordError, match=r"requests.jsonl: line 2 is not a JSON record"):
        RequestTable.from_jsonl(path)
    assert list((tmp_path / "tmp").iterdir()) == []


def test_one_sweep_point_is_read_alone(tmp_path):
    path = tmp_path / "requests.jsonl"
    path.write_text("".join(json.dumps({"start": i, "latency_s": 0.1, "ok": True, "point": f"c={i % 2}"}) + "\n"
                            for i in range(5)))
    with RequestTable.from_jsonl(path, point="c=1") as t:
        assert t.column("start").tolist() == [1.0, 3.0]
