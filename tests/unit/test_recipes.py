from pathlib import Path

import pytest

from orchestrator.errors import RecipeError
from orchestrator.services.recipes import find_recipe, load_recipe, parse_recipe

SHIPPED = sorted(Path(__file__).resolve().parents[2].joinpath("recipes/services").glob("*.yaml"))


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_every_shipped_recipe_is_valid(path):
    recipe = load_recipe(str(path))
    assert recipe.name == path.stem and recipe.command


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
    with pytest.raises(RecipeError, match="no recipe named 'olama'; known recipes: .*ollama"):
        load_recipe("olama")


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
    assert r.files["standin_llm.py"] == str(packaged("bench", "workloads", "standin_llm.py"))
