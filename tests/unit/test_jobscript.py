import re
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


def _vllm_on_gpus(tmp_path, launch: str):
    """The packaged vllm recipe as a GPU-cluster user sets it: launch and GPU resources."""
    text = load_recipe("vllm").text.replace("launch: native", f"launch: {launch}").replace(
        "resources: {nodes: 1, cpus_per_task: 2, mem: 5G,", "resources: {nodes: 1, cpus_per_task: 8, gpus: 1, mem: 64G,")
    path = tmp_path / "vllm.yaml"
    path.write_text(text)
    return load_recipe(str(path))


def test_container_recipe_pulls_once_and_uses_nv_with_gpus(tmp_path):
    script = render_service_script(_vllm_on_gpus(tmp_path, "container"), SLURM, "vllm_0123abcd")
    assert 'if [ ! -f "$ORCH_IMAGE" ]; then' in script and "pull \"$ORCH_IMAGE\" docker://vllm/vllm-openai:latest" in script
    assert 'exec "$ORCH_RUNTIME" exec --nv --bind "$ORCH_JOB_DIR"' in script
    assert 'ORCH_IMAGE="$HOME/containers/vllm-openai.sif"' in script
    assert "exec vllm serve \"$VLLM_MODEL\"" in script


def test_one_field_says_native_here_container_there(tmp_path):
    native = render_service_script(load_recipe("vllm"), SLURM, "vllm_0123abcd")
    assert "ORCH_RUNTIME" not in native and "exec /bin/bash -c" in native and "exec vllm serve" in native
    assert 'export VLLM_MODEL="/var/cache/orch-vllm/test-model"' in native
    # the API key reaches vLLM only when set, as its own word
    out = subprocess.run(["bash", "-c", 'VLLM_API_KEY="a b"; printf "<%s>" ${VLLM_API_KEY:+--api-key "$VLLM_API_KEY"}'],
                         capture_output=True, text=True).stdout
    assert out == "<--api-key><a b>"
    with pytest.raises(RecipeError, match=r"service.launch: launch: container needs a service.container"):
        load_recipe(str(_write(tmp_path, "service:\n  name: x\n  command: c\n  launch: container\n")))
    with pytest.raises(RecipeError, match=r"service.launch: expected native or container, got 'docker'"):
        load_recipe(str(_write(tmp_path, "service:\n  name: x\n  command: c\n  launch: docker\n")))


def _write(tmp_path, text):
    path = tmp_path / "r.yaml"
    path.write_text(text)
    return path


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


def test_recipes_reach_the_configured_remote_paths_never_a_hard_coded_one():
    from orchestrator.config import RemoteConfig
    remote = RemoteConfig(work_dir="~/scratch/orch", venv="/site/venvs/orch")
    script = render_service_script(load_recipe("chroma"), SLURM, "chroma_0123abcd", remote)
    assert 'export ORCH_WORK_DIR="$HOME/scratch/orch" ORCH_REMOTE_VENV="/site/venvs/orch"' in script
    assert '"${CHROMA_BIN:-${ORCH_REMOTE_VENV}/bin/chroma}"' in script
    for path in SHIPPED:   # no shipped recipe names the default work dir's venv itself
        assert ".orchestrator/venv" not in load_recipe(str(path)).command, path.stem


@pytest.mark.parametrize("name", ["vllm-multinode", "llamacpp-rpc"])
def test_multinode_scripts_match_their_golden_files(name):
    script = render_service_script(load_recipe(name), SLURM, f"{name}_0123abcd")
    golden = DATA / f"{name}.sbatch.golden"
    assert script == golden.read_text(), f"rendered script changed; if intended, update {golden}"


def test_vllm_multinode_renders_the_forms_of_vllms_docs():
    """vLLM's docs/serving/parallelism_scaling.md (fetched from vllm-project/vllm): a Ray cluster started by
    `ray start --head` and `ray start --address=<head>:<port>` (run_cluster.sh keeps them with --block,
    VLLM_HOST_IP set on each node), then `vllm serve ... --tensor-parallel-size T --pipeline-parallel-size P
    --distributed-executor-backend ray`; or, without Ray, `vllm serve ... --nnodes N --node-rank 0
    --master-addr <head>` on the head and `--node-rank i ... --headless` on the others."""
    script = render_service_script(load_recipe("vllm-multinode"), SLURM, "vllm-multinode_0123abcd")
    assert "#SBATCH --nodes=2" in script and "#SBATCH --ntasks-per-node=1" in script
    for documented in ('ray start --head --node-ip-address="$head_ip" --port="$RAY_PORT" --block',
                       'ray start --address="$1" --node-ip-address="$VLLM_HOST_IP" --block',
                       "--distributed-executor-backend ray", '--tensor-parallel-size "$tp"',
                       '--pipeline-parallel-size "$pp"', '--nnodes "$nnodes" --node-rank 0 --master-addr "$head_ip"',
                       '--node-rank "$rank"', "--headless", "export VLLM_HOST_IP="):
        assert documented in script, documented
    # the defaults the docs recommend: tensor parallel over a node's GPUs, pipeline parallel over the nodes
    assert "tp=${VLLM_TENSOR_PARALLEL_SIZE:-${SLURM_GPUS_ON_NODE:-1}}" in script
    assert "pp=${VLLM_PIPELINE_PARALLEL_SIZE:-$nnodes}" in script
    # one srun step per worker node, beside the head's own
    assert script.count('srun --overlap --nodes=1 --ntasks=1 --nodelist="$w"') == 2


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_every_shipped_recipes_command_is_valid_bash(path):
    """The command runs as `bash -c '<command>'`: its own syntax, with the template's values in place."""
    recipe = load_recipe(str(path))
    command = re.sub(r"\{\{ *(\w+) *\}\}", lambda m: {"port": "8000"}.get(m.group(1), "/x"), recipe.command)
    proc = subprocess.run(["bash", "-n"], input=command, text=True, capture_output=True)
    assert proc.returncode == 0, proc.stderr


def _run_multinode(tmp_path, backend: str, exclusive: bool, ray_version: str = "2.53.0") -> subprocess.CompletedProcess:
    """vllm-multinode's command in bash, with stand-ins for ray, vllm, srun and scontrol that log their argv
    and environment: what the recipe would start on two nodes, and what it refuses."""
    from orchestrator.services.jobscript import shell_snippet
    recipe = load_recipe("vllm-multinode")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    stub = ('#!/bin/bash\necho "$(basename "$0") $* auth=${RAY_AUTH_MODE:-}:${RAY_AUTH_TOKEN_PATH:-}" >> "$LOG"\n')
    for name, extra in {"ray": f'[ "$1" = --version ] && echo "ray, version {ray_version}"\n'
                                '[ "$1" = status ] && printf " node_a\\n node_b\\n"\nexit 0\n',
                        "vllm": "exit 0\n", "srun": "exit 0\n",
                        "scontrol": 'printf "n1\\nn2\\n"\n', "getent": 'echo "10.0.0.1 $2"\n'}.items():
        (bin_dir / name).write_text(stub + extra)
        (bin_dir / name).chmod(0o755)
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "LOG": str(tmp_path / "calls.log"), "ORCH_NODE": "n1",
           "SLURM_JOB_NODELIST": "n[1-2]", "SLURM_NNODES": "2", "ORCH_PORT": "8000", "ORCH_GATE_PORT": "8001",
           "ORCH_SECRET_FILE": str(tmp_path / "secret"), "ORCH_JOB_DIR": str(tmp_path),
           "ORCH_EXCLUSIVE": "1" if exclusive else "0",
           **{k: v.replace("{{ job_dir }}", str(tmp_path)) for k, v in recipe.environment.items()},
           "VLLM_BACKEND": backend}
    (tmp_path / "calls.log").write_text("")
    command = shell_snippet(recipe.command, len(recipe.ports), "service.command")
    return subprocess.run(["bash", "-c", command], env=env, text=True, capture_output=True, timeout=30)


def test_vllm_multinode_refuses_mp_on_shared_nodes_and_a_ray_without_token_auth(tmp_path):
    mp = _run_multinode(tmp_path, "mp", exclusive=False)
    assert mp.returncode == 1 and "resources.exclusive: true" in mp.stderr
    assert "vllm " not in (tmp_path / "calls.log").read_text()          # nothing was started
    old = _run_multinode(tmp_path, "ray", exclusive=True, ray_version="2.51.1")
    assert old.returncode == 1 and "Ray 2.51.1: token authentication needs Ray 2.52" in old.stderr
    assert "ray start" not in (tmp_path / "calls.log").read_text()


def test_vllm_multinode_serves_on_loopback_and_starts_ray_with_the_jobs_token(tmp_path):
    ok = _run_multinode(tmp_path, "ray", exclusive=False, ray_version="2.52.0")
    calls = (tmp_path / "calls.log").read_text().splitlines()
    token = f"auth=token:{tmp_path}/secret"
    head = next(c for c in calls if c.startswith("ray start --head"))
    assert ok.returncode == 0 and head.endswith(token) and "--include-dashboard=false" in head
    serve = next(c for c in calls if c.startswith("vllm serve"))
    assert "--host 127.0.0.1 --port 8001" in serve and "0.0.0.0" not in serve and serve.endswith(token)
    mp = _run_multinode(tmp_path, "mp", exclusive=True)
    serve = [c for c in (tmp_path / "calls.log").read_text().splitlines() if c.startswith("vllm serve")]
    assert mp.returncode == 0 and "--host 127.0.0.1 --port 8001" in serve[-1] and "--node-rank 0" in serve[-1]


def test_a_missing_exporter_is_a_warning_and_the_service_still_runs(tmp_path):
    """exporters: [node, redis] on a node without either: the job logs a warning for each and runs its
    command (before, it ended with exit 127)."""
    import os
    import subprocess

    from orchestrator.bench.gathering import job_warnings
    from orchestrator.config import SlurmConfig
    from orchestrator.services.jobscript import render_service_script
    from orchestrator.services.recipes import parse_recipe
    r = parse_recipe({"service": {"name": "x", "command": "echo SERVED; echo 'warning: the service own'",
                                  "ports": ["auto"], "exporters": ["node", "redis"]}})
    script = render_service_script(r, SlurmConfig(), "x_0123abcd")
    (tmp_path / "secret").write_text("s" * 48)
    bindir = tmp_path / "bin"   # the machine's PATH, less the exporters (the sandbox's nodes have them)
    bindir.mkdir()
    exporters = {"node_exporter", "prometheus-node-exporter", "redis_exporter", "prometheus-redis-exporter"}
    for d in os.environ["PATH"].split(os.pathsep):
        try:
            entries = list(Path(d).iterdir())
        except OSError:   # missing, or not readable by this user
            continue
        for f in entries:
            if f.name not in exporters and not os.path.lexists(bindir / f.name):
                os.symlink(f, bindir / f.name)
    env = {"PATH": str(bindir), "SLURM_SUBMIT_DIR": str(tmp_path), "SLURMD_NODENAME": "n9", "HOME": str(tmp_path)}
    done = subprocess.run(["bash", "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    log = tmp_path / "x.log"
    log.write_text(done.stdout + done.stderr)
    assert "SERVED" in done.stdout, log.read_text()[-2000:]
    assert job_warnings(log) == [
        "exporter node: node_exporter not found on n9; the service runs without node metrics",
        "exporter redis: redis_exporter not found on n9; the service runs without its metrics"]


EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "vllm-gpu-apptainer"


def test_the_gpu_example_renders_to_its_golden_script():
    """examples/vllm-gpu-apptainer: one GPU, the pinned image pulled beforehand, the model cache shared
    between jobs and bound into the container, the token read from a file; its benchmark sends the
    served name."""
    from orchestrator.bench.recipe import load_benchmark
    recipe = load_recipe(str(EXAMPLE / "vllm-gpu.yaml"))
    script = render_service_script(recipe, SLURM, "vllm-gpu_0123abcd")
    golden = DATA / "vllm-gpu-apptainer.sbatch.golden"
    assert script == golden.read_text(), f"rendered script changed; if intended, update {golden}"
    assert "#SBATCH --gres=gpu:1" in script and "#SBATCH --exclusive" in script
    assert re.search(r'ORCH_IMAGE=".*v0\.32\.0\.sif"', script) and ":latest" not in script
    exec_line = next(line for line in script.splitlines() if line.startswith('exec "$ORCH_RUNTIME" exec --nv'))
    assert '--bind "/scratch/$USER/vllm-cache"' in exec_line and 'VLLM_CACHE_DIR="/scratch/$USER/vllm-cache"' in exec_line
    assert 'HF_TOKEN_PATH="$HOME/.cache/huggingface/token"' in exec_line and "HF_TOKEN=" not in script
    bench = load_benchmark(str(EXAMPLE / "bench-chat.yaml"))
    assert bench.clients[0].payload["model"] == recipe.environment["VLLM_SERVED_MODEL_NAME"]


def test_a_missing_bind_source_stops_the_job_naming_it(tmp_path):
    recipe = load_recipe(str(EXAMPLE / "vllm-gpu.yaml"))
    script = render_service_script(recipe, SLURM, "vllm-gpu_0123abcd")
    start = script.index('orch_bind="/scratch')
    checks = script[start:script.index('exec "$ORCH_RUNTIME"', start)]
    done = subprocess.run(["bash", "-c", 'log() { echo "$*"; }; ORCH_NODE=n1; USER=nobody-here; ' + checks],
                          capture_output=True, text=True)
    assert done.returncode == 1
    assert done.stdout.strip() == ("error: container.binds: /scratch/nobody-here/vllm-cache does not exist on n1 "
                                   "(make it on the shared file system first)")
