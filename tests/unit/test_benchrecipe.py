from pathlib import Path

import pytest

from orchestrator.bench.recipe import load_benchmark, load_benchmark_text
from orchestrator.bench.clients import client_recipe
from orchestrator.config import SlurmConfig
from orchestrator.errors import RecipeError
from orchestrator.services.jobscript import render_service_script

SHIPPED = sorted(Path(__file__).resolve().parents[2].joinpath("recipes/benchmarks").glob("*.yaml"))


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_shipped_benchmarks_deploy_shipped_services_and_render_their_clients(path, tmp_path):
    import subprocess

    from orchestrator.services.recipes import load_recipe
    b = load_benchmark(str(path))
    for ref in b.services:
        assert load_recipe(ref.recipe).name  # every service a shipped benchmark names is shipped too
    for spec in b.clients:
        script = render_service_script(client_recipe(spec, "http://n1:8000"), SlurmConfig(), "client-x_0123abcd")
        (tmp_path / "c.sbatch").write_text(script)
        assert subprocess.run(["bash", "-n", str(tmp_path / "c.sbatch")]).returncode == 0


@pytest.mark.parametrize("body,message", [
    ("benchmark: {name: x, services: [{recipe: a}], clients: [{kind: openai-completions, target: b, duration: 1s}]}",
     "benchmark.clients[0].target: expected a service of this benchmark (a), got 'b'"),
    ("benchmark: {name: x, services: [{recipe: a}], clients: [{kind: grpc, target: a, duration: 1s}]}",
     "benchmark.clients[0].kind: expected one of openai-completions"),
    ("benchmark: {name: x, services: [{recipe: a}], clients: [{kind: http, target: a}]}",
     "benchmark.clients[0]: expected duration or requests (a load is always bounded)"),
    ("benchmark: {name: x, services: [{recipe: a}], clients: [{kind: http, target: a, duration: forever}]}",
     "benchmark.clients[0].duration: expected a duration"),
    ("benchmark: {name: x, services: [{recipe: a, service_id: a_0123abcd}], clients: []}",
     "benchmark.services[0]: expected exactly one of recipe"),
    ("benchmark: {name: x, services: [{recipe: a}], clients: [{kind: http, target: a, duration: 1s, concurency: 2}]}",
     "benchmark.clients[0].concurency: unknown key; did you mean 'concurrency'?"),
])
def test_invalid_benchmarks(body, message):
    with pytest.raises(RecipeError) as err:
        load_benchmark_text(body, "b.yaml")
    assert str(err.value).startswith("b.yaml: ") and message in str(err.value)


def test_client_job_script_is_valid_bash_and_keeps_arguments_literal():
    import subprocess
    b = load_benchmark_text("benchmark: {name: x, services: [{recipe: a}], clients: [{kind: openai-chat, target: a, "
                            "duration: 10s, warmup: 2s, rate: 5, concurrency: 3}]}", "b.yaml")
    recipe = client_recipe(b.clients[0], "http://n1:8000")
    script = render_service_script(recipe, SlurmConfig(partition="cpu"), "client-openai-chat_0123abcd")
    assert subprocess.run(["bash", "-n"], input=script, text=True).returncode == 0
    assert "--rate 5.0 --duration 10.0" in script and "--metrics-port ${ORCH_PORT}" in script


@pytest.mark.parametrize("resources,message", [
    ("{cpus_per_task: 4x}", "benchmark.clients[0].resources.cpus_per_task"),
    ("{mem: lots}", "benchmark.clients[0].resources.mem: expected a size like 4G"),
    ("{time: soon}", "benchmark.clients[0].resources.time"),
    ("{gpus: 1}", "benchmark.clients[0].resources.gpus: unknown key"),
])
def test_client_resources_are_checked_before_anything_starts(resources, message):
    body = ("benchmark: {name: x, services: [{recipe: a}], clients: [{kind: http, target: a, duration: 1s, "
            f"resources: {resources}}}]}}")
    with pytest.raises(RecipeError, match=message.replace("[", r"\[").replace("]", r"\]")):
        load_benchmark_text(body, "b.yaml")


def test_a_yaml_alias_bomb_is_refused_before_it_expands():
    bomb = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{c}: &{c} [{', '.join(['*' + p] * 9)}]\n" for p, c in zip("abcdefgh", "bcdefghi"))
    with pytest.raises(RecipeError, match="aliases expand to more than 1,000,000 values"):
        load_benchmark_text("benchmark: {name: x}\n" + bomb, "bomb.yaml")
    with pytest.raises(RecipeError, match="more than 100 aliases"):
        load_benchmark_text("benchmark: {name: x}\na: &a 1\nb: [" + ", ".join(["*a"] * 101) + "]\n", "many.yaml")


def test_a_sweep_too_large_to_run_is_refused_without_building_it():
    values = "[" + ", ".join(str(i) for i in range(1, 11)) + "]"
    sweep = ", ".join(f"{k}: {values}" for k in ("concurrency", "rate", "requests", "nodes", "payload.a"))
    with pytest.raises(RecipeError, match="100,000 points"):
        load_benchmark_text("benchmark: {name: x, services: [{recipe: a}], clients: [{kind: http, target: a, "
                            f"duration: 1s}}], sweep: {{{sweep}}}}}", "b.yaml")
