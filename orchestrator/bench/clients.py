"""A load client as a service recipe (pure): what a client job runs, with which arguments, on which resources."""

from __future__ import annotations

import math
import shlex
from dataclasses import replace

from orchestrator.bench.kinds import KINDS
from orchestrator.bench.recipe import ClientSpec
from orchestrator.resources import packaged
from orchestrator.services.jobscript import expand_home_word
from orchestrator.services.recipes import Health, Metrics, Resources, ServiceRecipe
from orchestrator.templating import literal


def split_load(spec: ClientSpec, index: int, parts: int) -> ClientSpec:
    """Part ``index`` of ``parts`` of a client's load, for a target of that many replicas: its concurrency
    and request count divided (the first parts take the remainder), its rate divided evenly."""
    if parts == 1:
        return spec

    def share(total: int) -> int:
        return total // parts + (1 if index < total % parts else 0)
    return replace(spec, concurrency=share(spec.concurrency),
                   requests=None if spec.requests is None else share(spec.requests),
                   rate=None if spec.rate is None else spec.rate / parts, part=(index, parts))


def client_recipe(spec: ClientSpec, target_url: str, node_index: int = 0, venv: str = "~/.orchestrator/venv",
                  engine: str | None = None, target_id: str | None = None, target_auth: str = "none",
                  secret_file: str | None = None) -> ServiceRecipe:
    """A load client as a service recipe: its /metrics is what the monitor scrapes. ``venv``: the
    cluster's client venv (clients that need numpy); ``engine``: the target's (a vector client's API);
    ``target_id``/``target_auth``: the loaded service, whose secret the client reads from its job dir
    (``secret_file``: from a file of the client's own job dir, for a service the tool did not start).
    What the kind runs and with which arguments is its module's (``bench/kinds/``)."""
    kind = KINDS[spec.kind]
    max_seconds = spec.warmup + (spec.duration if spec.duration is not None else 3600) + 30
    job = ["--concurrency", str(spec.concurrency), "--warmup", str(spec.warmup), "--out", "requests.jsonl",
           "--go-file", "go", "--max-seconds", str(max_seconds), "--linger", "15"]
    if spec.rate:
        job += ["--rate", str(spec.rate)]
    if spec.duration is not None:
        job += ["--duration", str(spec.duration)]
    if spec.requests is not None:
        job += ["--requests", str(spec.requests)]
    python = f"{venv.rstrip('/')}/bin/python" if kind.venv_python else "python3"
    own = kind.argv(spec, target_url, node_index, {"engine": engine})
    # a wrapped tool's argv (after "--") comes last, after every option of the client job itself
    tool = own[own.index("--"):] if "--" in own else []
    args = [kind.program, *own[:len(own) - len(tool)], *job]
    # the arguments are data (the URL comes from the cluster): rendered as themselves, never as Jinja
    # (the venv's python is a path on the node, where ~ and $VARS expand)
    head = expand_home_word(python) if kind.venv_python else shlex.quote(python)
    command = literal(head + " " + shlex.join(args)) + " --metrics-port {{ port }}"
    if tool:
        command += " " + literal(shlex.join(tool))
    r = spec.resources
    minutes = math.ceil((max_seconds + 900 + 300) / 60)  # + go-wait and linger margin
    return ServiceRecipe(
        name=f"client-{spec.kind}"[:40], command=command, description=f"load client ({spec.kind})",
        resources=Resources(partition=r.get("partition"), cpus_per_task=int(r.get("cpus_per_task", 1)),
                            mem=str(r.get("mem", kind.mem)), time=str(r.get("time", minutes)),
                            account=r.get("account"), qos=r.get("qos"), nodelist=r.get("nodelist")),
        ports=("auto",), health=Health(path="/", timeout=300), metrics=Metrics(path="/metrics", port="port:0"),
        files={name: str(packaged("oncluster", name)) for name in (kind.program, "clientjob.py", *kind.files)},
        # the target's job dir is a sibling of the client's (a service ID is [a-z0-9_-]: no template text)
        environment={"ORCH_TARGET_AUTH": target_auth,
                     **({"ORCH_TARGET_SECRET_FILE": f"{{{{ job_dir }}}}/../{target_id}/secret"} if target_id else {}),
                     # a service the tool did not start: its key shipped into the client's own job dir
                     **({"ORCH_TARGET_SECRET_FILE": f"{{{{ job_dir }}}}/{secret_file}"} if secret_file else {})},
        source="(generated client recipe)")
