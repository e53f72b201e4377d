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


def test_records_are_typed_and_keep_what_they_do_not_name(tmp_path):
    from orchestrator.state import MonitorRecord, ServiceRecord
    rec = ServiceRecord.from_dict("vllm_0123abcd", {"job_id": "7", "engine": "vllm", "auth": "bearer",
                                                    "state": "RUNNING", "future_field": {"x": 1}, "verdict": None})
    assert (rec.service_id, rec.job_id, rec.engine, rec.auth, rec.state) == ("vllm_0123abcd", "7", "vllm", "bearer",
                                                                             "RUNNING")
    assert rec.verdict is None and rec.other == {"future_field": {"x": 1}}
    mon = MonitorRecord.from_dict("prometheus_0123abcd", {"targets": [{"address": "n1:9100"}], "job_id": "8"})
    assert mon.targets == [{"address": "n1:9100"}] and mon.job_id == "8" and mon.exporter_jobs == []
