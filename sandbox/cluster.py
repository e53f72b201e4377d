"""A throwaway multi-node SLURM cluster on this Linux machine (needs root).

Topology (all addresses belong to namespaces this module creates):

    laptop (host netns) --veth 10.78.0.1/30 <-> 10.78.0.2 login netns: sshd
                                                  |  10.77.0.1 on bridge orchbr0
                                      n1 10.77.0.11, n2 10.77.0.12 ... : slurmd

The host has no address on the bridge and an ``unreachable`` route for
10.77.0.0/24, so compute nodes cannot be reached from the laptop and no packet
for them leaves through the default gateway: exactly a real cluster's shape.
Daemons are started with ``nsenter --net`` (``ip netns exec`` remounts /sys and
breaks slurmd) plus ``unshare --uts`` so each node has its own hostname.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import yaml

from orchestrator.errors import OrchestratorError
from orchestrator.templating import render

TEMPLATES = str(Path(__file__).resolve().parent / "templates")

SANDBOX_DIR = Path(os.environ.get("ORCH_SANDBOX_DIR", "/var/lib/orch-sandbox"))
BRIDGE = "orchbr0"
CLUSTER_SUBNET = "10.77.0.0/24"
LOGIN_CLUSTER_ADDR = "10.77.0.1"
LAPTOP_VETH, LOGIN_VETH = "orch-laptop", "orch-uplink"
LAPTOP_ADDR, LOGIN_SSH_ADDR = "10.78.0.1", "10.78.0.2"
USER = "orch"
# a second, unprivileged cluster user: the hostile neighbour of tests/e2e/test_neighbour_e2e.py, who may
# log in and submit jobs like anyone on a shared cluster
NEIGHBOUR = "neighbour"
NO_SFTP_PORT = 2222       # a second sshd on the login node without the SFTP subsystem
HOSTS_MARK = "# orch-sandbox"
SLURM_CONF = Path("/etc/slurm/slurm.conf")
NODE_CPUS, NODE_MEMORY_MB = 4, 10000  # vLLM (mem 5G, about 3 GB RSS) beside its clients (aiperf: 3G) on one node
PACKAGES = ["slurmctld", "slurmd", "slurm-client", "munge", "openssh-server", "openssh-client",
            "prometheus", "prometheus-node-exporter", "curl", "iproute2", "procps", "util-linux",
            "hostname", "python3",
            # data services the sandbox runs natively, with their exporters
            "redis-server", "redis-tools", "prometheus-redis-exporter",
            "postgresql", "postgresql-client", "prometheus-postgres-exporter"]
REQUIRED_BINARIES = ["slurmctld", "slurmd", "sbatch", "munged", "sshd", "prometheus",
                     "prometheus-node-exporter", "curl", "ip", "nsenter", "unshare", "ssh-keygen",
                     "redis-server", "prometheus-redis-exporter", "pgbench", "prometheus-postgres-exporter"]

Progress = Callable[[str], None]


class SandboxError(OrchestratorError):
    pass


@dataclass(frozen=True)
class Node:
    name: str
    addr: str


def compute_nodes(count: int) -> list[Node]:
    return [Node(f"n{i}", f"10.77.0.{10 + i}") for i in range(1, count + 1)]


def node_range(count: int) -> str:
    return "n1" if count == 1 else f"n[1-{count}]"


def _sh(*args: str, check: bool = True, capture: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(list(args), capture_output=capture, text=True)
    if check and proc.returncode != 0:
        raise SandboxError(f"{' '.join(args)} failed: {(proc.stderr or proc.stdout).strip()}")
    return proc


def _in_ns(ns: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    return _sh("nsenter", f"--net=/var/run/netns/{ns}", *args, check=check)


def _pid_alive(pidfile: Path) -> bool:
    try:
        pid = int(pidfile.read_text().split()[0])
        os.kill(pid, 0)
        return True
    except (OSError, ValueError, IndexError):
        return False


def _namespaces() -> set[str]:
    out = _sh("ip", "netns", "list", check=False).stdout
    return {line.split()[0] for line in out.splitlines() if line.strip()}


# -- install ----------------------------------------------------------------
def missing_binaries() -> list[str]:
    paths = os.environ.get("PATH", "") + ":/usr/sbin:/sbin"
    return [b for b in REQUIRED_BINARIES if shutil.which(b, path=paths) is None]


def install_packages(progress: Progress) -> None:
    if not missing_binaries():
        return
    progress(f"installing Debian packages: {' '.join(PACKAGES)}")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for args in (["apt-get", "update", "-qq"],
                 ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *PACKAGES]):
        proc = subprocess.run(args, env=env, capture_output=True, text=True)
        if proc.returncode != 0:
            raise SandboxError(f"{' '.join(args)} failed:\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}")
    still = missing_binaries()
    if still:
        raise SandboxError(f"packages installed but still missing: {', '.join(still)}")


# -- pieces of `up` ----------------------------------------------------------
def _keys_and_user(d: Path) -> None:
    if not (d / "ssh_host_ed25519_key").exists():
        _sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(d / "ssh_host_ed25519_key"))
    if not (d / "id_ed25519").exists():
        _sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "orch-sandbox-laptop",
            "-f", str(d / "id_ed25519"))
    if not (d / "id_neighbour").exists():
        _sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "orch-sandbox-neighbour", "-f", str(d / "id_neighbour"))
    (d / "authorized_keys").mkdir(exist_ok=True)
    for user, key in ((USER, "id_ed25519.pub"), (NEIGHBOUR, "id_neighbour.pub")):
        if _sh("id", user, check=False).returncode != 0:
            _sh("useradd", "--create-home", "--shell", "/bin/bash", user)
            with open(d / "created_user", "a") as f:
                f.write(user + "\n")
        # useradd leaves the account locked ("!"), which sshd refuses even for keys; "*" means
        # "no password can match" without locking it.
        _sh("usermod", "-p", "*", user)
        shutil.copyfile(d / key, d / "authorized_keys" / user)
    # homes readable by everyone, as on many clusters: what keeps the neighbour out is the tool's own
    # modes (job dirs 700, files 600), not a private home
    os.chmod(pwd.getpwnam(USER).pw_dir, 0o755)
    _link_client_venv()
    host_pub = (d / "ssh_host_ed25519_key.pub").read_text().split()
    (d / "known_hosts").write_text(f"{LOGIN_SSH_ADDR} {host_pub[0]} {host_pub[1]}\n"
                                   f"[{LOGIN_SSH_ADDR}]:{NO_SFTP_PORT} {host_pub[0]} {host_pub[1]}\n")


CLIENT_VENV = Path(os.environ.get("ORCH_VENV_CACHE", "/var/cache/orch-venv"))


def _link_client_venv() -> None:
    """The cluster user's ~/.orchestrator/venv (the default remote.venv) is the one setup built
    (scripts/build-venv.sh); without it, `doctor` says the vector client and Chroma cannot run."""
    if not (CLIENT_VENV / "bin" / "python").exists():
        return
    home = Path(pwd.getpwnam(USER).pw_dir)
    link = home / ".orchestrator" / "venv"
    link.parent.mkdir(exist_ok=True)
    shutil.chown(link.parent, USER, USER)
    if link.is_symlink() or not link.exists():
        link.unlink(missing_ok=True)
        link.symlink_to(CLIENT_VENV)


def _network(nodes: list[Node]) -> None:
    have = _namespaces()
    for ns in ["login"] + [n.name for n in nodes]:
        if ns not in have:
            _sh("ip", "netns", "add", ns)
        _sh("ip", "-n", ns, "link", "set", "lo", "up")
    if _sh("ip", "link", "show", BRIDGE, check=False).returncode != 0:
        _sh("ip", "link", "add", BRIDGE, "type", "bridge")
    _sh("ip", "link", "set", BRIDGE, "up")
    for ns, addr in [("login", LOGIN_CLUSTER_ADDR)] + [(n.name, n.addr) for n in nodes]:
        host_end, ns_end = f"orch-{ns}", "eth0"
        if _sh("ip", "link", "show", host_end, check=False).returncode != 0:
            _sh("ip", "link", "add", host_end, "type", "veth", "peer", "name", ns_end, "netns", ns)
            _sh("ip", "-n", ns, "addr", "add", f"{addr}/24", "dev", ns_end)
        _sh("ip", "link", "set", host_end, "master", BRIDGE, "up")
        _sh("ip", "-n", ns, "link", "set", ns_end, "up")
    if _sh("ip", "link", "show", LAPTOP_VETH, check=False).returncode != 0:
        _sh("ip", "link", "add", LAPTOP_VETH, "type", "veth", "peer", "name", LOGIN_VETH, "netns", "login")
        _sh("ip", "addr", "add", f"{LAPTOP_ADDR}/30", "dev", LAPTOP_VETH)
        _sh("ip", "-n", "login", "addr", "add", f"{LOGIN_SSH_ADDR}/30", "dev", LOGIN_VETH)
    _sh("ip", "link", "set", LAPTOP_VETH, "up")
    _sh("ip", "-n", "login", "link", "set", LOGIN_VETH, "up")
    # Nothing for the cluster subnet may ever leave through the default gateway.
    if CLUSTER_SUBNET not in _sh("ip", "route", "show", "type", "unreachable").stdout:
        _sh("ip", "route", "add", "unreachable", CLUSTER_SUBNET)


def _hosts_file(nodes: list[Node]) -> None:
    hosts = Path("/etc/hosts")
    lines = [l for l in hosts.read_text().splitlines() if HOSTS_MARK not in l]
    lines.append(f"{LOGIN_CLUSTER_ADDR} login {HOSTS_MARK}")
    lines += [f"{n.addr} {n.name} {HOSTS_MARK}" for n in nodes]
    hosts.write_text("\n".join(lines) + "\n")


def _munge_works() -> bool:
    return subprocess.run("munge -n | unmunge", shell=True, capture_output=True).returncode == 0


def _munge(d: Path) -> None:
    # A functional test, not pgrep: a munged that is still shutting down must not count.
    if _munge_works():
        return
    Path("/run/munge").mkdir(parents=True, exist_ok=True)
    shutil.chown("/run/munge", "munge", "munge")
    if not Path("/etc/munge/munge.key").exists():
        _sh("mungekey", "--create")
        shutil.chown("/etc/munge/munge.key", "munge", "munge")
    _sh("runuser", "-u", "munge", "--", "/usr/sbin/munged", "--force")
    (d / "started_munged").write_text("1")
    for _ in range(50):
        if _munge_works():
            return
        time.sleep(0.1)
    raise SandboxError("munged started but `munge -n | unmunge` still fails")


def _slurm_conf(d: Path, nodes: list[Node]) -> None:
    text = render("slurm.conf.j2", TEMPLATES, login_addr=LOGIN_CLUSTER_ADDR, state_dir=str(d),
                  nodes=nodes, node_names=node_range(len(nodes)), cpus=NODE_CPUS,
                  memory_mb=NODE_MEMORY_MB)
    SLURM_CONF.parent.mkdir(parents=True, exist_ok=True)
    if SLURM_CONF.exists() and "orchestrator sandbox" not in SLURM_CONF.read_text():
        backup = SLURM_CONF.with_suffix(".conf.orch-backup")
        if not backup.exists():
            SLURM_CONF.rename(backup)
    SLURM_CONF.write_text(text)
    (d / "log").mkdir(exist_ok=True)
    (d / "slurmctld").mkdir(exist_ok=True)


def _start_in_ns(ns: str, hostname: str, pidfile: Path, argv: list[str]) -> None:
    if _pid_alive(pidfile):
        return
    script = f"hostname {hostname} && exec {' '.join(argv)}"
    _sh("nsenter", f"--net=/var/run/netns/{ns}", "unshare", "--uts", "sh", "-c", script)
    for _ in range(50):
        if _pid_alive(pidfile):
            return
        time.sleep(0.1)
    raise SandboxError(f"{argv[0]} did not start in namespace {ns}; see {SANDBOX_DIR}/log/")


def _daemons(d: Path, nodes: list[Node]) -> None:
    _start_in_ns("login", "login", d / "slurmctld.pid", ["slurmctld"])
    for n in nodes:
        _start_in_ns(n.name, n.name, d / f"slurmd-{n.name}.pid", ["slurmd", "-N", n.name])
    Path("/run/sshd").mkdir(exist_ok=True)
    (d / "sshd_config").write_text(render("sshd_config.j2", TEMPLATES, listen=[LOGIN_SSH_ADDR, LOGIN_CLUSTER_ADDR],
                                          state_dir=str(d), user=f"{USER} {NEIGHBOUR}", port=22, pidfile="sshd.pid",
                                          sftp=True))
    _start_in_ns("login", "login", d / "sshd.pid", ["/usr/sbin/sshd", "-f", str(d / "sshd_config")])
    # the same login node as some sites run it: no SFTP subsystem (transfers must go over exec)
    (d / "sshd_nosftp_config").write_text(render("sshd_config.j2", TEMPLATES, listen=[LOGIN_SSH_ADDR], state_dir=str(d),
                                                 user=USER, port=NO_SFTP_PORT, pidfile="sshd-nosftp.pid", sftp=False))
    _start_in_ns("login", "login", d / "sshd-nosftp.pid", ["/usr/sbin/sshd", "-f", str(d / "sshd_nosftp_config")])


def sinfo_nodes() -> dict[str, str]:
    proc = _in_ns("login", "sinfo", "-h", "-N", "-o", "%N %T", check=False)
    if proc.returncode != 0:
        return {"sinfo": (proc.stderr.strip().splitlines() or ["failed"])[-1]}
    states = {}
    for line in proc.stdout.splitlines():
        name, state = line.split()
        states[name] = state
    return states


def _wait_idle(nodes: list[Node], progress: Progress, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        states = sinfo_nodes()
        ready = {n.name for n in nodes if states.get(n.name, "").rstrip("*") in ("idle", "mixed", "allocated")}
        if len(ready) == len(nodes):
            return
        if states != last:
            progress("waiting for nodes: " + ", ".join(f"{k}={v}" for k, v in sorted(states.items())))
            last = states
        time.sleep(0.5)
    raise SandboxError(f"nodes did not become idle within {timeout:.0f}s: {sinfo_nodes()}; "
                       f"see {SANDBOX_DIR}/log/")


def _write_config(d: Path) -> Path:
    config = {
        "ssh": {"host": LOGIN_SSH_ADDR, "port": 22, "user": USER,
                "key_file": str(d / "id_ed25519"), "known_hosts": str(d / "known_hosts"),
                # the suite's transport, named: a user's config leaves it out (auto: OpenSSH where `ssh`
                # is on PATH); tests/e2e/test_openssh_e2e.py and the quick start run OpenSSH's
                "client": "paramiko"},
        "slurm": {"partition": "cpu", "time": "00:30:00"},
        "remote": {"work_dir": "~/.orchestrator"},
        "state_dir": str(d / "laptop-state"),
    }
    path = d / "config.yaml"
    path.write_text("# Written by `python main.py sandbox up`: points the tool at the sandbox.\n"
                    + yaml.safe_dump(config, sort_keys=False))
    # the neighbour's own laptop: the same cluster as another user (tests/e2e/test_neighbour_e2e.py)
    config["ssh"] = {**config["ssh"], "user": NEIGHBOUR, "key_file": str(d / "id_neighbour")}
    config["state_dir"] = str(d / "neighbour-state")
    (d / "config-neighbour.yaml").write_text("# The sandbox as its second user, the neighbour.\n"
                                             + yaml.safe_dump(config, sort_keys=False))
    return path


# -- public ------------------------------------------------------------------
def up(nodes: int = 3, install: bool = True, progress: Progress = print) -> Path:
    """Build (or check) the sandbox; idempotent. Returns the config file for the tool."""
    if os.geteuid() != 0:
        raise SandboxError("the sandbox needs root (network namespaces, daemons): run as root")
    d = SANDBOX_DIR
    meta = d / "sandbox.json"
    if meta.exists():
        have = json.loads(meta.read_text())["nodes"]
        if have != nodes:
            raise SandboxError(f"the sandbox is up with {have} nodes; run `sandbox down` first "
                               f"to rebuild it with {nodes}")
    if install:
        install_packages(progress)
    elif missing_binaries():
        raise SandboxError(f"missing: {', '.join(missing_binaries())} (run without --no-install)")
    d.mkdir(parents=True, exist_ok=True)
    meta.write_text(json.dumps({"nodes": nodes}))
    node_list = compute_nodes(nodes)
    progress(f"network: login + {node_range(nodes)} on {CLUSTER_SUBNET}, login SSH at {LOGIN_SSH_ADDR}")
    _keys_and_user(d)
    _network(node_list)
    _hosts_file(node_list)
    _munge(d)
    _slurm_conf(d, node_list)
    progress("daemons: munged, slurmctld, slurmd, sshd")
    _daemons(d, node_list)
    _wait_idle(node_list, progress)
    path = _write_config(d)
    progress(f"sandbox up: {nodes} idle nodes; config at {path}")
    return path


def down(progress: Progress = print) -> None:
    """Remove every namespace, route, process, file and /etc/hosts line `up` added."""
    d = SANDBOX_DIR
    nodes = json.loads((d / "sandbox.json").read_text())["nodes"] if (d / "sandbox.json").exists() else 0
    names = {"login", *(n.name for n in compute_nodes(nodes))} & _namespaces()
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for ns in names:
            for pid in _sh("ip", "netns", "pids", ns, check=False).stdout.split():
                try:
                    os.kill(int(pid), sig)
                except OSError:
                    pass
        if sig == signal.SIGTERM:
            time.sleep(1)
    for ns in names:
        _sh("ip", "netns", "del", ns, check=False)
    for link in (BRIDGE, LAPTOP_VETH):
        _sh("ip", "link", "del", link, check=False)
    _sh("ip", "route", "del", "unreachable", CLUSTER_SUBNET, check=False)
    hosts = Path("/etc/hosts")
    hosts.write_text("".join(l + "\n" for l in hosts.read_text().splitlines() if HOSTS_MARK not in l))
    if (d / "started_munged").exists():
        _sh("pkill", "-x", "munged", check=False)
        for _ in range(50):  # a later `up` must not mistake a dying munged for a live one
            if _sh("pgrep", "-x", "munged", check=False).returncode != 0:
                break
            time.sleep(0.1)
    if SLURM_CONF.exists() and "orchestrator sandbox" in SLURM_CONF.read_text():
        SLURM_CONF.unlink()
        backup = SLURM_CONF.with_suffix(".conf.orch-backup")
        if backup.exists():
            backup.rename(SLURM_CONF)
    if (d / "created_user").exists():
        for user in (d / "created_user").read_text().split():
            _sh("pkill", "-u", user, check=False)
            _sh("userdel", "--remove", user, check=False)
    shutil.rmtree(d, ignore_errors=True)
    progress("sandbox down: namespaces, route, daemons, hosts lines and files removed")


def status() -> dict:
    d = SANDBOX_DIR
    meta = d / "sandbox.json"
    if not meta.exists():
        return {"up": False}
    nodes = compute_nodes(json.loads(meta.read_text())["nodes"])
    daemons = {"slurmctld": _pid_alive(d / "slurmctld.pid"), "sshd": _pid_alive(d / "sshd.pid"),
               "sshd (no SFTP, port %d)" % NO_SFTP_PORT: _pid_alive(d / "sshd-nosftp.pid"),
               "munged": _sh("pgrep", "-x", "munged", check=False).returncode == 0}
    daemons.update({f"slurmd@{n.name}": _pid_alive(d / f"slurmd-{n.name}.pid") for n in nodes})
    return {"up": all(daemons.values()), "config": str(d / "config.yaml"), "login_ssh": LOGIN_SSH_ADDR,
            "namespaces": sorted(_namespaces() & {"login", *(n.name for n in nodes)}),
            "daemons": daemons, "nodes": sinfo_nodes() if daemons["slurmctld"] else {}}
