"""config.yaml: loaded and validated once into a typed, frozen object.

Layering, lowest to highest: built-in defaults, the file, environment
variables (SLURM_ACCOUNT, SLURM_PARTITION, SLURM_QOS, SLURM_TIME_LIMIT).
The file is found at --config, else $ORCH_CONFIG, else ./config.yaml.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Mapping

from orchestrator.errors import ConfigError
from orchestrator.schema import (
    SchemaViolation,
    check_keys,
    expect_duration,
    expect_int,
    expect_mapping,
    expect_pattern,
    expect_str,
    load_yaml_file,
)

DEFAULT_CONFIG = "config.yaml"
SSH_CLIENTS = ("auto", "openssh", "paramiko")

TIME_RE = re.compile(r"^(\d+-)?\d+(:\d{1,2}){0,2}$|^(\d+-\d+)$|^UNLIMITED$|^INFINITE$")


def is_slurm_time(text: str) -> bool:
    """SLURM --time formats: M, M:S, H:M:S, D-H, D-H:M, D-H:M:S, UNLIMITED."""
    return bool(TIME_RE.match(text))


@dataclass(frozen=True)
class SSHConfig:
    host: str
    port: int | None = None          # None: from ~/.ssh/config, else 22
    user: str | None = None          # None: from ~/.ssh/config, else the local user
    key_file: str | None = None      # None: from ~/.ssh/config, else paramiko's defaults
    known_hosts: str = "~/.ssh/known_hosts"
    ssh_config: str = "~/.ssh/config"
    connect_timeout: float = 15.0
    keepalive: int = 30
    local: bool = False              # run commands here instead: we are on the login node
    # auto: the system's OpenSSH with a ControlMaster where `ssh` is on PATH (cluster/openssh.py), else
    # paramiko (cluster/ssh.py); or either by name
    client: str = "auto"
    control_path: str | None = None  # openssh: the master's socket (default: a private dir in state_dir)


@dataclass(frozen=True)
class SlurmConfig:
    account: str | None = None
    partition: str | None = None
    qos: str | None = None
    time: str | None = None


@dataclass(frozen=True)
class RemoteConfig:
    work_dir: str = "~/.orchestrator"
    # a virtualenv on the cluster (numpy, chromadb) for client jobs that need more than the standard
    # library (the vector client) and for Chroma; `doctor` checks it; default <work_dir>/venv
    venv: str | None = None

    @property
    def venv_dir(self) -> str:
        return self.venv or f"{self.work_dir.rstrip('/')}/venv"


@dataclass(frozen=True)
class Limits:
    """Bounds on what one command may ask for, so a typo cannot exhaust memory or the cluster."""
    range_points: int = 1_100_000     # points per series of one range query (100 Prometheus requests)
    sweep_points: int = 100           # points of one sweep


@dataclass(frozen=True)
class Config:
    ssh: SSHConfig
    slurm: SlurmConfig
    remote: RemoteConfig
    state_dir: Path
    results_dir: Path
    recipe_dirs: tuple[Path, ...] = ()   # searched before the packaged recipes (services/, benchmarks/)
    limits: Limits = Limits()
    source: Path | None = None


_TOP_KEYS = ["ssh", "slurm", "remote", "state_dir", "results_dir", "recipe_dirs", "limits"]
_SSH_KEYS = ["host", "port", "user", "key_file", "known_hosts", "ssh_config",
             "connect_timeout", "keepalive", "local", "agent", "client", "control_path"]
_SLURM_KEYS = ["account", "partition", "qos", "time"]
_REMOTE_KEYS = ["work_dir", "venv"]

ENV_OVERRIDES = {
    "SLURM_ACCOUNT": "account",
    "SLURM_PARTITION": "partition",
    "SLURM_QOS": "qos",
    "SLURM_TIME_LIMIT": "time",
}


def resolve_config_path(explicit: str | os.PathLike | None, env: Mapping[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    if explicit:
        return Path(explicit).expanduser()
    if env.get("ORCH_CONFIG"):
        return Path(env["ORCH_CONFIG"]).expanduser()
    return Path(DEFAULT_CONFIG)


TRUSTED_ENV = "ORCH_TRUSTED_PATHS"


def check_trusted(path: Path, what: str, env: Mapping[str, str]) -> None:
    """A config, the ssh_config it names or a recipe folder can make the tool run commands as the user
    (a ProxyCommand, a recipe's command): one that another user owns, or that users besides its owner may
    write, is refused, as git refuses a repository owned by someone else, unless the user names it in
    $ORCH_TRUSTED_PATHS (colon-separated). Root's files are trusted (root can do anything already)."""
    if os.name != "posix":
        return
    try:
        st = path.stat()
    except OSError:
        return   # missing: the caller says so where it reads it
    trusted = {str(Path(p).expanduser().resolve()) for p in env.get(TRUSTED_ENV, "").split(":") if p}
    if str(path.resolve()) in trusted:
        return
    me = os.getuid()
    why = None
    if st.st_uid not in (me, 0):
        try:
            import pwd
            owner = pwd.getpwuid(st.st_uid).pw_name
        except (ImportError, KeyError):
            owner = f"uid {st.st_uid}"
        why = f"owned by {owner}, not by you"
    elif st.st_mode & 0o022:
        why = f"writable by {'others' if st.st_mode & 0o002 else 'its group'} (mode {st.st_mode & 0o777:o})"
    if why:
        raise ConfigError(f"{path}: {what} {why}: another user could make this tool run commands as you through "
                          f"it; refused. Fix its owner or mode (chmod go-w), or trust it on purpose: "
                          f"export {TRUSTED_ENV}={path.resolve()}")


def load_config(path: str | os.PathLike | None = None, env: Mapping[str, str] | None = None) -> Config:
    """Load, validate and layer the configuration; errors name file and key. The file, the ssh_config
    it names and its recipe folders must be the user's own (``check_trusted``)."""
    env = os.environ if env is None else env
    file = resolve_config_path(path, env)
    if not Path(file).exists():
        how = ("--config" if path else "$ORCH_CONFIG" if env.get("ORCH_CONFIG") else
               f"the default ./{DEFAULT_CONFIG} (no --config given, $ORCH_CONFIG unset)")
        raise ConfigError(f"{file}: config file not found ({how}). Make one with `orch init` (it reads the "
                          "login host from ~/.ssh/config and asks for the rest), or copy the example config.yaml "
                          "of the tool's README and edit ssh.host; then pass it with --config FILE or "
                          "ORCH_CONFIG=FILE")
    check_trusted(Path(file), "the config file is", env)
    try:
        raw = load_yaml_file(file)
        if raw is None:
            raw = {}
        config = parse_config(raw, env)
    except SchemaViolation as exc:
        where = f"{file}: {exc.path}" if exc.path else str(file)
        raise ConfigError(f"{where}: {exc.message}") from None
    check_trusted(Path(config.ssh.ssh_config).expanduser(), f"the ssh_config that {file} names is", env)
    for d in config.recipe_dirs:
        check_trusted(d, f"the recipe folder that {file} names is", env)
    return replace(config, source=file)


def _ssh_section(raw: dict) -> SSHConfig:
    check_keys(raw, _SSH_KEYS, "ssh", required=("host",))
    bool_local = raw.get("local", False)
    if not isinstance(bool_local, bool):
        raise SchemaViolation("ssh.local", f"expected true or false, got {bool_local!r}")
    if raw.get("agent"):
        # the local agent was retired: OpenSSH's ControlMaster keeps a connection between commands
        raise SchemaViolation("ssh.agent", "the local agent was retired; for a connection kept between commands "
                                           "set ssh.client: openssh (OpenSSH's ControlMaster; `connect` opens it)")
    client = raw.get("client", "auto")
    if client not in SSH_CLIENTS:
        raise SchemaViolation("ssh.client", f"expected one of {', '.join(SSH_CLIENTS)}, got {client!r}")
    return SSHConfig(
        client=client, control_path=expect_str(raw.get("control_path"), "ssh.control_path", optional=True),
        host=expect_str(raw["host"], "ssh.host"),
        port=None if raw.get("port") is None else expect_int(raw["port"], "ssh.port", 1, 65535),
        user=expect_str(raw.get("user"), "ssh.user", optional=True),
        key_file=expect_str(raw.get("key_file"), "ssh.key_file", optional=True),
        known_hosts=expect_str(raw.get("known_hosts", "~/.ssh/known_hosts"), "ssh.known_hosts"),
        ssh_config=expect_str(raw.get("ssh_config", "~/.ssh/config"), "ssh.ssh_config"),
        connect_timeout=expect_duration(raw.get("connect_timeout", 15), "ssh.connect_timeout", 1),
        keepalive=round(expect_duration(raw.get("keepalive", 30), "ssh.keepalive", 0)),
        local=bool_local,
    )


def _slurm_section(raw: dict, env: Mapping[str, str]) -> SlurmConfig:
    check_keys(raw, _SLURM_KEYS, "slurm")
    values = {key: expect_str(raw.get(key), f"slurm.{key}", optional=True) for key in _SLURM_KEYS}
    for var, key in ENV_OVERRIDES.items():
        if env.get(var):
            values[key] = env[var]
    if values["time"] is not None:
        source = "SLURM_TIME_LIMIT" if env.get("SLURM_TIME_LIMIT") else "slurm.time"
        expect_pattern(values["time"], source, is_slurm_time, "a SLURM time such as 02:00:00 or 1-00:00:00")
    return SlurmConfig(**values)


def parse_config(raw, env: Mapping[str, str]) -> Config:
    """Validate an already-parsed YAML document (pure: no file access)."""
    raw = expect_mapping(raw, "")
    check_keys(raw, _TOP_KEYS, "", required=("ssh",))
    ssh = _ssh_section(expect_mapping(raw["ssh"], "ssh"))
    slurm = _slurm_section(expect_mapping(raw.get("slurm") or {}, "slurm"), env)
    remote_raw = expect_mapping(raw.get("remote") or {}, "remote")
    check_keys(remote_raw, _REMOTE_KEYS, "remote")
    remote = RemoteConfig(work_dir=expect_str(remote_raw.get("work_dir", "~/.orchestrator"), "remote.work_dir"),
                          venv=expect_str(remote_raw.get("venv"), "remote.venv", optional=True))
    state_dir = Path(expect_str(raw.get("state_dir", "~/.orchestrator"), "state_dir")).expanduser()
    results_dir = Path(expect_str(raw.get("results_dir", "results"), "results_dir")).expanduser()
    dirs = raw.get("recipe_dirs") or []
    if not isinstance(dirs, list):
        raise SchemaViolation("recipe_dirs", f"expected a list of directories, got {dirs!r}")
    recipe_dirs = tuple(Path(expect_str(d, f"recipe_dirs[{i}]")).expanduser() for i, d in enumerate(dirs))
    limits_raw = expect_mapping(raw.get("limits") or {}, "limits")
    check_keys(limits_raw, ["range_points", "sweep_points"], "limits")
    limits = Limits(range_points=expect_int(limits_raw.get("range_points", Limits.range_points), "limits.range_points", 1),
                    sweep_points=expect_int(limits_raw.get("sweep_points", Limits.sweep_points), "limits.sweep_points", 1))
    return Config(ssh=ssh, slurm=slurm, remote=remote, state_dir=state_dir, results_dir=results_dir,
                  recipe_dirs=recipe_dirs, limits=limits)


def init_config_text(host: str, partition: str | None = None, account: str | None = None,
                     ssh_config: str = "~/.ssh/config") -> str:
    """A first config.yaml for ``orch init``: the login host as an alias of the user's OpenSSH config
    (its HostName, User, IdentityFile and ProxyJump apply), the SLURM options given, the rest defaults."""
    import yaml
    doc: dict = {"ssh": {"host": host, "ssh_config": ssh_config}}
    slurm = {k: v for k, v in (("partition", partition), ("account", account)) if v}
    if slurm:
        doc["slurm"] = slurm
    doc["remote"] = {"work_dir": "~/.orchestrator"}
    head = ("# Written by `orch init`. ssh.host is an alias of your OpenSSH config: its HostName, User,\n"
            "# IdentityFile and ProxyJump apply, and host keys are checked against known_hosts.\n"
            "# Check it with `orch doctor`; every key is described in the README's Configuration section.\n")
    return head + yaml.safe_dump(doc, sort_keys=False)


def ssh_config_hosts(text: str) -> list[str]:
    """The concrete host aliases of an OpenSSH config (``Host`` lines; patterns and negations left out),
    in the file's order."""
    hosts: list[str] = []
    for line in text.splitlines():
        words = line.split("#", 1)[0].split()
        if len(words) >= 2 and words[0].lower() == "host":
            hosts += [w for w in words[1:] if not any(c in w for c in "*?!") and w not in hosts]
    return hosts
