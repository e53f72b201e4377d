import pytest

from orchestrator.cluster.slurm import parse_job_ids
from orchestrator.watch.attribution import classify, needs_attribution
from orchestrator.watch.watcher import WatchOptions


@pytest.mark.parametrize("state,code,log,cause", [
    ("FAILED", "0:9", "slurmstepd-n1: error: StepId=34.batch exceeded memory limit (427454464 > 67108864), being killed",
     "out of memory (host)"),
    ("FAILED", "1:0", "torch.cuda.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB", "out of memory (CUDA)"),
    ("TIMEOUT", "0:15", "slurmstepd: error: *** JOB 38 ON n2 CANCELLED AT 2026-11-25T19:28:05 DUE TO TIME LIMIT ***",
     "time limit"),
    ("NODE_FAIL", "0:0", "", "node failure"),
    ("FAILED", "1:0", "OSError: [Errno 98] Address already in use", "port already in use"),
    ("FAILED", "1:0", "FATAL:   While making image from oci registry: failed to pull image", "container image pull failure"),
    ("FAILED", "127:0", "/bin/bash: line 1: vllm: command not found", "missing binary or module"),
    ("FAILED", "1:0", "Lmod has detected the following error: The following module(s) are unknown: \"CUDA/99\"",
     "missing binary or module"),
    ("FAILED", "3:0", "loading\nERROR: weights missing\nbye", "non-zero exit: exit code 3"),
])
def test_causes_from_recorded_log_lines(state, code, log, cause):
    v = classify(state, code, log)
    assert v.cause == cause and v.evidence


def test_non_zero_exit_names_the_last_error_line():
    v = classify("FAILED", "2:0", "step 1\nValueError: bad config\nstep 2 done")
    assert v.cause == "non-zero exit: exit code 2" and v.evidence == ["ValueError: bad config"]


def test_user_cancel_and_clean_completion_need_no_attribution():
    assert not needs_attribution("CANCELLED") and not needs_attribution("COMPLETED")
    assert needs_attribution("FAILED") and needs_attribution("TIMEOUT") and needs_attribution("OUT_OF_MEMORY")


@pytest.mark.parametrize("text,expected", [
    ("12345", ["12345"]), ("12345_7", ["12345_7"]), ("12345+0", ["12345+0"]),
    ("12345_[0-3]", ["12345_0", "12345_1", "12345_2", "12345_3"]),
    ("12345_[8-10%4]", ["12345_8", "12345_9", "12345_10"]), ("7_[1,4-5]", ["7_1", "7_4", "7_5"]),
])
def test_every_job_id_form(text, expected):
    assert [str(j) for j in parse_job_ids(text)] == expected


def test_flags_win_over_environment():
    env = {"ORCH_WATCH_INTERVAL": "9", "ORCH_WATCH_PARTITIONS": "gpu,cpu", "ORCH_WATCH_USER": "bob"}
    o = WatchOptions.from_env(env, interval=3.0, partitions=None, user=None, job_pattern="^vllm")
    assert (o.interval, o.partitions, o.user, o.job_pattern) == (3.0, ["gpu", "cpu"], "bob", "^vllm")
