import json
import multiprocessing

import pytest

from orchestrator.errors import StateError
from orchestrator.state import StateStore


def _writer(state_dir, prefix, n):
    store = StateStore(state_dir, "services")
    for i in range(n):
        store.update(f"{prefix}_{i}", n=i)


def test_two_processes_updating_at_once_lose_nothing(tmp_path):
    procs = [multiprocessing.Process(target=_writer, args=(tmp_path, p, 40)) for p in ("a", "b")]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    data = StateStore(tmp_path, "services").load()
    assert len(data) == 80 and data["a_39"] == {"n": 39} and data["b_0"] == {"n": 0}


def test_corrupt_file_is_reported_and_left_untouched(tmp_path):
    path = tmp_path / "services.json"
    path.write_text('{"x": ')
    store = StateStore(tmp_path, "services")
    with pytest.raises(StateError, match="corrupt state file.*left as is"):
        store.update("y", a=1)
    assert path.read_text() == '{"x": '


def test_failed_transaction_writes_nothing(tmp_path):
    store = StateStore(tmp_path, "services")
    store.update("keep", a=1)
    with pytest.raises(RuntimeError):
        with store.transaction() as data:
            data["half"] = {}
            raise RuntimeError("boom")
    assert json.loads((tmp_path / "services.json").read_text()) == {"keep": {"a": 1}}
    assert not list(tmp_path.glob("*.tmp"))
