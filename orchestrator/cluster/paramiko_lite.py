"""paramiko, imported without invoke unless an ssh_config needs it, and without importlib.metadata.

paramiko imports invoke (about 50 ms, a third of a command's start-up) only to run the
commands of `Match exec` lines in ~/.ssh/config; without it paramiko imports fine and raises
the import error when such a line is evaluated. So invoke is hidden while paramiko imports,
and brought in before a config that has `Match ... exec` is parsed.

paramiko's __init__ also imports importlib.metadata (10-35 ms: email, zipfile, csv) for one call,
`metadata.version("paramiko")`. While paramiko imports, that module is a stand-in whose version()
reads the installed distribution's directory name beside the package, which is what the real one
finds there; anything else falls through to the real importlib.metadata.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import re
import sys
import types



def installed_version(name: str) -> str:
    """The version in the ``NAME-VERSION.dist-info`` directory beside an installed package."""
    spec = importlib.util.find_spec(name)
    if spec is not None and spec.origin:
        site = os.path.dirname(os.path.dirname(spec.origin))
        found = [e[len(name) + 1:-len(".dist-info")] for e in os.listdir(site)
                 if e.lower().startswith(name.lower() + "-") and e.endswith(".dist-info")]
        if len(found) == 1:
            return found[0]
    return importlib.import_module("importlib.metadata").version(name)


_stand_in = types.ModuleType("importlib.metadata")
_stand_in.version = installed_version  # type: ignore[attr-defined]
_hidden = {name: sys.modules.get(name) for name in ("invoke", "importlib.metadata")}
sys.modules.setdefault("invoke", None)  # type: ignore[arg-type]  # None: "import invoke" fails
sys.modules.setdefault("importlib.metadata", _stand_in)
try:
    import paramiko
    import paramiko.config
finally:
    for _name, _was in _hidden.items():
        if _was is None and sys.modules.get(_name) in (None, _stand_in):
            del sys.modules[_name]

_MATCH_EXEC = re.compile(r"(?im)^\s*match\b.*\bexec\b")


def ssh_config_from_text(text: str) -> paramiko.SSHConfig:
    if paramiko.config.invoke is None and _MATCH_EXEC.search(text):
        paramiko.config.invoke = importlib.import_module("invoke")
    return paramiko.SSHConfig.from_text(text)


__all__ = ["paramiko", "ssh_config_from_text"]
