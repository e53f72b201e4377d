"""paramiko, imported without invoke unless an ssh_config needs it.

paramiko imports invoke (about 50 ms, a third of a command's start-up) only to run the
commands of `Match exec` lines in ~/.ssh/config; without it paramiko imports fine and raises
the import error when such a line is evaluated. So invoke is hidden while paramiko imports,
and brought in before a config that has `Match ... exec` is parsed.
"""

from __future__ import annotations

import importlib
import re
import sys

_had_invoke = "invoke" in sys.modules
sys.modules.setdefault("invoke", None)  # type: ignore[arg-type]  # None: "import invoke" fails
try:
    import paramiko
    import paramiko.config
finally:
    if not _had_invoke and sys.modules.get("invoke") is None:
        del sys.modules["invoke"]

_MATCH_EXEC = re.compile(r"(?im)^\s*match\b.*\bexec\b")


def ssh_config_from_text(text: str) -> paramiko.SSHConfig:
    if paramiko.config.invoke is None and _MATCH_EXEC.search(text):
        paramiko.config.invoke = importlib.import_module("invoke")
    return paramiko.SSHConfig.from_text(text)


__all__ = ["paramiko", "ssh_config_from_text"]
