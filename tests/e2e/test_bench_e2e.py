"""A whole benchmark session on the sandbox against the stand-in service."""

import json
import re
import shutil
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.e2e.conftest import completed_between, live_job_names
from tests.pngcheck import colour_counts

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]

BENCH = """benchmark:
  name: e2e-bench
  services:
    - recipe: standin-llm
  monitor: {{recipe: prometheus, scrape_interval: 1s}}
  clients:
    - kind: openai-completions
      target: standin-llm
      concurrency: 6
      duration: {duration}
      warmup: 2s
      payload: {{model: standin, prompt: "hello world", stream: true, max_tokens: 16}}
"""


@pytest.fixture(scope="module")
def session(sandbox_config_path, tmp_path_factory):
    """One session through the CLI, exactly as a user runs it."""
    tmp = tmp_path_factory.mktemp("bench")
    recipe = tmp / "e2e-bench.yaml"
    recipe.write_text(BENCH.format(duration="8s"))
    import os
    env = dict(os.environ, ORCH_CONFIG=str(sandbox_config_path), ORCH_STATS="1")
    proc = subprocess.run([sys.executable, str(ROOT / "main.py"), "--recipe", str(recipe)], capture_output=True,
                          text=True, env=env, cwd=tmp, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "/report.html" in proc.stdout.splitlines()[-1]  # the session's artifact path is printed
    results = tmp / "results"  # results_dir default: results/ under the current directory
    dirs = list(results.iterdir()) if results.exists() else []
    assert len(dirs) == 1, f"expected one session dir under {results}: {dirs}\n{proc.stderr}"
    return dirs[0], proc


def test_session_writes_every_artifact(session):
    d, proc = session
    for name in ("requests.jsonl", "metrics_summary.csv", "MANIFEST.json", "report.html", "report.json",
                 "timeseries/cpu_utilisation.csv", "timeseries/throughput.csv"):
        assert (d / name).exists(), name
    assert (d / "metrics_summary.csv").read_text().splitlines()[0] == "kpi,value,unit,source"
    manifest = json.loads((d / "MANIFEST.json").read_text())
    assert {j["role"] for j in manifest["jobs"]} == {"service", "client", "monitor"}
    assert manifest["service_recipes"]["standin-llm"]["sha256"] and manifest["promql"]
    assert "orch-stats: connections=1 " in proc.stderr  # the whole session on one SSH connection


def test_a_session_takes_at_most_20_remote_commands_counted_by_phase(session):
    # each wait (the service, the monitor, the client, the load) is one command however long it lasts
    _, proc = session
    m = re.search(r"commands=(\d+) \(deploy (\d+), load (\d+), gather (\d+), cleanup (\d+)\)", proc.stderr)
    assert m, proc.stderr[-2000:]
    total, *phases = map(int, m.groups())
    assert sum(phases) == total <= 20
    assert phases[1] <= 3   # the go signal and one stream of the load's progress


def kpis(d):
    return {k["kpi"]: k for k in json.loads((d / "report.json").read_text())["kpis"]}


def test_percentiles_equal_an_independent_computation_over_the_raw_records(session):
    d, _ = session
    report = json.loads((d / "report.json").read_text())
    w0, w1 = report["window"]["start"], report["window"]["end"]
    records = [json.loads(l) for l in (d / "requests.jsonl").read_text().splitlines()]
    lat = sorted(r["latency_s"] for r in records if r["ok"] and not r["warmup"] and w0 <= r["start"] <= w1)
    assert len(lat) > 20
    cuts = statistics.quantiles(lat, n=100, method="inclusive")
    k = kpis(d)
    assert k["latency_p50"]["value"] == pytest.approx(cuts[49], abs=1e-12)
    assert k["latency_p95"]["value"] == pytest.approx(cuts[94], abs=1e-12)
    assert k["latency_p99"]["value"] == pytest.approx(cuts[98], abs=1e-12)
    assert k["requests_ok"]["value"] == len(lat)


def test_request_count_equals_what_the_service_counted(session):
    d, _ = session
    records = [json.loads(l) for l in (d / "requests.jsonl").read_text().splitlines()]
    k = kpis(d)
    assert k["service_requests_counted"]["source"] == "prometheus"
    # the service's counter between its scrapes that bound the measured window, and the client's requests
    # that completed between the same instants (the stand-in counts a request when it ends)
    between = json.loads((d / "report.json").read_text())["counted_between"]["standin-llm"]
    inside = completed_between(records, between)
    assert 0 < inside < sum(r["ok"] for r in records)   # the warm-up is outside
    row = next(c for c in json.loads((d / "report.json").read_text())["cross_check"] if c["what"] == "requests")
    # requests in flight at a scrape may count on one side only: the row's tolerance is their number
    assert row["client"] == inside and row["agree"] is True
    assert abs(k["service_requests_counted"]["value"] - inside) <= row["tolerance"] <= 2 * 6  # 6 in flight at most
    assert k["gpu_utilisation"]["value"] is None  # no GPU exporter: absent, never zero
    assert k["cpu_utilisation"]["value"] is not None and k["service_latency_p99"]["value"] is not None


def test_session_left_no_job_behind(session, ssh):
    d, _ = session
    ids = {j["service_id"] for j in json.loads((d / "MANIFEST.json").read_text())["jobs"]}
    assert not ids & live_job_names(ssh)


def test_html_report_renders_in_headless_chromium(session, tmp_path):
    d, _ = session
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    assert chromium, "chromium is installed by scripts/setup.sh"
    shot = tmp_path / "report.png"
    # no network: the page must be self-contained
    html = (d / "report.html").read_text()
    assert "<script" not in html and "http://" not in html.replace('xmlns="http://www.w3.org/2000/svg"', "")
    subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                    "--disable-background-networking", "--disable-component-update", "--disable-sync",
                    f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1100,2400",
                    f"--screenshot={shot}", (d / "report.html").as_uri()],
                   capture_output=True, timeout=120, check=True)
    counts = colour_counts(shot)
    assert counts["dark"] > 5000, "no text rendered"
    assert counts["blue"] > 2000, "no chart strokes rendered"
    assert counts["white"] > 0.5 * 1100 * 2400


def test_ctrl_c_mid_run_stops_every_job_and_keeps_what_was_collected(sandbox_config_path, tmp_path, ssh):
    import os
    recipe = tmp_path / "long.yaml"
    recipe.write_text(BENCH.format(duration="60s"))
    env = dict(os.environ, ORCH_CONFIG=str(sandbox_config_path))
    # Ctrl-C as a terminal sends it, whatever the suite was started from: a shell's background job
    # starts with SIGINT ignored, which Python and every child inherit (Python then installs no
    # KeyboardInterrupt handler), so the tool is started with SIGINT at its default
    proc = subprocess.Popen([sys.executable, str(ROOT / "main.py"), "bench", "run", str(recipe), "--out",
                             str(tmp_path / "out")], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env, cwd=tmp_path, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    seen = []
    deadline = time.monotonic() + 120
    for line in proc.stderr:
        seen.append(line)
        if "load: " in line and " ok," in line and not line.split("load: ")[1].startswith("0 ok"):
            break
        assert time.monotonic() < deadline, "".join(seen)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, "".join(seen) + err
    manifest = json.loads((tmp_path / "out" / "MANIFEST.json").read_text())
    assert manifest["interrupted"] is True
    ids = {j["service_id"] for j in manifest["jobs"]}
    assert len(ids) == 3 and not ids & live_job_names(ssh)
    records = (tmp_path / "out" / "requests.jsonl").read_text().splitlines()
    assert records, "what was collected before Ctrl-C is kept"


def test_report_rerendered_offline_keeps_every_number(session, tmp_path):
    from orchestrator.reports.artifacts import rerender_session
    d, _ = session
    copy = tmp_path / "copy"
    shutil.copytree(d, copy)
    before = kpis(d)
    after = {k["kpi"]: k for k in rerender_session(copy)["kpis"]}
    assert after == before
    assert (copy / "report.html").read_text().count("<svg") >= 5
