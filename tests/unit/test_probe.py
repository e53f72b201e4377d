from orchestrator.services.probe import parse_probe, parse_sacct_line, probe_script


def test_running_service_probe_recorded(data):
    p = parse_probe(data("probe_running.txt"))
    assert (p.job_id, p.service_id) == ("5", "python-http_b22ee5da")
    assert p.job.state == "RUNNING" and p.job.nodes == ["n1"]
    assert p.endpoint["ports"] == [51401] and p.endpoint["static"]["health_path"] == "/endpoint.json"
    assert p.health_code == "200" and p.health_url == "http://n1:51401/endpoint.json" and p.healthy
    assert "starting on n1" in p.log


def test_cancelled_service_probe_recorded(data):
    p = parse_probe(data("probe_cancelled.txt"))
    assert p.job.state == "CANCELLED" and p.health_code is None and not p.healthy
    assert "CANCELLED AT" in p.log


def test_half_written_endpoint_is_treated_as_absent():
    p = parse_probe('@@ids 7 x_0123abcd\n@@job\n@@endpoint\n{"job_id": "7", "no')
    assert p.endpoint is None and p.job is None


def test_sacct_fallback_line():
    job = parse_sacct_line("SACCT|123|svc_0123abcd|CANCELLED by 1001|00:01:02|n[1-2]|0:15")
    assert (job.job_id, job.state, job.nodes, job.exit_code) == ("123", "CANCELLED", ["n1", "n2"], "0:15")


def test_probe_script_quotes_identifiers():
    script = probe_script("~/w d", service_id="x_0123abcd", job_id=None)
    assert "WD=\"$HOME\"/'w d'" in script and "--name=x_0123abcd" in script
