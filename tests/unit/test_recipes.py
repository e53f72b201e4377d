import json
from pathlib import Path

import pytest

from orchestrator.errors import RecipeError
from orchestrator.services.recipes import find_recipe, load_recipe, parse_recipe

SHIPPED = sorted(Path(__file__).resolve().parents[2].joinpath("recipes/services").glob("*.yaml"))


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_every_shipped_recipe_is_valid_and_renders_a_script_bash_accepts(path):
    """Container recipes (vLLM, Ollama, Qdrant, MinIO) cannot run here: their scripts are rendered
    and syntax-checked."""
    import subprocess

    from orchestrator.config import SlurmConfig
    from orchestrator.services.jobscript import render_service_script
    recipe = load_recipe(str(path))
    # (seed 001's prometheus_with_ollama.yaml keeps the name its documents show: prometheus_6355d49f)
    assert (recipe.name == path.stem or path.stem.startswith(recipe.name + "_with_")) and recipe.command
    script = render_service_script(recipe, SlurmConfig(partition="cpu"), f"{recipe.name}_0123abcd")
    proc = subprocess.run(["bash", "-n"], input=script, text=True, capture_output=True)
    assert proc.returncode == 0, proc.stderr
    assert "{{ " not in script and "{%" not in script  # no template syntax left unrendered


def test_recipe_by_name_finds_the_shipped_file():
    assert find_recipe("ollama").name == "ollama.yaml"
    r = load_recipe("ollama")
    assert r.container.docker_source == "docker://ollama/ollama:latest" and r.resources.gpus == 1
    assert r.ports == (11434,) and r.health.path == "/api/tags" and r.health.timeout == 600


def write(tmp_path, text):
    p = tmp_path / "r.yaml"
    p.write_text(text)
    return str(p)


@pytest.mark.parametrize("body,message", [
    ("service: {name: x, command: c, resources: {parition: cpu}}",
     "service.resources.parition: unknown key; did you mean 'partition'?"),
    ("service: {name: x, command: c, resources: {mem: 64}}",
     "service.resources.mem: expected a size with its unit, like 64G or 64M (SLURM reads a bare number as megabytes)"),
    ("service: {name: x, command: c, ports: [auto], health: {timeout: soon}}",
     "service.health.timeout: expected a duration such as 30s, 10m or 1h30m"),
    ("service: {name: x, command: c, resources: {mem: lots}}",
     "service.resources.mem: expected a size like 4G or 512M, got 'lots'"),
    ("service: {name: x, command: c, health: {path: /}}", "service.health: a health probe needs service.ports"),
    ("service: {name: x, command: c, ports: [99999]}", "service.ports[0]: expected an integer between 1 and 65535"),
    ("service: {name: x, command: c, ports: [any]}", "service.ports[0]: expected a port number or 'auto'"),
    ("service: {name: Bad_Name, command: c}", "service.name: expected lowercase letters"),
    ("service: {name: x}", "service.command: required field is missing"),
    ("service: {name: x, command: c, resources: {time: forever}}", "service.resources.time: expected a SLURM time"),
    ("service: {name: x, command: c, exporters: [disk]}", "service.exporters[0]: expected one of node, gpu"),
    ("service: {name: x, command: c, container: {image_path: /x.sif}}",
     "service.container.docker_source: required field is missing"),
    ("service: {name: x, command: c, exporters: [redis]}",
     "service.exporters[0]: the redis exporter reads the service on its first port: service.ports is needed"),
    ("service: {name: x, command: c, ports: [auto], health: {tcp: true, path: /}}",
     "service.health: expected path (an HTTP probe) or tcp: true, not both"),
    ("service: {name: x, command: c, ports: [auto], health: {tcp: yes please}}",
     "service.health.tcp: expected true or false"),
])
def test_invalid_recipes_name_file_field_and_expectation(tmp_path, body, message):
    path = write(tmp_path, body)
    with pytest.raises(RecipeError) as err:
        load_recipe(path)
    assert str(err.value).startswith(f"{path}: ") and message in str(err.value)


def test_metrics_port_defaults_to_the_first_service_port():
    r = parse_recipe({"service": {"name": "x", "command": "c", "ports": ["auto"], "metrics": {}}})
    assert r.metrics.port == "port:0" and r.metrics.path == "/metrics"


def test_unknown_recipe_name_lists_known_ones():
    with pytest.raises(RecipeError, match="no recipe named 'olama'; did you mean 'ollama'\\? known recipes: .*ollama"):
        load_recipe("olama")
    with pytest.raises(RecipeError, match="no recipe named 'vlm'; did you mean 'vllm'\\?"):
        load_recipe("vlm")


def test_every_duration_field_takes_the_same_forms():
    """health.timeout, as a client's duration and the config's ssh timeouts: seconds or 20s / 10m / 1h30m."""
    base = {"name": "x", "command": "c", "ports": ["auto"]}
    for given, seconds in ((600, 600), ("10m", 600), ("1h30m", 5400), ("45s", 45), ("1.5s", 2)):
        assert parse_recipe({"service": {**base, "health": {"timeout": given}}}).health.timeout == seconds


def test_names_come_from_configured_dirs_then_the_package_never_the_current_dir(tmp_path, monkeypatch):
    from orchestrator.resources import RECIPES
    mine = tmp_path / "mine" / "services"
    mine.mkdir(parents=True)
    (mine / "python-http.yaml").write_text("service: {name: my-http, command: 'true'}\n")
    cwd = tmp_path / "cwd" / "recipes" / "services"
    cwd.mkdir(parents=True)
    (cwd / "ollama.yaml").write_text("service: {name: impostor, command: 'true'}\n")
    monkeypatch.chdir(tmp_path / "cwd")
    assert load_recipe("python-http", [tmp_path / "mine"]).name == "my-http"
    assert load_recipe("python-http").source == str(RECIPES / "services" / "python-http.yaml")
    assert load_recipe("ollama").name == "ollama"  # ./recipes/services/ollama.yaml is not taken implicitly
    assert load_recipe("./recipes/services/ollama.yaml").name == "impostor"  # a path is a path


def test_a_package_file_reference_resolves_inside_the_installed_package():
    from orchestrator.resources import packaged
    r = load_recipe("standin-llm")
    assert r.files["standin_llm.py"] == str(packaged("oncluster", "standin_llm.py"))


@pytest.mark.parametrize("files,message", [
    ("{..: x.py}", "expected a plain file name"),
    ("{.hidden: x.py}", "expected a plain file name"),
    ("{key: ~/.ssh/id_rsa}", "expected a file beside the recipe"),
    ("{key: ../outside.txt}", "expected a file beside the recipe"),
    ("{key: /etc/passwd}", "expected a file beside the recipe"),
])
def test_shipped_files_stay_inside_the_recipes_folder(tmp_path, files, message):
    (tmp_path / "x.py").write_text("print(1)\n")
    path = tmp_path / "r.yaml"
    path.write_text(f"service: {{name: r, command: 'true', files: {files}}}\n")
    with pytest.raises(RecipeError, match=message):
        load_recipe(str(path))


@pytest.mark.parametrize("field,value", [
    ("metrics", '{path: "/m\\"etrics", port: 9}'), ("health", "{path: '/a b'}"),
    ("container", "{docker_source: 'docker://x$(id)', image_path: /i.sif}"),
])
def test_fields_that_are_not_shell_are_validated(tmp_path, field, value):
    path = tmp_path / "r.yaml"
    path.write_text(f"service: {{name: r, command: 'true', ports: [8000], {field}: {value}}}\n")
    with pytest.raises(RecipeError, match=f"service.{field}"):
        load_recipe(str(path))


def test_template_code_in_a_recipe_never_runs_here(tmp_path):
    from orchestrator.config import SlurmConfig
    from orchestrator.services.jobscript import render_service_script
    marker = tmp_path / "pwned"
    for command in ("echo {{ lipsum.__globals__['os'].popen('touch %s').read() }}" % marker,
                    "echo {{ port.__class__.__mro__[1].__subclasses__() }}",
                    "echo {{ cycler.__init__.__globals__.os.system('touch %s') }}" % marker):
        path = tmp_path / "r.yaml"
        path.write_text("service:\n  name: r\n  ports: [auto]\n  command: %s\n" % json.dumps(command))
        with pytest.raises(RecipeError, match="service.command"):
            render_service_script(load_recipe(str(path)), SlurmConfig(), "r_0123abcd")
    assert not marker.exists()


def test_a_service_without_http_is_ready_when_its_port_accepts_connections():
    import subprocess

    from orchestrator.config import SlurmConfig
    from orchestrator.services.jobscript import render_service_script
    r = load_recipe("redis")
    assert r.health.tcp and r.health.path == "" and r.exporters == ("node", "redis") and r.engine == "redis"
    script = render_service_script(r, SlurmConfig(partition="cpu"), "redis_0123abcd")
    subprocess.run(["bash", "-n"], input=script, text=True, check=True)
    assert '"health_tcp": true' in script and '--redis.addr="redis://127.0.0.1:$ORCH_PORT"' in script
