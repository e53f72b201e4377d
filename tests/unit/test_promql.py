import json
import math

import pytest

from orchestrator.cluster.local import LocalTransport
from orchestrator.cluster.remote import Marker
from orchestrator.monitoring.promql import (
    MAX_POINTS,
    PrometheusError,
    QueryResult,
    Series,
    curl_query,
    joined,
    parse_duration,
    parse_response,
    parse_time,
    range_chunks,
    stitch,
)


def test_chunks_never_exceed_the_point_limit_and_cover_every_step():
    start, step = 1000.0, 0.5
    end = start + step * 25_000  # 25,001 points
    chunks = range_chunks(start, end, step)
    points = []
    for s, e in chunks:
        n = round((e - s) / step) + 1
        assert n <= MAX_POINTS
        points += [s + i * step for i in range(n)]
    assert points == [start + i * step for i in range(25_001)]


def test_short_range_is_one_chunk():
    assert range_chunks(0, 60, 15) == [(0, 60)]


def test_stitch_merges_series_by_labels_in_time_order():
    a = QueryResult("q", "matrix", [Series({"job": "x"}, [(1.0, 1.0), (2.0, 2.0)])], ["w1"])
    b = QueryResult("q", "matrix", [Series({"job": "x"}, [(3.0, 3.0)]), Series({"job": "y"}, [(3.0, 9.0)])], ["w1"])
    r = stitch([a, b])
    by_job = {s.labels["job"]: s.values for s in r.series}
    assert by_job == {"x": [(1.0, 1.0), (2.0, 2.0), (3.0, 3.0)], "y": [(3.0, 9.0)]} and r.warnings == ["w1"]


def test_error_answer_carries_prometheus_text():
    text = json.dumps({"status": "error", "errorType": "bad_data",
                       "error": 'invalid parameter "query": 1:5: parse error: unexpected "}"'})
    with pytest.raises(PrometheusError, match=r"rejected 'up\{\}}': bad_data: invalid parameter \"query\": 1:5: parse error"):
        parse_response(text, "up{}}")


def test_vector_with_nan_and_warnings():
    text = json.dumps({"status": "success", "warnings": ["partial"], "data": {"resultType": "vector", "result": [
        {"metric": {"__name__": "up"}, "value": [10, "NaN"]}]}})
    r = parse_response(text, "up")
    assert math.isnan(r.series[0].values[0][1]) and r.warnings == ["partial"]


def test_non_json_answer_is_a_clear_error():
    with pytest.raises(PrometheusError, match="did not answer with JSON.*curl: \\(7\\) Failed to connect"):
        parse_response("curl: (7) Failed to connect to n1 port 9090", "up")


@pytest.mark.parametrize("text,expected", [("15s", 15), ("1m30s", 90), ("2h", 7200), ("0.5", 0.5), (10, 10)])
def test_durations(text, expected):
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text,expected", [
    ("1700000000", 1700000000.0), ("now", 5000.0), ("-15m", 5000.0 - 900),
    ("2023-11-14T22:13:20Z", 1700000000.0), ("2023-11-14T22:13:20+00:00", 1700000000.0),
])
def test_times(text, expected):
    assert parse_time(text, now=5000.0) == expected


def test_bad_time_names_the_accepted_forms():
    with pytest.raises(ValueError, match="unix seconds, ISO 8601, 'now' or a relative time"):
        parse_time("yesterday")


def test_promql_with_quotes_braces_and_regex_reaches_curl_unharmed(tmp_path):
    # a fake curl that prints its argv, one per line: what Prometheus would receive
    fake = tmp_path / "curl"
    fake.write_text("#!/bin/sh\nfor a in \"$@\"; do printf '%s\\n' \"$a\"; done\n")
    fake.chmod(0o755)
    q = 'sum by (job) (rate(http_requests_total{job=~"api|web", path!="/a b", le="0.5"}[5m])) > 0'
    mark = Marker()
    script = f'BASE=http://n1:9090; PATH={tmp_path}:$PATH; ' + joined([curl_query(q), curl_query("up")], mark)
    parts = [s.text for s in mark.parse(LocalTransport().run(script, check=True).stdout) if s.name == "response"]
    assert len(parts) == 2
    assert f"query={q}" in parts[0].splitlines() and "http://n1:9090/api/v1/query" in parts[0].splitlines()
    assert "query=up" in parts[1].splitlines()


def test_json_of_results_keeps_prometheus_shape():
    import json as _json
    doc = {"status": "success", "data": {"resultType": "vector", "result": [
        {"metric": {"__name__": "up", "job": "a"}, "value": [1700000000.5, "1"]},
        {"metric": {"job": "b"}, "value": [1700000000.5, "0.25"]},
        {"metric": {"job": "c"}, "value": [1700000000.5, "NaN"]},
        {"metric": {"job": "d"}, "value": [1700000000.5, "+Inf"]}]}}
    r = parse_response(_json.dumps(doc), "up")
    assert r.to_dict()["result"] == doc["data"]["result"]
    m = {"status": "success", "data": {"resultType": "matrix", "result": [
        {"metric": {"job": "a"}, "values": [[1.0, "1"], [2.0, "0.000001"]]}]}}
    assert parse_response(_json.dumps(m), "up").to_dict()["result"] == m["data"]["result"]
