"""`--status` lists what is queued or running; `--status --all` the laptop's whole history, and the short
form says how many ended services it hides."""

import json

import pytest
from click.testing import CliRunner

from orchestrator.cli import common
from orchestrator.cli.main import cli
from orchestrator.services.servers import ServiceStatus

ROWS = [ServiceStatus("41", "vllm_0123abcd", "RUNNING", "0:05:01", "n1"),
        ServiceStatus("42", "redis_89abcdef", "PENDING", "", "", reason="Resources"),
        ServiceStatus("39", "vllm_deadbeef", "CANCELLED", "1:00:00", "n2"),
        ServiceStatus("38", "ollama_00112233", "FAILED", "0:00:03", "n3"),
        ServiceStatus("37", "chroma_44556677", "LEFT_QUEUE", "", "")]


class Registry:
    def records(self):
        return {}


class Servers:
    registry = Registry()

    def list_running_services(self):
        return list(ROWS)


class Orch:
    servers = Servers()

    def close(self):
        pass


@pytest.fixture
def run(monkeypatch):
    monkeypatch.setattr(common.Context, "orch", property(lambda self: Orch()))
    return lambda *args: CliRunner().invoke(cli, list(args))


def test_status_shows_the_live_services_and_counts_the_rest(run):
    r = run("--status")
    assert r.exit_code == 0, r.output
    listed = [line.split(" | ")[1] for line in r.output.splitlines() if " | " in line]
    assert listed == ["vllm_0123abcd", "redis_89abcdef"]
    assert "(3 ended service(s) not shown: --status --all lists them)" in r.output
    rows = json.loads(run("--status", "--json").output)
    assert [x["service_id"] for x in rows] == listed


def test_status_all_lists_every_service(run):
    r = run("--status", "--all", "--json")
    assert [x["service_id"] for x in json.loads(r.output)] == [s.service_id for s in ROWS]
    assert "not shown" not in run("--status", "--all").output


def test_all_without_status_is_a_usage_error(run):
    r = run("--all")
    assert r.exit_code == 2 and "--all goes with --status" in r.output


def test_service_list_is_status_in_the_service_group(run):
    assert run("service", "list").output == run("--status").output
    assert run("service", "list", "--all", "--json").output == run("--status", "--all", "--json").output


def test_prune_forgets_only_ended_services_older_than_asked(tmp_path):
    from orchestrator.services.registry import ServiceRegistry
    from orchestrator.state import StateStore
    store = StateStore(tmp_path, "services")
    store.update("a_00000001", state="CANCELLED", submitted_at="2026-11-01T00:00:00+00:00")
    store.update("b_00000002", state="RUNNING", submitted_at="2026-11-01T00:00:00+00:00")
    store.update("c_00000003", state="FAILED", submitted_at="2026-12-03T23:00:00+00:00")
    store.update("d_00000004", state="UNKNOWN", submitted_at="2026-11-01T00:00:00+00:00")
    store.update("e_00000005", state="COMPLETED")   # no submit time: kept
    reg = ServiceRegistry(store, transport=None)
    from orchestrator.times import parse_time
    assert reg.prune(parse_time("2026-12-01T00:00:00+00:00")) == ["a_00000001"]
    assert sorted(store.load()) == ["b_00000002", "c_00000003", "d_00000004", "e_00000005"]
    assert reg.prune(parse_time("2026-12-04T00:00:00+00:00")) == ["c_00000003"]
