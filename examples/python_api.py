#!/usr/bin/env python3
"""The Python API end to end: a service, a monitor scraping it, PromQL from the laptop.

    ORCH_CONFIG=/var/lib/orch-sandbox/config.yaml .venv/bin/python examples/python_api.py

Everything it starts is stopped at the end, also on Ctrl-C.
"""

import time

from orchestrator import BenchmarkOrchestrator


def main() -> None:
    with BenchmarkOrchestrator() as orch:           # config: $ORCH_CONFIG, else ./config.yaml
        sid = mid = None
        try:
            recipe = orch.load_recipe("standin-llm")    # by name, or a path to a YAML file
            sid = orch.servers.start_service(recipe, wait=True, progress=print)
            ep = orch.servers.get_service_endpoint(sid)
            print(f"service {sid} on {ep.host}:{ep.port} (reachable from the login node)")

            mid = orch.monitors.start_monitor("prometheus", [sid], scrape_interval="2s", progress=print)
            for _ in range(30):                         # the first scrape lands within a few seconds
                up = orch.monitors.query_result(mid, f'up{{service_id="{sid}"}}')  # the service and its node exporter
                if len(up.series) == 2 and all(s.values[0][1] == 1 for s in up.series):
                    break
                time.sleep(1)
            for s in up.series:
                print(f"up{{job={s.labels['job']!r}}} = {s.values[0][1]:g}")
            running = orch.monitors.query_result(mid, "vllm:num_requests_running")
            print(f"requests running on the service: {running.series[0].values[0][1]:g}")
            for row in orch.servers.list_running_services():
                if row.service_id in (sid, mid):
                    print(row.line())
        finally:   # a monitor is stopped as a monitor: monitors.json then says so, and its exporters stop too
            if mid is not None:
                orch.monitors.stop(mid)
                print("stopped monitor", mid)
            if sid is not None:
                orch.servers.stop_service(sid)
                print("stopped service", sid)


if __name__ == "__main__":
    main()
