import subprocess
from pathlib import Path

import pytest

from orchestrator.config import SlurmConfig
from orchestrator.errors import RecipeError
from orchestrator.services.jobscript import render_service_script
from orchestrator.services.recipes import load_recipe, parse_recipe

DATA = Path(__file__).resolve().parents[1] / "data"
SLURM = SlurmConfig(account="p000000", partition="cpu", qos="default", time="02:00:00")
SHIPPED = sorted(Path(__file__).resolve().parents[2].joinpath("recipes/services").glob("*.yaml"))


def test_python_http_script_matches_the_golden_file():
    recipe = load_recipe("python-http")
    script = render_service_script(recipe, SLURM, "python-http_0123abcd")
    golden = DATA / "python-http.sbatch.golden"
    assert script == golden.read_text(), f"rendered script changed; if intended, update {golden}"


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_every_shipped_recipe_renders_valid_bash(path):
    script = render_service_script(load_recipe(str(path)), SLURM, "x_0123abcd")
    proc = subprocess.run(["bash", "-n"], input=script, text=True, capture_output=True)
    assert proc.returncode == 0, proc.stderr


def test_recipe_settings_win_over_config_then_config_fills_the_rest():
    r = parse_recipe({"service": {"name": "x", "command": "c", "resources": {"partition": "gpu", "gpus": 2}}})
    script = render_service_script(r, SLURM, "x_0123abcd")
    assert "#SBATCH --partition=gpu\n" in script and "#SBATCH --account=p000000\n" in script
    assert "#SBATCH --gres=gpu:2\n" in script and "#SBATCH --time=02:00:00\n" in script


def test_container_recipe_pulls_once_and_uses_nv_with_gpus():
    script = render_service_script(load_recipe("vllm"), SLURM, "vllm_0123abcd")
    assert 'if [ ! -f "$ORCH_IMAGE" ]; then' in script and "pull \"$ORCH_IMAGE\" docker://vllm/vllm-openai:latest" in script
    assert 'exec "$ORCH_RUNTIME" exec --nv --bind "$ORCH_JOB_DIR"' in script
    assert 'ORCH_IMAGE="$HOME/containers/vllm-openai.sif"' in script


def test_environment_values_stay_literal_except_template_variables(tmp_path):
    r = parse_recipe({"service": {"name": "x", "command": "true", "ports": [8000, "auto"],
                                  "environment": {"V": 'a "$HOME" `id` \\ {{ ports[1] }}:{{ port }}'}}})
    script = render_service_script(r, SLURM, "x_0123abcd")
    export = next(l for l in script.splitlines() if l.startswith("export V="))
    out = subprocess.run(["bash", "-c", f"ORCH_PORT=8000 ORCH_PORT_1=4242; {export}; printf %s \"$V\""],
                         capture_output=True, text=True).stdout
    assert out == 'a "$HOME" `id` \\ 4242:8000'


def test_unknown_template_variable_is_a_recipe_error():
    r = parse_recipe({"service": {"name": "x", "command": "serve --port {{ port }}"}}, source="r.yaml")
    with pytest.raises(RecipeError, match=r"r\.yaml: service\.command: 'port' is undefined \(service\.ports is empty\)"):
        render_service_script(r, SLURM, "x_0123abcd")


def test_sbatch_value_with_whitespace_is_refused():
    r = parse_recipe({"service": {"name": "x", "command": "c", "resources": {"account": "a b"}}})
    with pytest.raises(RecipeError, match="--account value 'a b' contains whitespace"):
        render_service_script(r, SLURM, "x_0123abcd")
