"""A wait as one remote command: the login node repeats the poll, the laptop reads the rounds
(cluster/streaming.py), run here through the local shell: the same loop a login node runs."""

import time
from itertools import islice

from orchestrator.cluster.local import LocalTransport
from orchestrator.cluster.remote import Marker
from orchestrator.cluster.streaming import LineSplitter, repeated, split_rounds


def test_lines_are_whole_whatever_the_chunks():
    split = LineSplitter()
    assert split.feed(b"ab") == []
    assert split.feed(b"c\nd\n\ne") == ["abc", "d", ""]
    assert split.flush() == ["e"]
    assert split.flush() == []


def test_a_round_ends_at_its_marker_even_without_a_newline_before_it():
    mark = Marker("0123456789abcdef")
    lines = ["first", '{"status":"success"}' + mark.prefix + "round 0", mark.prefix + "round 0", "x",
             mark.prefix + "round 1", "unfinished"]
    assert list(split_rounds(iter(lines), mark)) == ['first\n{"status":"success"}\n', "", "x\n"]


def test_a_forged_marker_from_a_round_does_not_end_it():
    mark = Marker("0123456789abcdef")
    lines = ["@@ffffffffffffffff round 0", mark.prefix + "round 0"]
    assert list(split_rounds(iter(lines), mark)) == ["@@ffffffffffffffff round 0\n"]


def test_rounds_come_one_per_interval_over_one_command(tmp_path):
    t = LocalTransport()
    counter = tmp_path / "n"
    # each round prints how many rounds ran before it, without a final newline
    cmd = f"n=$(cat {counter} 2>/dev/null || echo 0); printf %s $n; echo $((n+1)) > {counter}"
    began = time.monotonic()
    rounds = repeated(t, cmd, interval=0.2, timeout=30)
    got = list(islice(rounds, 4))
    rounds.close()
    assert got == ["0\n", "1\n", "2\n", "3\n"]
    assert t.stats.commands == 1
    assert 0.5 < time.monotonic() - began < 10   # three pauses of 0.2 s between four rounds


def test_closing_the_rounds_ends_the_loop_on_the_other_side(tmp_path):
    t = LocalTransport()
    counter = tmp_path / "ticks"
    rounds = repeated(t, f"echo tick >> {counter}; echo ok", interval=0.1, timeout=60)
    assert next(rounds) == "ok\n"
    rounds.close()
    time.sleep(0.3)
    ticks = counter.read_text().count("tick")
    time.sleep(0.5)
    assert counter.read_text().count("tick") == ticks   # no round ran after the close


def test_the_loop_ends_by_itself_at_its_time_limit(tmp_path):
    t = LocalTransport()
    began = time.monotonic()
    rounds = list(repeated(t, "echo r", interval=0.3, timeout=1))
    assert 1 <= len(rounds) <= 10 and set(rounds) == {"r\n"}
    assert time.monotonic() - began < 10   # it ended by itself: nobody closed it
