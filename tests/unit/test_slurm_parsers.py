import pytest

from orchestrator.cluster.slurm import (
    expand_nodelist,
    parse_sbatch,
    parse_scontrol_jobs,
    parse_sinfo_nodes,
    parse_squeue,
)
from orchestrator.errors import SlurmError


def test_squeue_recorded_output_parses_every_job(data):
    jobs = {j.job_id: j for j in parse_squeue(data("squeue_mixed.txt"))}
    assert set(jobs) == {"2", "3", "4_[0-5%2]"}
    running = jobs["2"]
    assert (running.name, running.state, running.nodes, running.reason) == ("svc_running", "RUNNING", ["n1", "n2"], "")
    # the user (which `watch --user` filters on) and the partition are different words in this recording
    assert (running.user, running.partition) == ("orch", "cpu")
    assert all(j.user == "orch" and j.partition == "cpu" for j in jobs.values())
    pending = jobs["3"]
    assert pending.name == "weird name|x" and pending.state == "PENDING" and pending.reason == "BeginTime"
    assert pending.nodes == [] and pending.start_time == "2026-11-25T19:48:04"


def test_a_job_name_with_a_newline_does_not_break_the_listing(data):
    # someone else's job named "evil\nname": squeue prints its record over two lines
    good = data("squeue_mixed.txt")
    fields = good.splitlines()[0].split("\x1f")
    broken = "\x1f".join(fields[:1] + ["evil\nname"] + fields[2:])
    jobs = parse_squeue(good + broken + "\n")
    assert [j.job_id for j in jobs] == [j.job_id for j in parse_squeue(good)]


@pytest.mark.parametrize("text,expected", [
    ("12345\n", "12345"), ("12345;cluster\n", "12345"), ("Submitted batch job 777\n", "777"),
])
def test_sbatch_answers(text, expected):
    assert parse_sbatch(text) == expected


def test_sbatch_unreadable_answer_quotes_it():
    with pytest.raises(SlurmError, match="sbatch: error: invalid partition"):
        parse_sbatch("sbatch: error: invalid partition")


def test_scontrol_oneliner_recorded_output(data):
    jobs = {j.job_id: j for j in parse_scontrol_jobs(data("scontrol_jobs.txt"))}
    assert jobs["5"].state == "FAILED" and jobs["5"].exit_code == "3:0" and jobs["5"].reason == "NonZeroExitCode"
    assert jobs["2"].nodes == ["n1", "n2"] and jobs["2"].user == "orch"


@pytest.mark.parametrize("text,expected", [
    ("n[1-3,7]", ["n1", "n2", "n3", "n7"]),
    ("mel[2001-2003]", ["mel2001", "mel2002", "mel2003"]),
    ("a1,b[2-3]", ["a1", "b2", "b3"]),
    ("gpu[08-10]", ["gpu08", "gpu09", "gpu10"]),
    ("n1", ["n1"]),
    ("", []),
])
def test_nodelist_expansion(text, expected):
    assert expand_nodelist(text) == expected


def test_sinfo_nodes_recorded(data):
    nodes = parse_sinfo_nodes(data("sinfo_nodes.txt"))
    assert {(n.name, n.partition) for n in nodes} == {("n1", "cpu"), ("n1", "gpu"), ("n2", "cpu"), ("n2", "gpu")}
