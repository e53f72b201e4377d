"""Grafana provisioning for a monitor: a Prometheus datasource and dashboards (pure: data out).

Many sites already run Grafana; `monitor start --grafana` deploys one beside Prometheus (the
`grafana` recipe, a container) with these files in its provisioning directory. Dashboards are
built here from one table of panels, so a metric name lives in one place (the engines' in
``engines.py``), and the JSON follows Grafana's dashboard model (schemaVersion 39:
``timeseries`` panels with Prometheus targets, 24-column grid).
"""

from __future__ import annotations

import json

from orchestrator.engines import ENGINES

DATASOURCE_UID = "orch-prometheus"
SCHEMA_VERSION = 39
RATE = "$__rate_interval"

# dashboard -> [(panel title, unit, [(PromQL, legend)])]
PANELS: dict[str, list[tuple[str, str, list[tuple[str, str]]]]] = {
    "node": [
        ("CPU utilisation", "percent",
         [('100 * (1 - avg by (instance) (rate(node_cpu_seconds_total{mode="idle"}[' + RATE + '])))', "{{instance}}")]),
        ("Memory used", "bytes", [("node_memory_MemTotal_bytes - node_memory_MemAvailable_bytes", "{{instance}}")]),
        ("Load average (1m)", "short", [("node_load1", "{{instance}}")]),
        ("Network received", "Bps",
         [('sum by (instance) (rate(node_network_receive_bytes_total{device!="lo"}[' + RATE + ']))', "{{instance}}")]),
    ],
    "gpu": [  # DCGM exporter names (the nvidia-smi exporter the tool ships uses the same)
        ("GPU utilisation", "percent", [("DCGM_FI_DEV_GPU_UTIL", "{{Hostname}} GPU {{gpu}}")]),
        ("GPU memory used", "decmbytes", [("DCGM_FI_DEV_FB_USED", "{{Hostname}} GPU {{gpu}}")]),
        ("GPU power", "watt", [("DCGM_FI_DEV_POWER_USAGE", "{{Hostname}} GPU {{gpu}}")]),
        ("GPU temperature", "celsius", [("DCGM_FI_DEV_GPU_TEMP", "{{Hostname}} GPU {{gpu}}")]),
    ],
    "redis": [
        ("Commands/s", "ops", [('sum by (service_id, cmd) (rate(redis_commands_total{cmd=~"get|set|mset"}[' + RATE
                                 + ']))', "{{service_id}} {{cmd}}")]),
        ("Connected clients", "short", [("redis_connected_clients", "{{service_id}}")]),
        ("Memory used", "bytes", [("redis_memory_used_bytes", "{{service_id}}")]),
        ("Keyspace hits/s and misses/s", "ops",
         [("rate(redis_keyspace_hits_total[" + RATE + "])", "{{service_id}} hits"),
          ("rate(redis_keyspace_misses_total[" + RATE + "])", "{{service_id}} misses")]),
    ],
    "postgres": [
        ("Transactions committed/s", "ops",
         [("rate(pg_stat_database_xact_commit{datname!~\"template.*\"}[" + RATE + "])", "{{service_id}} {{datname}}")]),
        ("Rows inserted/s", "ops",
         [("rate(pg_stat_database_tup_inserted{datname!~\"template.*\"}[" + RATE + "])", "{{service_id}} {{datname}}")]),
        ("Active connections", "short", [('sum by (service_id, datname) (pg_stat_activity_count{state="active"})',
                                          "{{service_id}} {{datname}}")]),
        ("Server up", "short", [("pg_up", "{{service_id}}")]),
    ],
    "clients": [  # the project's load clients (every kind serves these on /metrics)
        ("Requests/s", "reqps", [('sum by (service_id, outcome) (rate(orch_client_requests_total[' + RATE + ']))',
                                  "{{service_id}} {{outcome}}")]),
        ("Latency p50 / p99", "s",
         [("histogram_quantile(0.5, sum by (le, service_id) (rate(orch_client_latency_seconds_bucket[" + RATE + "])))",
           "{{service_id}} p50"),
          ("histogram_quantile(0.99, sum by (le, service_id) (rate(orch_client_latency_seconds_bucket[" + RATE
           + "])))", "{{service_id}} p99")]),
        ("In flight", "short", [("orch_client_in_flight", "{{service_id}}")]),
        ("Client CPU per request", "s",
         [("rate(orch_client_overhead_seconds_sum[" + RATE + "]) / rate(orch_client_overhead_seconds_count[" + RATE
           + "])", "{{service_id}}")]),
    ],
}


def _engine_panels(key: str) -> list[tuple[str, str, list[tuple[str, str]]]]:
    """An LLM engine's dashboard from its row of the engines table."""
    e = ENGINES[key]
    out = []
    for title, unit, metric, kind in (("Requests/s", "reqps", e.requests, "rate"),
                                      ("Output tokens/s", "short", e.output_tokens, "rate"),
                                      ("Prompt tokens/s", "short", e.input_tokens, "rate"),
                                      ("Requests running", "short", e.running, "gauge"),
                                      ("Requests waiting", "short", e.waiting, "gauge"),
                                      ("Latency p50 / p99", "s", e.latency_histogram, "histogram"),
                                      ("Time to first token p50 / p99", "s", e.ttft_histogram, "histogram"),
                                      ("Time per output token p50 / p99", "s", e.tpot_histogram, "histogram"),
                                      ("Inter-token latency p50 / p99", "s", e.itl_histogram, "histogram"),
                                      ("Queue time p50 / p99", "s", e.queue_histogram, "histogram"),
                                      ("KV cache usage", "percentunit", e.cache_usage, "gauge")):
        if metric is None:
            continue
        if kind == "rate":
            targets = [(f"sum by (service_id) (rate({metric}[{RATE}]))", "{{service_id}}")]
        elif kind == "gauge":
            targets = [(f"sum by (service_id) ({metric})", "{{service_id}}")]
        else:
            targets = [(f"histogram_quantile({q}, sum by (le, service_id) (rate({metric}_bucket[{RATE}])))",
                        f"{{{{service_id}}}} p{int(q * 100)}") for q in (0.5, 0.99)]
        out.append((title, unit, targets))
    return out


PANELS["vllm"] = _engine_panels("vllm")
PANELS["llamacpp"] = _engine_panels("llamacpp")


def dashboard(name: str) -> dict:
    panels = []
    for i, (title, unit, targets) in enumerate(PANELS[name]):
        panels.append({
            "id": i + 1, "type": "timeseries", "title": title,
            "gridPos": {"h": 8, "w": 12, "x": 12 * (i % 2), "y": 8 * (i // 2)},
            "datasource": {"type": "prometheus", "uid": DATASOURCE_UID},
            "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
            "options": {"legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
                        "tooltip": {"mode": "multi", "sort": "none"}},
            "targets": [{"refId": chr(ord("A") + j), "expr": expr, "legendFormat": legend,
                         "datasource": {"type": "prometheus", "uid": DATASOURCE_UID}}
                        for j, (expr, legend) in enumerate(targets)],
        })
    return {"uid": f"orch-{name}", "title": f"orchestrator: {name}", "tags": ["slurm-ai-orchestrator"],
            "schemaVersion": SCHEMA_VERSION, "version": 1, "editable": True, "timezone": "browser",
            "refresh": "5s", "time": {"from": "now-30m", "to": "now"}, "panels": panels,
            "templating": {"list": []}, "annotations": {"list": []}}


PASSWORD_MARK = "__ORCH_PROMETHEUS_PASSWORD__"   # the grafana recipe writes the monitor's secret here at start


def provisioning(prometheus_url: str) -> dict[str, str]:
    """{relative path: file content} of a Grafana provisioning directory. The datasource logs in to the
    monitor (basic auth, user orch); its password is filled in on the node, from the monitor's job dir."""
    files = {
        "datasources/prometheus.yaml": "apiVersion: 1\ndatasources:\n"
        f"  - name: Prometheus\n    type: prometheus\n    uid: {DATASOURCE_UID}\n    access: proxy\n"
        f"    url: {json.dumps(prometheus_url)}\n    isDefault: true\n    editable: false\n"
        f"    basicAuth: true\n    basicAuthUser: orch\n    secureJsonData:\n"
        f"      basicAuthPassword: {json.dumps(PASSWORD_MARK)}\n",
        "dashboards/orchestrator.yaml": "apiVersion: 1\nproviders:\n  - name: orchestrator\n    type: file\n"
        "    disableDeletion: true\n    options:\n      path: ${GF_PATHS_PROVISIONING}/dashboards/json\n",
    }
    for name in PANELS:
        files[f"dashboards/json/{name}.json"] = json.dumps(dashboard(name), indent=2)
    return files


def queries() -> list[tuple[str, str, str]]:
    """(dashboard, panel, PromQL) of every panel target: what the tests run against Prometheus."""
    return [(name, title, expr) for name, panels in PANELS.items() for title, _, targets in panels
            for expr, _ in targets]


__all__ = ["dashboard", "provisioning", "queries", "PANELS"]
