"""Replicas on the sandbox: `replicas: N` on a service recipe is N jobs; a client aimed at it runs one job
per replica with its share of the load; the report gives each replica's KPIs and the total, and the
cross-check compares each replica's own engine counter (and their sum) with the requests it served."""

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from orchestrator import BenchmarkOrchestrator
from tests.e2e.conftest import live_job_names

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]

BENCH = """benchmark:
  name: %(name)s
  services: [{recipe: %(recipe)s}]
  monitor: {recipe: prometheus, scrape_interval: 1s}
  clients:
    - kind: openai-completions
      target: %(target)s
      concurrency: 4
      %(bound)s
      warmup: 0s
      payload: {model: test-model, prompt: "the quick brown fox", max_tokens: 16, stream: true, ignore_eos: true}
%(sweep)s"""


def run(config, tmp_path, text, name="replicas"):
    (tmp_path / f"{name}.yaml").write_text(text)
    out = tmp_path / name
    proc = subprocess.run([sys.executable, str(ROOT / "main.py"), "bench", "run", str(tmp_path / f"{name}.yaml"),
                           "--out", str(out)], capture_output=True, text=True, cwd=tmp_path, timeout=900,
                          env=dict(os.environ, ORCH_CONFIG=str(config)))
    return proc, out


def recipe_with(tmp_path, base: str, name: str, extra: str, replace: tuple[str, str] = ("", "")) -> Path:
    text = (ROOT / "recipes/services" / f"{base}.yaml").read_text().replace(f"name: {base}\n", f"name: {name}\n{extra}")
    path = tmp_path / f"{name}.yaml"
    path.write_text(text.replace(*replace) if replace[0] else text)
    return path


def test_two_llamacpp_replicas_report_each_and_the_total_against_their_own_counters(sandbox_config_path, tmp_path):
    recipe = recipe_with(tmp_path, "llamacpp", "llamacpp", "  replicas: 2\n")
    proc, out = run(sandbox_config_path, tmp_path, BENCH % {
        "name": "two-replicas", "recipe": recipe, "target": "llamacpp", "bound": "requests: 400", "sweep": ""})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads((out / "report.json").read_text())
    records = [json.loads(line) for line in (out / "requests.jsonl").read_text().splitlines()]
    assert len(records) == 400 and all(r["ok"] for r in records)
    assert sum(r["target"] == "llamacpp-r1" for r in records) == sum(r["target"] == "llamacpp-r2" for r in records) == 200
    rows = {r["replica"]: r for r in report["replicas"]}
    assert set(rows) == {"llamacpp-r1", "llamacpp-r2", "total"}
    # each replica's requests in the measured window, counted here from the records that name their replica
    w = report["window"]
    inside = [r for r in records if w["start"] <= r["start"] <= w["end"]]
    for replica in ("llamacpp-r1", "llamacpp-r2"):
        assert rows[replica]["requests_ok"] == sum(r["target"] == replica for r in inside) > 0
    assert rows["total"]["requests_ok"] == len(inside)
    assert rows["total"]["throughput"] == pytest.approx(rows["llamacpp-r1"]["throughput"] + rows["llamacpp-r2"]["throughput"])
    # the engines' own counters: per replica and summed, each within the window's edge tolerance
    checks = {(c["service"], c["what"]): c for c in report["cross_check"]}
    for replica in ("llamacpp-r1", "llamacpp-r2"):
        c = checks[(replica, "output tokens")]
        assert c["metric"] == "llamacpp:tokens_predicted_total" and c["agree"] is True, c
        assert rows[replica]["engine_output_tokens_counted"] == c["engine_count"]
    total = checks[("llamacpp (2 replicas)", "output tokens")]
    assert total["agree"] is True and total["engine_count"] == (
        checks[("llamacpp-r1", "output tokens")]["engine_count"] + checks[("llamacpp-r2", "output tokens")]["engine_count"])
    assert rows["total"]["engine_output_tokens_counted"] == total["engine_count"]
    html = (out / "report.html").read_text()
    assert "<h2>Replicas</h2>" in html and "llamacpp-r2" in html
    # two service jobs, both stopped
    with BenchmarkOrchestrator(sandbox_config_path) as orch:
        services = [s for s in report["logs"] if s["role"] == "service"]
        assert len(services) == 2 and all(orch.servers.registry.record(s["service_id"]).state == "CANCELLED" for s in services)


def test_a_sweep_over_replicas_gives_the_scaling_table(sandbox_config_path, tmp_path):
    recipe = recipe_with(tmp_path, "standin-llm", "standin-llm", "")
    proc, out = run(sandbox_config_path, tmp_path, BENCH % {
        "name": "scaling", "recipe": recipe, "target": "standin-llm", "bound": "duration: 6s",
        "sweep": "  sweep: {services.standin-llm.replicas: [1, 2, 3]}\n"}, "scaling")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads((out / "report.json").read_text())
    scaling = {s["replicas"]: s for s in report["scaling"]}
    points = {p["x"]: p for p in report["points"]}
    assert set(scaling) == {1, 2, 3} and not report["errors"], report["errors"]
    for n, s in scaling.items():
        assert s["throughput"] == points[n]["throughput"]
        assert s["efficiency"] == pytest.approx(points[n]["throughput"] / (n * points[1]["throughput"]))
    assert scaling[1]["efficiency"] == pytest.approx(1.0)
    # the point at 2 replicas had two service jobs and two client jobs, each replica's share named
    two = json.loads((out / "points" / next(d.name for d in (out / "points").iterdir() if d.name.endswith("replicas=2"))
                      / "report.json").read_text())
    assert {r["replica"] for r in two["replicas"]} == {"standin-llm-r1", "standin-llm-r2", "total"}
    assert "Scaling over replicas" in (out / "report.html").read_text()


@pytest.mark.parametrize("policy", ["stop", "measure_others"])
def test_a_replica_that_never_becomes_ready(sandbox_config_path, tmp_path, policy):
    """The second replica to start finds the first's mark and exits: `replica_not_ready` says whether the
    session stops or measures the other; nothing is left running either way."""
    mark = f"$HOME/.orchestrator/replica-mark-{uuid.uuid4().hex[:8]}"
    recipe = recipe_with(tmp_path, "standin-llm", "standin-llm", f"  replicas: 2\n  replica_not_ready: {policy}\n",
                         ("command: python3", f"command: mkdir {mark} 2>/dev/null || exit 3; python3"))
    proc, out = run(sandbox_config_path, tmp_path, BENCH % {
        "name": f"unready-{policy.replace('_', '-')}", "recipe": recipe, "target": "standin-llm",
        "bound": "requests: 20", "sweep": ""})
    text = proc.stdout + proc.stderr
    with BenchmarkOrchestrator(sandbox_config_path) as orch:
        orch.transport.run(f"rmdir {mark}")
        names = live_job_names(orch.transport)
    assert not [n for n in names if n.startswith("standin-llm_") or n.startswith("client-")], names
    if policy == "stop":
        assert proc.returncode != 0 and "ended FAILED before it was ready" in text, text
        return
    assert proc.returncode == 0, text
    report = json.loads((out / "report.json").read_text())
    assert any("never became ready and was not measured" in e for e in report["errors"]), report["errors"]
    rows = {r["replica"]: r for r in report["replicas"]}
    measured = [n for n in rows if n != "total"]
    assert len(measured) == 1 and rows["total"]["requests_ok"] == 20
