#!/usr/bin/env python3
"""Seed 001's monitor walkthrough with the Python API: a service, Prometheus watching it, metrics
collected to files, a report, and everything stopped.

    ORCH_CONFIG=/var/lib/orch-sandbox/config.yaml .venv/bin/python examples/monitor_example.py [RECIPE]

RECIPE is the service to monitor (default: standin-llm, which runs anywhere with python3; on a real
cluster, e.g. ollama or vllm). Metrics land in ./metrics/, the report in ./monitor_report.json.
Everything it starts is stopped at the end, also on Ctrl-C.
"""

import sys
import time

from orchestrator import BenchmarkOrchestrator


def main(service_recipe: str = "standin-llm") -> int:
    orchestrator = BenchmarkOrchestrator()          # config: $ORCH_CONFIG, else ./config.yaml
    service_id = monitor_id = None
    try:
        # 1. Monitor a running service
        service_id = orchestrator.servers.start_service(orchestrator.load_recipe(service_recipe), wait=True,
                                                        progress=print)
        monitor_recipe = orchestrator.load_recipe("recipes/services/prometheus.yaml")
        monitor_id = orchestrator.monitors.start_monitor(monitor_recipe, [service_id], scrape_interval="5s",
                                                         progress=print)
        status = orchestrator.monitors.check_monitor_status(monitor_id)
        assert status["status"] == "running", status
        print(f"Service running on: {orchestrator.servers.get_service_host(service_id)}")
        print(f"Prometheus at: {orchestrator.monitors.get_monitor_endpoint(monitor_id)} (on the cluster)")

        # the first scrapes land within a scrape interval or two
        for _ in range(30):
            up = orchestrator.monitors.query_metrics(monitor_id, f'up{{service_id="{service_id}"}}')
            if up["data"]["result"] and all(r["value"][1] == "1" for r in up["data"]["result"]):
                break
            time.sleep(1)
        orchestrator.monitors.show_metrics(monitor_id)   # `up` of every target, as a table

        # 2. Continuous metric collection (every 5 s here; the seed's loop waits 5 minutes)
        for _ in range(3):
            timestamp = int(time.time())
            ok = orchestrator.monitors.collect_metrics_to_file(monitor_id, "up", f"metrics_{timestamp}.json")
            print(f"Metrics collected at {timestamp}: {'metrics/metrics_%d.json' % timestamp if ok else 'FAILED'}")
            time.sleep(5)

        # 3. End-of-session report, then stop the monitor (and its service)
        if orchestrator.monitors.construct_report(monitor_id, "monitor_report.json"):
            print("Report: monitor_report.json")
        return 0
    finally:
        if monitor_id is not None:
            print("monitor stopped" if orchestrator.monitors.stop_monitor(monitor_id) else "monitor NOT stopped")
        if service_id is not None:
            orchestrator.servers.stop_service(service_id)
            print(f"service {service_id} stopped")
        orchestrator.close()


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:2]))
