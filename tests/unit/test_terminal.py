"""Waits on a terminal show one live line; elsewhere plain lines, as CI logs and pipes need."""

import io
import logging

from orchestrator import logs, waiting


class Tty(io.StringIO):
    def isatty(self):
        return True


def wait_three_polls(say):
    steps = iter([(False, "job 7 pending"), (False, "job 7 running"), (True, "job 7 ready")])
    waiting.poll_until(lambda: next(steps), timeout=60, interval=0, say=say, expected=10,
                       on_timeout=lambda: AssertionError("timed out"))


def test_a_terminal_gets_a_live_line_and_only_the_last_message(monkeypatch):
    monkeypatch.setenv("TERM", "xterm")
    out = Tty()
    logs.configure("text", stream=out)
    try:
        said = []
        wait_three_polls(lambda m: (said.append(m), logs.log(m)))
        assert said == ["job 7 ready"]  # the wait's lines were the live status, not printed one by one
        text = out.getvalue()
        assert "job 7 pending" in text and "\x1b[2K" in text  # drawn (and cleared) as a live line
        assert text.rstrip().endswith("job 7 ready")
        assert waiting.live.task is None  # stopped: nothing left on screen past the wait
    finally:
        logs.configure("text", stream=io.StringIO())
        logging.getLogger("orchestrator").handlers.clear()


def test_elsewhere_every_change_is_a_plain_line():
    out = io.StringIO()
    logs.configure("text", stream=out)
    said = []
    wait_three_polls(said.append)
    assert said == ["job 7 pending", "job 7 running", "job 7 ready"] and waiting.live is None
    logs.configure("json", stream=Tty())
    assert waiting.live is None  # --log-format json: never a live line
