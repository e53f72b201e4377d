"""The orchestration code against what the sandbox really answered (tests/fakes.py, tests/scenarios.py):
services, monitoring, benchmark sessions and sweeps, the watcher, with no cluster and as any user."""

import csv
import json
import statistics

import pytest

from orchestrator import BenchmarkOrchestrator
from orchestrator.config import Config, RemoteConfig, SlurmConfig, SSHConfig
from tests.fakes import CASSETTES, ReplayTransport
from tests.scenarios import SCENARIOS


def replay(name, tmp_path, monkeypatch):
    if not (CASSETTES / f"{name}.json").exists():
        pytest.fail(f"no cassette {name}: record it with `python -m tests.record_cassettes {name}` (root, sandbox)")
    t = ReplayTransport(name)
    cfg = Config(ssh=SSHConfig(host="login.replay"), slurm=SlurmConfig(**t.meta["slurm"]),
                 remote=RemoteConfig(work_dir=t.meta["work_dir"]), state_dir=tmp_path / "state",
                 results_dir=tmp_path / "results")
    orch = BenchmarkOrchestrator(cfg, transport=t)
    with t.replaying(monkeypatch):
        out = SCENARIOS[name](orch, tmp_path)
    assert t.finished, f"the tool made {t.position} of the {len(t.calls)} recorded calls"
    return out, t


def replayed(name):
    """A module-wide fixture: the scenario replayed once, its outcome shared by the tests that judge it."""
    @pytest.fixture(scope="module")
    def run(tmp_path_factory):
        mp = pytest.MonkeyPatch()
        try:
            yield replay(name, tmp_path_factory.mktemp(name), mp)[0]
        finally:
            mp.undo()
    return run


services_run = replayed("services")


def test_service_start_waits_through_pending_to_ready_and_is_tracked(services_run):
    r = services_run
    assert any("submitted" in line for line in r["said"]) and any("ready at" in line for line in r["said"])
    listed = {row.service_id: row for row in r["listed"]}
    assert listed[r["sid"]].state == "RUNNING" and listed[r["sid"]].job_id == r["job_id"]
    assert r["tracked"][r["sid"]]["ready_at"]


def test_endpoint_is_the_same_by_service_id_and_by_job_id(services_run):
    ep, by_job = services_run["endpoint"], services_run["endpoint_by_job"]
    assert ep == by_job and ep.url == f"http://{ep.host}:{ep.port}" and ep.host in ep.hosts
    assert ep.health_url == f"http://{ep.host}:{ep.port}/endpoint.json"


def test_logs_and_follow_show_the_jobs_real_output(services_run):
    sid = services_run["sid"]
    assert f"service {sid} starting on" in services_run["log"].log
    assert "ERROR: weights missing" in services_run["followed"]
    assert services_run["crash_end"].state == "FAILED"


def test_health_and_stop_and_final_state(services_run):
    r = services_run
    assert r["health"][0].healthy and r["health"][0].health_code == "200"
    assert r["stopped"].state == "CANCELLED"
    after = {row.service_id: row for row in r["after"]}
    assert after[r["sid"]].state == "CANCELLED"
    assert r["tracked"][r["sid"]]["state"] == "CANCELLED" and r["tracked"][r["sid"]]["stopped_by_user"]


def test_a_service_that_dies_before_ready_says_so_with_its_log(services_run):
    msg = services_run["crash_error"]
    assert msg.startswith("ServiceNotReady") and "ended FAILED before it was ready" in msg
    assert "ERROR: weights missing" in msg


def test_unknown_and_rejected_services_leave_nothing_behind(services_run):
    r = services_run
    assert "no service or job 'nosuch_0123abcd' found" in r["unknown_error"]
    assert r["rejected_error"].startswith("SlurmError") and "nosuch" in r["rejected_error"]
    assert not any(k.startswith("nowhere_") for k in r["tracked"])


def test_stop_of_a_job_this_tool_did_not_start_is_refused_before_scancel(services_run):
    r = services_run
    assert "is not a service started by this tool" in r["refused_error"]
    assert r["foreign_state_after_refusal"] in ("RUNNING", "PENDING")


monitoring_run = replayed("monitoring")


def test_monitor_scrapes_the_service_and_its_exporter(monitoring_run):
    r = monitoring_run
    jobs = {t["job"] for t in r["statuses"][-1]["targets"]}
    assert {"prometheus", r["svc"], f"{r['svc']}-node"} <= jobs
    by_job = {s.labels["job"]: s.values[0][1] for s in r["up"].series}
    assert by_job[r["svc"]] == 1.0 and by_job[f"{r['svc']}-node"] == 1.0
    assert r["via_service"].series[0].values[0][1] == 2.0  # a service is found by the monitor scraping it


def test_range_query_returns_points_at_the_step(monitoring_run):
    series = monitoring_run["range"].series
    assert series and all(len(s.values) > 1 for s in series)
    steps = {round(b[0] - a[0], 3) for s in series for a, b in zip(s.values, s.values[1:])}
    assert steps == {1.0}


def test_bad_promql_shows_prometheus_own_error(monitoring_run):
    assert "Prometheus rejected" in monitoring_run["bad_promql"] and "parse error" in monitoring_run["bad_promql"]


def test_targets_added_and_removed_by_hot_reload(monitoring_run):
    r = monitoring_run
    assert [t.service_id for t in r["added"]] == [r["plain"]]
    assert r["plain"] in {t["service_id"] for t in r["with_plain"]["targets"]}
    assert [t.service_id for t in r["removed"]] == [r["plain"]]
    assert r["plain"] not in {t["service_id"] for t in r["record"]["targets"]}


def test_report_collect_list_endpoint_and_stop(monitoring_run):
    r = monitoring_run
    up = r["report"]["metrics"]["up"]["series"]
    assert up and all(s["value"] in (0.0, 1.0) for s in up)
    rows = list(csv.DictReader(r["csv"].splitlines()))
    assert rows and {row["query"] for row in rows} == {"up"}
    assert r["mid"] in {row.service_id for row in r["listed"]}
    assert r["endpoint"]["ui_url"].endswith("/graph") and r["endpoint"]["api_url"].endswith("/api/v1")
    assert r["stopped"].state == "CANCELLED" and r["record"]["stopped_at"]


def test_report_over_any_monitor_window_from_prometheus_alone(monitoring_run):
    k = {x["kpi"]: x for x in monitoring_run["window"]["kpis"]}
    assert k["cpu_utilisation"]["value"] is not None and k["cpu_utilisation"]["source"] == "prometheus"
    assert k["gpu_utilisation"]["value"] is None and k["gpu_utilisation"]["note"].startswith("absent")


def test_monitor_level_node_exporter_runs_on_the_service_node_and_stops_with_it(monitoring_run):
    r = monitoring_run
    nodes = [t for t in r["node_record"]["targets"] if t["kind"] == "node"]
    plain_host = next(t["address"].split(":")[0] for t in r["node_record"]["targets"] if t["service_id"] == r["plain"])
    assert [t["job_name"] for t in nodes] == [f"node-{plain_host}"]
    assert r["node_record"]["exporter_jobs"] and set(r["exporters_after"].values()) == {"CANCELLED"}


def test_monitor_refusals_and_listings(monitoring_run):
    r = monitoring_run
    assert "exporters: [gpu] on the monitor is not possible" in r["gpu_refused"]
    assert "prometheus" in {a["name"] for a in r["available"]}
    assert r["after_stop"].startswith(("OrchestratorError", "PrometheusError")) and "monitor" in r["after_stop"]


session_run = replayed("session")


def test_session_kpis_are_computed_from_the_downloaded_records(session_run):
    d = session_run["dir"]
    report = session_run["report"]
    recs = [json.loads(line) for line in (d / "requests.jsonl").read_text().splitlines()]
    w = report["window"]
    measured = [r for r in recs if not r.get("warmup") and w["start"] <= r["start"] <= w["end"]]  # the documented window
    kpis = {k["kpi"]: k["value"] for k in report["kpis"]}
    ok = [r["latency_s"] for r in measured if r["ok"]]
    assert report["records"]["total"] == len(recs) > 0
    assert kpis["latency_p50"] == pytest.approx(statistics.median(ok))


def test_session_cross_checks_the_services_own_counter(session_run):
    kpis = {k["kpi"]: k for k in session_run["report"]["kpis"]}
    recs = [json.loads(line) for line in (session_run["dir"] / "requests.jsonl").read_text().splitlines()]
    # the engine's counter between its scrapes that bound the measured window, and the client's OK
    # requests that completed between the same two instants (the stand-in counts a request at its end)
    a, b = session_run["report"]["counted_between"]["standin-llm"]
    assert session_run["report"]["window"]["start"] <= a < session_run["report"]["window"]["end"] < b
    inside = sum(1 for r in recs if r["ok"] and a < r["start"] + r["latency_s"] <= b)
    assert 0 < inside < len(recs)   # the warm-up's requests are outside
    assert abs(kpis["service_requests_counted"]["value"] - inside) <= 1
    # how long those two scrapes took, from Prometheus's own scrape_duration_seconds of the engine's target
    assert all(0 < s < 5 for s in session_run["report"]["counter_reads_s"]["standin-llm"])


def test_session_stops_everything_it_started_and_writes_one_manifest(session_run):
    manifest = json.loads((session_run["dir"] / "MANIFEST.json").read_text())
    roles = {j["role"] for j in manifest["jobs"]}
    assert roles == {"service", "monitor", "client"}
    assert set(manifest["runtime"]) >= {manifest["services"]["standin-llm"], manifest["monitor_id"]}
    for j in manifest["jobs"]:
        assert session_run["tracked"][j["service_id"]]["state"] in ("CANCELLED", "COMPLETED")


interrupted_run = replayed("interrupted")


def test_sigterm_mid_load_cancels_every_job_and_writes_what_was_collected(interrupted_run):
    r = interrupted_run
    assert r["ended"] is not None and r["ended"].exit_code == 143
    manifest = json.loads((r["dir"] / "MANIFEST.json").read_text())
    assert manifest["interrupted"] is True
    started = {j["service_id"] for j in manifest["jobs"]}
    assert len(started) == 3 and not started & set(r["squeue_after"])
    assert all(r["tracked"][sid]["state"] == "CANCELLED" for sid in started)
    assert (r["dir"] / "requests.jsonl").read_text().strip(), "the records collected before the signal are kept"


sweep_run = replayed("sweep")


def test_sweep_has_a_report_per_point_and_verdicts(sweep_run):
    d, report = sweep_run["dir"], sweep_run["report"]
    assert [p["label"] for p in report["points"]] == ["concurrency=1", "concurrency=4"]
    for p in json.loads((d / "MANIFEST.json").read_text())["points"]:
        assert (d / p["dir"] / "report.html").exists()
    assert {v["kind"] for v in report["verdicts"]} >= {"saturation", "slo"}
    rows = list(csv.DictReader(open(d / "points.csv")))
    assert [float(r["throughput_rps"]) for r in rows] == [p["throughput"] for p in report["points"]]


watcher_run = replayed("watcher")


def test_watcher_attributes_each_end_from_the_real_log(watcher_run):
    r = watcher_run
    by_sid = {j.get("service_id"): j for j in r["jobs"]}
    assert by_sid[r["ids"]["crash"]]["verdict"] == "non-zero exit: exit code 3"
    assert any("ERROR: weights missing" in e for e in by_sid[r["ids"]["crash"]]["evidence"])
    assert by_sid[r["ids"]["quick"]]["verdict"] == "completed"
    assert by_sid[r["ids"]["sickly"]]["verdict"] == "health check never passed (still running)"
    assert r["services"][r["ids"]["crash"]]["verdict"] == "non-zero exit: exit code 3"


def test_watcher_reports_each_verdict_once_with_its_ids(watcher_run):
    r = watcher_run
    # (this scenario's jobs: the sandbox's earlier jobs, listed ended for MinJobAge, may be explained too)
    reported = [e for e in r["events"] if e.get("verdict") and e.get("service_id") in r["ids"].values()]
    assert len(reported) == len({e["job_id"] for e in reported}) == 2
    assert all(e["service_id"] and e["job_id"] for e in reported)
    assert r["stats"]["reports"] == 1 and r["stats"]["polls"] >= 2
    assert "orch_watch_polls_total" in r["metrics"]



def test_session_cross_check_agrees_with_the_engine_counters(session_run):
    rows = {r["what"]: r for r in session_run["report"]["cross_check"]}
    assert rows["requests"]["agree"] is True
    assert rows["requests"]["metric"] == "vllm:request_success_total (summed over finished_reason)"
    assert rows["output tokens"]["agree"] is True and rows["output tokens"]["client"] > 0
    assert rows["requests"]["engine"].startswith("stand-in")


def test_what_a_command_ships_is_compared_member_by_member():
    from orchestrator.services.servers import job_bundle
    from tests.fakes import shipped
    base = shipped(job_bundle({"job.sbatch": b"#!/bin/bash\n", "clientjob.py": b"warmup_until = 1\n"}))
    assert set(base) == {"job.sbatch", "clientjob.py"} and base["clientjob.py"][0] == "0o600"
    assert shipped(job_bundle({"job.sbatch": b"#!/bin/bash\n", "clientjob.py": b"warmup_end = 1\n"})) != base
    assert shipped(job_bundle({"job.sbatch": b"#!/bin/bash\n"})) != base
    # two bundles of the same files are the same, whatever their tar and gzip timestamps
    assert shipped(job_bundle({"job.sbatch": b"#!/bin/bash\n", "clientjob.py": b"warmup_until = 1\n"})) == base
    salted = [shipped(job_bundle({"web.yml": f"orch: '{h}'\n".encode()})) for h in (
        "$2b$10$rRGkmAFHBok4l/jn04Qr9.qVDnXB97qUYd0Ztp5xOqc9wCb3WMJ/q",
        "$2b$10$abcdefghijklmnopqrstuu0123456789ABCDEFGHIJKLMNOPQRSTU")]
    assert salted[0] == salted[1]   # a bcrypt salt is random: compared as "a bcrypt hash"
    assert shipped("plain text\n") == {"sha256": shipped("plain text\n")["sha256"]}


replicas_run = replayed("replicas")


def test_a_replica_never_ready_is_dropped_and_the_other_measured(replicas_run):
    r = replicas_run
    report = r["report"]
    dropped = [e for e in report["errors"] if "never became ready and was not measured" in e]
    assert len(dropped) == 1
    measured = [row["replica"] for row in report["replicas"] if row["replica"] != "total"]
    assert len(measured) == 1 and measured[0] not in dropped[0]
    total = next(row for row in report["replicas"] if row["replica"] == "total")
    assert total["requests_ok"] == report["records"]["measured"] > 0
    # the dropped replica's job was cancelled (or had already ended); the measured one stopped with the session
    states = {sid: rec.get("state") for sid, rec in r["tracked"].items() if sid.startswith("standin-llm_")}
    assert len(states) == 2 and set(states.values()) <= {"CANCELLED", "FAILED", "COMPLETED"}
    checks = [c for c in report["cross_check"] if c["service"] == measured[0] and c["what"] == "requests"]
    assert checks and checks[0]["agree"] is True


replica_sweep_run = replayed("replica_sweep")


def test_a_sweep_over_replicas_has_its_scaling_table(replica_sweep_run):
    report = replica_sweep_run["report"]
    points = {p["x"]: p for p in report["points"]}
    rows = {s["replicas"]: s for s in report["scaling"]}
    assert set(rows) == {1, 2} and not report["errors"], report["errors"]
    assert rows[2]["ideal"] == pytest.approx(2 * points[1]["throughput"])
    assert rows[2]["efficiency"] == pytest.approx(points[2]["throughput"] / (2 * points[1]["throughput"]))
    # at 2 replicas, each served its share: two client jobs, one per replica, named in the records
    two = json.loads((replica_sweep_run["dir"] / "points" / next(
        d.name for d in (replica_sweep_run["dir"] / "points").iterdir() if d.name.endswith("=2")) / "report.json")
        .read_text())
    per = {row["replica"]: row["requests_ok"] for row in two["replicas"]}
    assert set(per) == {"standin-llm-r1", "standin-llm-r2", "total"} and per["total"] == per["standin-llm-r1"] + \
        per["standin-llm-r2"] and min(per.values()) > 0


search_run = replayed("search")


def test_a_search_runs_low_high_then_the_middle_each_point_on_a_new_service(search_run):
    report, d = search_run["report"], search_run["dir"]
    tried = [(p["value"], p["passed"]) for p in report["search"]["points"]]
    # the stand-in serves about 30 requests/s of 8 tokens: 2 passes, 64 queues past 400 ms, the middle passes
    assert [v for v, _ in tried] == [2, 64, pytest.approx((2 * 64) ** 0.5, rel=1e-4)]
    assert [ok for _, ok in tried] == [True, False, True]
    assert report["search"]["answer"] == tried[2][0] and report["valid"]
    assert report["search"]["points"][-1]["next"].startswith("stopped: 3 points")
    # each point's own report: its cache cold, on a service of its own
    points = [json.loads((d / p["dir"] / "report.json").read_text()) for p in report["manifest"]["points"]]
    assert [p["cache"]["standin-llm"] for p in points] == ["cold: a new service, started for this session"] + \
        ["cold: the service was restarted before this point"] * 2
    services = {j["service_id"] for j in report["manifest"]["jobs"] if j["role"] == "service"}
    assert len(services) == 3, services
    # 64/s is past the stand-in: its 64 slots all busy, the client could not keep the schedule
    assert [p["valid"] for p in points] == [True, False, True]
    assert "concurrency cap" in points[1]["invalid_reasons"][0] and points[1]["delivery"]["achieved_ratio"] < 0.9
    said = "\n".join(search_run["said"])
    assert "search: 2 passed: the high end next (64)" in said and "search: stopped: 3 points (max_points)" in said
