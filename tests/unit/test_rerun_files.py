"""`rerun` takes its recipes from a MANIFEST, which may come from anyone: the files it ships are the
package's or the session directory's own, never a path the MANIFEST points at on the laptop."""

import hashlib
import json

import pytest

from orchestrator.bench.rerun import rerun_recipes
from orchestrator.errors import OrchestratorError

BENCH = ("benchmark:\n  name: b\n  services: [{recipe: svc}]\n  clients:\n    - kind: http\n      target: svc\n"
         "      requests: 1\n")


def manifest(d, files: dict, recorded: dict):
    text = ("service:\n  name: svc\n  command: python3 x.py\n  files: " + json.dumps(files) + "\n  ports: [auto]\n")
    (d / "MANIFEST.json").write_text(json.dumps({
        "session": "s1", "benchmark_recipe": {"source": "/b.yaml", "text": BENCH},
        "service_recipes": {"svc": {"source": "/r.yaml", "text": text, "files": recorded}}}))


def test_a_manifest_cannot_make_a_rerun_ship_a_laptop_file(tmp_path):
    bashrc = "root/.bashrc"
    manifest(tmp_path, {"x.py": bashrc}, {"x.py": "0" * 64})
    with pytest.raises(OrchestratorError, match="copy them there"):
        rerun_recipes(tmp_path)


def test_files_in_the_session_directory_ship_when_they_are_the_ones_recorded(tmp_path):
    (tmp_path / "x.py").write_text("print('hi')\n")
    sha = hashlib.sha256(b"print('hi')\n").hexdigest()
    manifest(tmp_path, {"x.py": "x.py"}, {"x.py": sha})
    _, services, previous, warnings = rerun_recipes(tmp_path)
    assert previous == "s1" and services["svc"].files["x.py"] == str((tmp_path / "x.py").resolve())
    manifest(tmp_path, {"x.py": "x.py"}, {"x.py": "f" * 64})
    with pytest.raises(OrchestratorError, match="is not the file x.py the session shipped"):
        rerun_recipes(tmp_path)
    # a packaged file that changed since is shipped as it is now, with a warning
    manifest(tmp_path, {"x.py": "package:oncluster/loadgen.py"}, {"x.py": "e" * 64})
    _, _, _, warnings = rerun_recipes(tmp_path)
    assert warnings and "changed since s1" in warnings[0]
