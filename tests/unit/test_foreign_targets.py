"""Targets the tool did not start (monitoring/targets.parse_target, jobtargets) and seed 000's monitor
recipes (monitoring/monitor_recipes.py): what a user types, what it becomes, what is refused."""

import textwrap

import pytest
import yaml

from orchestrator.errors import OrchestratorError, RecipeError
from orchestrator.monitoring.jobtargets import jobs_script, read_tokens, token_files
from orchestrator.monitoring.monitor_recipes import find_monitor_recipe, parse_monitor_recipe
from orchestrator.monitoring.targets import job_targets, parse_target, render_prometheus_config
from orchestrator.cluster.remote import Marker
from orchestrator.resources import RECIPES
from orchestrator.services.recipes import load_recipe


@pytest.mark.parametrize("text, want", [
    ("12345:8000", dict(job_id="12345", port=8000)),
    ("12345_7:9100", dict(job_id="12345_7", port=9100)),
    ("n2:9100", dict(host="n2", port=9100, metrics_path=None, scheme="http")),
    ("10.0.0.5:9100", dict(host="10.0.0.5", port=9100)),
    ("http://gpu01:8000/metrics", dict(host="gpu01", port=8000, metrics_path="/metrics", scheme="http")),
    ("https://exporter.site/node", dict(host="exporter.site", port=443, metrics_path="/node", scheme="https")),
    ("http://gpu01:8000", dict(host="gpu01", port=8000, metrics_path="/metrics")),
    ("vllm_0123abcd", dict(service_id="vllm_0123abcd", host=None, job_id=None)),
    ("12345", dict(service_id="12345")),
])
def test_each_form_a_user_types_becomes_its_target(text, want):
    spec = parse_target(text)
    assert {k: getattr(spec, k) for k in want} == want


@pytest.mark.parametrize("text, says", [
    ("n1:99999", "1 to 65535"),
    ("1:0", "1 to 65535"),
    ("http://n1:8000/metrics?target=x", "no query"),
    ("http://user@n1:8000/", "no user"),
    ("http://n1:8000/a b", "path"),
    ('evil"host:80', "not a host name"),
    ("http://n1:notaport/", "port"),
])
def test_a_bad_target_is_refused_with_what_was_expected(text, says):
    with pytest.raises(OrchestratorError, match=says):
        parse_target(text)


def test_a_token_file_is_only_for_addresses_and_jobs(tmp_path):
    with pytest.raises(OrchestratorError, match="--bearer-file is for addresses"):
        parse_target("vllm_0123abcd", credentials_file="t")
    token = tmp_path / "token"
    token.write_text("s3cret\n")
    specs = [parse_target("https://n1:8443/metrics", credentials_file=str(token)),
             parse_target("77:8000", credentials_file=str(token))]
    names = token_files(specs)
    assert list(names) == [str(token)] and names[str(token)].endswith(".token")
    files = read_tokens(names)
    assert files == {names[str(token)]: "s3cret\n"}
    # the config names the shipped file, never the token; https is kept
    target = job_targets(specs[1], "n4", names[str(token)])
    text = render_prometheus_config("prometheus_1", [target], "5s")
    doc = yaml.safe_load(text.replace("__ORCH_SELF_PORT__", "1"))
    job = doc["scrape_configs"][1]
    assert job["authorization"] == {"credentials_file": names[str(token)]} and "s3cret" not in text
    assert job["static_configs"][0]["targets"] == ["n4:8000"]
    assert job["static_configs"][0]["labels"]["slurm_job_id"] == "77"
    https = render_prometheus_config("prometheus_1", [job_targets(specs[0].__class__(job_id="1", port=1, scheme="https"), "n1")], "5s")
    assert yaml.safe_load(https.replace("__ORCH_SELF_PORT__", "1"))["scrape_configs"][1]["scheme"] == "https"


def test_a_token_file_that_is_missing_or_not_one_line_is_refused(tmp_path):
    with pytest.raises(OrchestratorError, match="cannot read"):
        read_tokens({str(tmp_path / "nope"): "x.token"})
    two = tmp_path / "two"
    two.write_text("a\nb\n")
    with pytest.raises(OrchestratorError, match="one line"):
        read_tokens({str(two): "x.token"})


def test_the_job_lookup_quotes_nothing_it_did_not_check():
    with pytest.raises(OrchestratorError, match="not a SLURM job ID"):
        jobs_script(["12; rm -rf ~"], Marker())
    script = jobs_script(["12", "13_2"], Marker("0" * 16))
    assert "for j in 12 13_2;" in script and "scancel" not in script


SEED_000 = """
name: vllm-monitor
description: Prometheus monitoring for vLLM service

targets:
  - name: vllm-llm
    port: 8000
    metrics_path: /metrics

prometheus:
  enabled: true
  image: docker://prom/prometheus:latest
  scrape_interval: 15s
  retention_time: 24h
  port: 9090
  partition: cpu
  resources:
    cpu_cores: 2
    memory_gb: 4
    gpu_count: 0
"""


def test_seed_000s_recipe_as_written_becomes_the_prometheus_job_it_describes():
    m = parse_monitor_recipe(yaml.safe_load(SEED_000), "vllm-monitor.yml")
    assert [(s.job_id, s.port, s.metrics_path, s.job_name) for s in m.specs("12345")] == \
        [("12345", 8000, "/metrics", "vllm-llm")]
    p = m.prometheus(load_recipe("prometheus"))
    assert p.name == "prometheus"   # its jobs are monitors like any other
    assert (p.scrape_interval, p.retention_time, p.ports) == ("15s", "24h", (9090,))
    assert (p.resources.partition, p.resources.cpus_per_task, p.resources.mem, p.resources.gpus) == ("cpu", 2, "4G", 0)
    assert p.container.docker_source == "docker://prom/prometheus:latest"


@pytest.mark.parametrize("change, says", [
    ("targets: []", "targets: expected at least one target"),
    ("targets: [{name: x, port: 8000, path: /m}]", "targets[0].path: unknown key; valid keys: name, port, metrics_path"),
    ("targets: [{name: x, port: 70000}]", "targets[0].port"),
    ("prometheus: {scrape_interval: soon}", "prometheus.scrape_interval: expected a duration"),
    ("prometheus: {enabled: false}", "switched off"),
    ("prometheus: {resources: {cpus: 2}}", "prometheus.resources.cpus: unknown key; did you mean 'cpu_cores'"),
    ("service: {}", "service: unknown key; valid keys: name, description, targets, prometheus"),
])
def test_a_bad_monitor_recipe_names_its_file_and_field(change, says):
    doc = yaml.safe_load(SEED_000)
    doc.update(yaml.safe_load(change))
    with pytest.raises(RecipeError, match=f"^bad.yml: .*{says}".replace("[", r"\[").replace("]", r"\]")):
        parse_monitor_recipe(doc, "bad.yml")


def test_every_packaged_monitor_recipe_loads_and_a_service_recipe_is_not_one(tmp_path):
    dirs = [RECIPES / "monitors"]
    names = sorted(p.stem for p in dirs[0].glob("*.yml"))
    assert {"vllm-monitor", "ollama-monitor", "llamacpp-monitor", "node-monitor"} <= set(names)
    for name in names:
        m = find_monitor_recipe(name, dirs)
        assert m is not None and m.targets and m.name == name
    assert find_monitor_recipe("prometheus", dirs) is None   # a service recipe: the other path
    mine = tmp_path / "mine.yml"
    mine.write_text(textwrap.dedent(SEED_000))
    assert find_monitor_recipe(str(mine), dirs).targets[0].port == 8000
