"""Grafana provisioning: a datasource for the monitor and dashboards in Grafana's model."""

import json

import yaml

from orchestrator.monitoring.grafana import PANELS, SCHEMA_VERSION, dashboard, provisioning, queries


def test_provisioning_points_the_datasource_at_the_monitor_and_ships_every_dashboard():
    files = provisioning("http://n2:9090")
    ds = yaml.safe_load(files["datasources/prometheus.yaml"])["datasources"][0]
    assert ds == {"name": "Prometheus", "type": "prometheus", "uid": "orch-prometheus", "access": "proxy",
                  "url": "http://n2:9090", "isDefault": True, "editable": False,
                  # the monitor is locked: basic auth, its password filled in on the node (grafana recipe)
                  "basicAuth": True, "basicAuthUser": "orch",
                  "secureJsonData": {"basicAuthPassword": "__ORCH_PROMETHEUS_PASSWORD__"}}
    provider = yaml.safe_load(files["dashboards/orchestrator.yaml"])["providers"][0]
    assert provider["type"] == "file" and provider["options"]["path"].endswith("/dashboards/json")
    names = {p.split("/")[-1][:-5] for p in files if p.startswith("dashboards/json/")}
    assert names == {"node", "gpu", "redis", "postgres", "clients", "vllm", "llamacpp"}


def test_every_dashboard_follows_grafanas_model():
    """The fields Grafana's dashboard schema (schemaVersion 39) requires of a dashboard and its
    timeseries panels, and a grid where no two panels overlap."""
    for name in PANELS:
        d = json.loads(provisioning("http://x:1")[f"dashboards/json/{name}.json"])
        assert d["schemaVersion"] == SCHEMA_VERSION and d["uid"] == f"orch-{name}" and d["title"]
        assert isinstance(d["panels"], list) and d["panels"], name
        cells = set()
        for p in d["panels"]:
            assert p["type"] == "timeseries" and p["datasource"] == {"type": "prometheus", "uid": "orch-prometheus"}
            g = p["gridPos"]
            assert 0 <= g["x"] and g["x"] + g["w"] <= 24 and g["h"] > 0
            mine = {(x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])}
            assert not mine & cells, f"{name}: panel {p['title']} overlaps another"
            cells |= mine
            assert [t["refId"] for t in p["targets"]] == [chr(65 + i) for i in range(len(p["targets"]))]
            assert all(t["expr"] for t in p["targets"])
        assert len({p["id"] for p in d["panels"]}) == len(d["panels"])


def test_engine_dashboards_read_the_engines_table():
    llama = {p["title"]: p for p in dashboard("llamacpp")["panels"]}
    assert "llamacpp:tokens_predicted_total" in llama["Output tokens/s"]["targets"][0]["expr"]
    assert "Requests/s" not in llama  # llama.cpp has no request counter: no empty panel
    exprs = [e for _, _, e in queries()]
    assert any("vllm:time_to_first_token_seconds_bucket" in e for e in exprs)
