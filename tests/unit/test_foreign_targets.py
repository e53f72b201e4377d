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


def test_a_benchmark_names_a_service_it_did_not_start_by_job_or_url(tmp_path):
    from orchestrator.bench.recipe import load_benchmark_text
    text = """benchmark:
  name: mine
  services:
    - {name: mine, job: 12345, monitor_recipe: llamacpp-monitor}
    - {name: theirs, url: "http://gpu01:8000", engine: vllm, key_file: ~/key}
  clients:
    - {kind: openai-chat, target: mine, concurrency: 2, duration: 5s, payload: {model: m, stream: true}}
"""
    r = load_benchmark_text(text, "mine.yaml")
    mine, theirs = r.services
    assert mine.external and (mine.name, mine.job, mine.monitor_recipe, mine.url) == ("mine", "12345", "llamacpp-monitor", None)
    assert theirs.external and (theirs.name, theirs.url, theirs.engine, theirs.key_file) == \
        ("theirs", "http://gpu01:8000", "vllm", "~/key")


@pytest.mark.parametrize("entry, says", [
    ("{name: mine, job: 12345}", "a job needs its API port"),
    ("{name: mine, job: 12345, url: 'http://a:1'}", "expected one of job"),
    ("{name: mine, job: '1; rm -rf ~', port: 80}", "job: expected a SLURM job ID"),
    ("{name: Mine!, url: 'http://a:1'}", "name: expected lower-case"),
    ("{name: mine, url: 'ftp://a:1'}", "url: expected http"),
    ("{name: mine, url: 'http://a:1', recipe: vllm}", "unknown key"),
    ("{job: 12345, port: 80}", "name"),
])
def test_a_bad_service_the_tool_did_not_start_is_refused_by_field(entry, says):
    from orchestrator.bench.recipe import load_benchmark_text
    text = f"""benchmark:
  name: b
  services: [{entry}]
  clients: [{{kind: http, target: mine, concurrency: 1, duration: 1s}}]
"""
    with pytest.raises(RecipeError, match=r"benchmark\.services\[0\]") as err:
        load_benchmark_text(text, "b.yaml")
    assert says in str(err.value)


def test_the_external_services_key_goes_on_stdin_never_on_a_command_line(tmp_path):
    from orchestrator.bench.external import External, read_key, then
    key_file = tmp_path / "key"
    key_file.write_text("sk-very-secret\n")
    key = read_key(str(key_file), "b.yaml: benchmark.services[0]")
    ext = External("mine", "ext-mine", "http://n1:8080", "n1", 8080, job_id="7", node="n1", key=key)

    class Recording:
        def run(self, command, *, timeout=120, stdin=None, **kw):
            from orchestrator.cluster.transport import CommandResult
            self.command, self.stdin = command, stdin
            marker = command.split("echo '")[1].split("'")[0]
            return CommandResult(command, 0, marker + "\n{\"data\": []}\n", "")
    t = Recording()
    assert then(ext, t, 'curl -sS "$BASE/v1/models"') == '{"data": []}'
    assert "sk-very-secret" not in t.command and t.stdin == "Authorization: Bearer sk-very-secret\n"
    assert "BASE=http://n1:8080" in t.command
    with pytest.raises(RecipeError, match="one line"):
        two = tmp_path / "two"
        two.write_text("a\nb\n")
        read_key(str(two), "w")
