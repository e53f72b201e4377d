"""The dashboard's server: charts from one query round per interval, on 127.0.0.1 only."""

import json
import urllib.request

from orchestrator.errors import OrchestratorError
from orchestrator.monitoring.dashboard import CHARTS, Dashboard, serve
from orchestrator.monitoring.promql import QueryResult, Series


class Monitors:
    def __init__(self):
        self.rounds = 0
        self.fail = False

    def query_range_many(self, mid, queries, start, end, step):
        self.rounds += 1
        if self.fail:
            raise OrchestratorError("connection lost")
        out = []
        for q in queries:
            series = [Series({"service_id": "svc_0123abcd"}, [(end - 10, 1.0), (end - 5, 3.0)])] \
                if "orch_client_requests_total" in q or "in_flight" in q else []
            out.append(QueryResult(q, "matrix", series))
        return out


def test_viewers_share_one_query_round_per_interval_and_see_the_data():
    mon = Monitors()
    dash = Dashboard(mon, "prometheus_0123abcd", "t", interval=60)
    srv = serve(dash)
    try:
        host, port = srv.server_address
        assert host == "127.0.0.1"  # never another interface
        docs = [json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/charts").read()) for _ in range(3)]
        assert mon.rounds == 1 and docs[0] == docs[2]
        d = docs[0]
        assert len(d["charts"]) == len(CHARTS) and d["points"] == 4 and d["phase"] == "load running"
        assert "no series on the monitor yet" in d["charts"][4] and "<svg" in d["charts"][0]
        page = urllib.request.urlopen(f"http://127.0.0.1:{port}/").read().decode()
        assert "prometheus_0123abcd" in page and 'fetch("/charts"' in page and "setInterval(refresh, 60000)" in page
    finally:
        srv.shutdown()


def test_a_failed_round_keeps_the_last_charts_and_says_why():
    mon = Monitors()
    dash = Dashboard(mon, "m", "t", interval=0)
    first = dash.current()
    mon.fail = True
    second = dash.current()
    assert second.charts == first.charts and second.error == "connection lost"
