"""~/.ssh/config through paramiko, imported without invoke unless a `Match exec` line needs it."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

PROG = """
import sys
from orchestrator.cluster.ssh import resolve_endpoint
print("after import:", "invoke" in sys.modules)
ep = resolve_endpoint("login", sys.argv[1])
print("after config:", "invoke" in sys.modules, ep.hostname, ep.port, ep.user)
"""


def run(cfg: Path) -> list[str]:
    out = subprocess.run([sys.executable, "-c", PROG, str(cfg)], capture_output=True, text=True, check=True,
                         cwd=ROOT).stdout
    return out.splitlines()


def test_invoke_is_not_imported_for_a_plain_config(tmp_path):
    cfg = tmp_path / "config"
    cfg.write_text("Host login\n  HostName 10.0.0.5\n  Port 2222\n  User alice\n")
    assert run(cfg) == ["after import: False", "after config: False 10.0.0.5 2222 alice"]


def test_a_match_exec_line_still_runs_its_command(tmp_path):
    cfg = tmp_path / "config"
    cfg.write_text("Match host login exec \"true\"\n  HostName 10.0.0.6\n  User bob\n"
                   "Match host login exec \"false\"\n  Port 2200\n")
    assert run(cfg) == ["after import: False", "after config: True 10.0.0.6 22 bob"]
