"""Sweeps, regression verdicts and exact reruns on the sandbox, against the stand-in service."""

import hashlib
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]
STANDIN = (ROOT / "recipes" / "services" / "standin-llm.yaml").read_text()

BENCH = """benchmark:
  name: {name}
  services:
    - recipe: {service}
      as: standin
  monitor: {{recipe: prometheus, scrape_interval: 1s}}
  clients:
    - kind: openai-completions
      target: standin
      concurrency: {concurrency}
      duration: {duration}
      warmup: 1s
      payload: {{model: standin, prompt: "hello", stream: true, max_tokens: 24}}
{extra}"""


def cli(config, cwd, *args, check=True):
    env = dict(os.environ, ORCH_CONFIG=str(config))
    proc = subprocess.run([sys.executable, str(ROOT / "main.py"), *args], capture_output=True, text=True, env=env,
                          cwd=cwd, timeout=600)
    if check and proc.returncode != 0:
        raise AssertionError(f"{args} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
    return proc


def service_recipe(path: Path, tokens_per_second: int) -> Path:
    text = STANDIN.replace("name: standin-llm", "name: standin").replace(
        "--tokens-per-second 100", f"--tokens-per-second {tokens_per_second}")
    path.write_text(text)
    return path


def measured_by_point(d: Path) -> dict[str, list[dict]]:
    report = json.loads((d / "report.json").read_text())
    windows = {p["label"]: p["window"] for p in report["manifest"]["points"]}
    out = {label: [] for label in windows}
    for line in (d / "requests.jsonl").read_text().splitlines():
        r = json.loads(line)
        w = windows[r["point"]]
        if not r["warmup"] and w["start"] <= r["start"] <= w["end"]:
            out[r["point"]].append(r)
    return out


def test_concurrency_sweep_finds_saturation_and_slo_limit_consistent_with_raw_data(sandbox_config_path, tmp_path):
    svc = service_recipe(tmp_path / "standin.yaml", 100)
    bench = tmp_path / "sweep.yaml"
    bench.write_text(BENCH.format(name="e2e-sweep", service=svc, concurrency=1, duration="5s",
                                  extra="  sweep: {concurrency: [1, 2, 4, 8]}\n  slo: {p99_latency: 400ms}\n"))
    cli(sandbox_config_path, tmp_path, "bench", "run", str(bench), "--out", str(tmp_path / "s"))
    d = tmp_path / "s"
    report = json.loads((d / "report.json").read_text())
    verdicts = {v["kind"]: v for v in report["verdicts"]}
    # independent computation from the raw records of each point's measured window
    raw = {}
    for label, recs in measured_by_point(d).items():
        window = next(p["window"] for p in report["manifest"]["points"] if p["label"] == label)
        ok = sorted(r["latency_s"] for r in recs if r["ok"])
        raw[label] = {"throughput": len(ok) / (window["end"] - window["start"]),
                      "p99": statistics.quantiles(ok, n=100, method="inclusive")[98]}
    best = max(raw, key=lambda k: raw[k]["throughput"])
    assert verdicts["saturation"]["label"] == best
    meeting = [k for k in raw if raw[k]["p99"] <= 0.4]
    assert verdicts["slo"]["label"] == max(meeting, key=lambda k: raw[k]["throughput"])
    # the stand-in has 4 slots: past concurrency 4, only latency grows
    assert best in ("concurrency=4", "concurrency=8") and verdicts["slo"]["label"] == "concurrency=4"
    assert verdicts["knee"]["label"] == "concurrency=4"
    assert raw["concurrency=8"]["p99"] > 1.5 * raw["concurrency=4"]["p99"]
    for v in verdicts.values():
        assert v["text"].endswith(".") and any(ch.isdigit() for ch in v["text"])
    html = (d / "report.html").read_text()
    assert "Throughput vs concurrency" in html and "knee" in html and html.count("points/") >= 4


@pytest.fixture(scope="module")
def baseline(sandbox_config_path, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("exp")
    svc = service_recipe(tmp / "standin.yaml", 100)
    bench = tmp / "bench.yaml"
    bench.write_text(BENCH.format(name="e2e-cmp", service=svc, concurrency=4, duration="6s", extra=""))
    cli(sandbox_config_path, tmp, "bench", "run", str(bench), "--out", str(tmp / "A"))
    return tmp, bench, svc


def test_rerun_uses_the_recorded_recipes_and_compares_clean(baseline, sandbox_config_path):
    tmp, bench, svc = baseline
    a = tmp / "A"
    ma = json.loads((a / "MANIFEST.json").read_text())
    # edit both recipe files on disk after the session
    bench.write_text(bench.read_text().replace("concurrency: 4", "concurrency: 1"))
    svc.write_text(svc.read_text().replace("--tokens-per-second 100", "--tokens-per-second 10"))
    cli(sandbox_config_path, tmp, "rerun", str(a), "--out", str(tmp / "B"))
    mb = json.loads((tmp / "B" / "MANIFEST.json").read_text())
    assert mb["rerun_of"] == ma["session"]
    assert mb["benchmark_recipe"]["sha256"] == ma["benchmark_recipe"]["sha256"]
    assert mb["benchmark_recipe"]["sha256"] != hashlib.sha256(bench.read_text().encode()).hexdigest()
    assert mb["service_recipes"]["standin"]["text"] == ma["service_recipes"]["standin"]["text"]
    assert "--tokens-per-second 100" in mb["service_recipes"]["standin"]["text"]
    assert mb["tool_version"] and "git_commit" in mb and mb["runtime"]
    sids = [j["service_id"] for j in mb["jobs"] if j["role"] == "service"]
    assert any(line.startswith("binary: ") for line in mb["runtime"][sids[0]]["runtime"])
    assert any(o.startswith("--mem=") for o in mb["runtime"][sids[0]]["sbatch"])
    proc = cli(sandbox_config_path, tmp, "report", "compare", str(a), str(tmp / "B"))
    assert "no regression beyond the thresholds" in proc.stdout


def test_compare_against_a_slowed_service_reports_a_regression_and_exits_non_zero(baseline, sandbox_config_path):
    tmp, _, _ = baseline
    slow = service_recipe(tmp / "standin-slow.yaml", 40)
    bench = tmp / "slow.yaml"
    bench.write_text(BENCH.format(name="e2e-cmp", service=slow, concurrency=4, duration="6s", extra=""))
    cli(sandbox_config_path, tmp, "bench", "run", str(bench), "--out", str(tmp / "C"))
    proc = cli(sandbox_config_path, tmp, "report", "compare", str(tmp / "A"), str(tmp / "C"),
               "--threshold", "p99=10%", "--threshold", "throughput=10%", check=False)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    line = next(l for l in proc.stdout.splitlines() if l.startswith("latency_p99 "))
    assert line.rstrip().endswith("REGRESSION")
    assert "REGRESSION in" in proc.stdout


def test_a_search_bisects_to_the_highest_rate_that_meets_the_slo(sandbox_config_path, tmp_path):
    """The stand-in serves 4 requests at once at 100 tokens/s each: about 14 requests/s of 24 tokens.
    Above that a queue forms and p99 latency passes 600 ms; the search finds where, in few points."""
    svc = service_recipe(tmp_path / "standin.yaml", 100)
    bench = tmp_path / "search.yaml"
    text = BENCH.format(name="e2e-search", service=svc, concurrency=64, duration="4s",
                        extra="  search: {rate: [2, 40], slo: {latency_p99: 600ms}, max_points: 7}\n")
    bench.write_text(text.replace("      concurrency: 64\n", "      concurrency: 64\n      rate: 2\n"))
    cli(sandbox_config_path, tmp_path, "bench", "run", str(bench), "--out", str(tmp_path / "s"))
    report = json.loads((tmp_path / "s" / "report.json").read_text())
    search = report["search"]
    tried = [(p["value"], p["passed"]) for p in search["points"]]
    assert tried[0] == (2, True) and tried[1] == (40, False) and len(tried) <= 7
    best = max(v for v, ok in tried if ok)
    assert search["answer"] == best and 5 < best < 20
    assert all(not ok for v, ok in tried if v > best)
    # each point's verdict, from its own raw records: the answer's p99 within the SLO, the next above it not
    by_point = measured_by_point(tmp_path / "s")
    labels = {p["value"]: p["point"] for p in search["points"]}

    def p99(records):
        lat = sorted(r["latency_s"] for r in records if r["ok"])
        return statistics.quantiles(lat, n=100, method="inclusive")[98]
    assert p99(by_point[labels[best]]) <= 0.6
    above = min(v for v, ok in tried if v > best)
    point = json.loads((tmp_path / "s" / "points" / next(
        d.name for d in (tmp_path / "s" / "points").iterdir() if d.name.endswith(f"rate={above}")) / "report.json").read_text())
    assert p99(by_point[labels[above]]) > 0.6 or point["valid"] is False
    assert report["valid"] and "Search: the highest rate" in (tmp_path / "s" / "report.html").read_text()
