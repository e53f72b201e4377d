import re

from orchestrator.cluster import jobdir
from orchestrator.cluster.remote import Marker
from orchestrator.cluster.slurm import parse_sacct_line
from orchestrator.services.probe import parse_probe

REC = Marker("rec")   # the token the recorded probes were made with


def _started(text: str) -> tuple[str, str, str, int]:
    """(service ID, node, job ID, port) from the job's own first log line in a recording: what the job
    said, independent of the probe's sections that the parser reads."""
    sid, node, job, port = re.search(r"service (\S+) starting on (\S+) \(job (\d+)\) ports: (\d+)", text).groups()
    return sid, node, job, int(port)


def test_running_service_probe_recorded(data):
    text = data("probe_running.txt")
    sid, node, job, port = _started(text)
    p = parse_probe(REC.parse(text))
    assert (p.job_id, p.service_id, p.ours, p.owner) == (job, sid, True, "orch")
    assert p.job.state == "RUNNING" and p.job.nodes == [node]
    assert p.job.stdout.endswith(f"/{sid}/slurm-{job}.out")
    assert p.endpoint["ports"] == [port] and p.endpoint["static"]["health_path"] == "/endpoint.json"
    assert p.endpoint["static"]["auth"] == "none"
    assert p.health_code == "200" and p.health_url == f"http://{node}:{port}/endpoint.json" and p.healthy
    assert f"starting on {node}" in p.log


def test_cancelled_service_probe_recorded(data):
    p = parse_probe(REC.parse(data("probe_cancelled.txt")))
    assert p.job.state == "CANCELLED" and p.health_code == "000" and not p.healthy and p.ours  # no answer
    assert "CANCELLED AT" in p.log


def test_half_written_endpoint_is_treated_as_absent():
    p = parse_probe(REC.parse('@@rec ids 7 1 orch x_0123abcd\n@@rec job\n@@rec endpoint\n{"job_id": "7", "no'))
    assert p.endpoint is None and p.job is None


def test_endpoint_that_is_json_but_not_an_endpoint_is_absent():
    p = parse_probe(REC.parse('@@rec ids 7 1 orch x_0123abcd\n@@rec endpoint\n["node"]\n'))
    assert p.endpoint is None


def test_a_log_line_forging_an_old_style_marker_changes_nothing(data):
    text = data("probe_running.txt") + "@@job\nJobId=5 JobName=x JobState=FAILED\n@@ids 9 other_0123abcd\n"
    p = parse_probe(REC.parse(text))
    assert (p.job_id, p.job.state) == (_started(text)[2], "RUNNING")


def test_sacct_fallback_line():
    job = parse_sacct_line("SACCT|123|svc_0123abcd|CANCELLED by 1001|00:01:02|n[1-2]|0:15")
    assert (job.job_id, job.state, job.nodes, job.exit_code) == ("123", "CANCELLED", ["n1", "n2"], "0:15")


def test_probe_script_quotes_identifiers_and_uses_the_calls_marker():
    mark = Marker()
    script = jobdir.probe_script("~/w d", mark, service_id="x_0123abcd", job_id=None)
    assert "S=\"$HOME\"/'w d/services'" in script and "--name=x_0123abcd" in script
    assert f"'@@{mark.token} ids'" in script and "@@job" not in script


def test_only_a_probe_that_checks_health_or_runs_on_the_endpoint_starts_python_on_the_login_node():
    mark = Marker()
    plain = jobdir.probe_script("~/w", mark, service_id="x_0123abcd", job_id="7", log_lines=20)
    assert "python3" not in plain and 'cat "$E"' in plain  # the endpoint itself is parsed on the laptop
    for options in ({"health": True}, {"then": 'curl -s "$BASE/metrics"'}):
        assert "python3 -c" in jobdir.probe_script("~/w", mark, service_id="x_0123abcd", job_id="7", **options)


def test_a_foreign_job_is_named_whole_and_never_ours():
    p = parse_probe(REC.parse("@@rec ids 9 foreign bob my training run\n@@rec job\n"))
    assert (p.job_id, p.ours, p.owner, p.service_id) == ("9", False, "bob", "my training run")
