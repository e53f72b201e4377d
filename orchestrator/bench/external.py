"""Services a session loads but did not start: a user's own SLURM job (``job:``) or an address
(``url:``). The session finds where it answers, monitors it, loads it, windows it and cross-checks it
like any other; it never stops it, never tails or writes into its job, and says in the report that
the tool did not deploy it.

Requests to it run as curl on the login node, its key (a local file) sent on the command's stdin as
a header file, never on a command line; the load clients get the key in their own private job dir.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from orchestrator.cluster.remote import Marker
from orchestrator.cluster.shell import quote
from orchestrator.errors import OrchestratorError, RecipeError
from orchestrator.services.recipes import TargetSpec

ID_PREFIX = "ext-"   # the session's name for it where a service ID goes (labels, the report)


@dataclass(frozen=True)
class External:
    name: str
    sid: str
    url: str                          # http(s)://host:port, as the login node and the nodes reach it
    host: str
    port: int
    job_id: str | None = None
    node: str | None = None
    engine: str | None = None
    key: str = ""                     # the bearer token, read from the key file here
    metrics: tuple = ()               # TargetSpecs: what the monitor scrapes of it

    @property
    def described(self) -> str:
        """What the report says of it."""
        where = f"job {self.job_id} on {self.node}" if self.job_id else self.url
        return f"started outside this tool ({where}); never stopped or touched by it"

    def targets(self) -> list[TargetSpec]:
        return list(self.metrics)


def read_key(path: str | None, where: str) -> str:
    if not path:
        return ""
    try:
        key = Path(path).expanduser().read_text().strip()
    except OSError as exc:
        raise RecipeError(f"{where}.key_file: cannot read {path} ({exc.strerror})") from None
    if not key or "\n" in key or not re.fullmatch(r"[\x21-\x7e]+", key):
        raise RecipeError(f"{where}.key_file: {path}: expected one line holding the key")
    return key


def resolve(ref, where: str, transport, monitor_recipe_dirs, progress=None) -> External:
    """Where ``ref`` answers: its URL as given, or its job's first node (waited for while it is pending;
    a job that is not the user's, has ended, or never runs is refused) and its port."""
    from orchestrator.monitoring.jobtargets import job_nodes
    from orchestrator.monitoring.monitor_recipes import find_monitor_recipe
    from orchestrator.monitoring.targets import parse_target
    mrec = None
    if ref.monitor_recipe:
        mrec = find_monitor_recipe(ref.monitor_recipe, monitor_recipe_dirs)
        if mrec is None:
            raise RecipeError(f"{where}.monitor_recipe: no monitor recipe {ref.monitor_recipe!r} "
                              "(`orch monitor list --available`)")
    engine = ref.engine or (mrec.name.split("-monitor")[0] if mrec and mrec.name.endswith("-monitor") else None)
    key = read_key(ref.key_file, where)
    sid = ID_PREFIX + ref.name
    labels = (("service_id", sid),)
    if ref.url:
        spec = parse_target(ref.url.rstrip("/"))
        host, port = spec.host, spec.port
        url = f"{spec.scheme}://{host}:{port}"
        metrics = (TargetSpec(host=host, port=port, metrics_path=ref.metrics_path or "/metrics", job_name=ref.name,
                              scheme=spec.scheme, labels=labels),)
        return External(ref.name, sid, url, host, port, engine=engine, key=key, metrics=metrics)
    port = ref.port or mrec.targets[0].port
    node = job_nodes(transport, [ref.job], allow_other_users=False, timeout=600, progress=progress)[ref.job]
    if mrec is not None and not ref.metrics_path:
        metrics = tuple(TargetSpec(job_id=ref.job, port=t.port, metrics_path=t.metrics_path,
                                   job_name=ref.name if i == 0 else f"{ref.name}-{t.name}", labels=labels)
                        for i, t in enumerate(mrec.targets))
    else:
        metrics = (TargetSpec(job_id=ref.job, port=port, metrics_path=ref.metrics_path or "/metrics",
                              job_name=ref.name, labels=labels),)
    return External(ref.name, sid, f"http://{node}:{port}", node, port, job_id=ref.job, node=node, engine=engine,
                    key=key, metrics=metrics)


def then(ext: External, transport, script: str, timeout: float = 150) -> str:
    """``script`` (which uses ``curl`` and ``$BASE``, as a probe's ``then`` does) against the external
    service, from the login node: its output. The key travels on stdin, into a private header file."""
    mark = Marker()
    setup = (f"BASE={quote(ext.url)}; H=$(mktemp); trap 'rm -f \"$H\"' EXIT; cat > \"$H\"; "
             "curl() { if [ -s \"$H\" ]; then command curl -H @\"$H\" \"$@\"; else command curl \"$@\"; fi; }; ")
    header = f"Authorization: Bearer {ext.key}\n" if ext.key else ""
    out = transport.run(setup + mark.echo("then") + "\n" + script, timeout=timeout, stdin=header).stdout
    sections = mark.parse(out)
    if not sections:
        raise OrchestratorError(f"{ext.name}: no answer from the login node")
    return sections[0].text
