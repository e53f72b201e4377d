"""paramiko imported without invoke and importlib.metadata (cluster/paramiko_lite.py), run in a fresh
interpreter so that what the import leaves behind is what a command sees."""

import json
import subprocess
import sys

PROBE = """
import json, sys
import orchestrator.cluster.paramiko_lite as lite
after = {name: name in sys.modules for name in ("invoke", "importlib.metadata")}
from importlib.metadata import version
print(json.dumps({"after": after, "paramiko": lite.paramiko.__version__, "real": version("paramiko"),
                  "lite_cryptography": lite.installed_version("cryptography"),
                  "real_cryptography": version("cryptography"),
                  "config": bool(lite.ssh_config_from_text("Host x\\n  Port 2222\\n").lookup("x")["port"])}))
"""


def test_paramiko_reports_its_real_version_and_leaves_nothing_stubbed():
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True).stdout
    doc = json.loads(out)
    assert doc["after"] == {"invoke": False, "importlib.metadata": False}   # neither stand-in outlives the import
    assert doc["paramiko"] == doc["real"]
    assert doc["lite_cryptography"] == doc["real_cryptography"]
    assert doc["config"]


def test_a_name_with_no_distribution_directory_falls_through_to_importlib_metadata():
    import importlib.metadata

    import pytest

    from orchestrator.cluster.paramiko_lite import installed_version
    with pytest.raises(importlib.metadata.PackageNotFoundError):
        installed_version("yaml")   # the module is yaml, its distribution PyYAML: the real lookup decides
