"""The one polling loop: ask, say what changed, stop when done or out of time.

Readiness waits, target resolution, waiting for scrapes, for load clients and
for jobs to end all poll the cluster the same way; the loop lives here once,
with its clock and sleep in one place (tests replace them).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import closing
from typing import Any, Callable

Step = Callable[[], "tuple[bool, str]"]

sleep = time.sleep
clock = time.monotonic
now = time.time          # wall clock: windows are in unix seconds
live = None              # a terminal.LiveWaits when stderr is a terminal (logs.configure sets it)


def poll_until(step: Step, *, timeout: float, interval: float | Callable[[], float],
               say: Callable[[str], None] | None = None,
               on_timeout: Callable[[], BaseException], every: float = 0.0, expected: float | None = None) -> None:
    """Call ``step`` until it returns ``(True, message)``.

    ``step`` returns (done, a progress line); a line is said when it changes, or
    again after ``every`` seconds when given. Past ``timeout`` the exception from
    ``on_timeout`` is raised; ``step`` may raise to end the wait early. On a terminal
    the line is a live status instead (``expected``: the wait's usual length, for a
    bar and the time left), and only the last one is said. ``interval`` may be a function
    giving the next pause (a wait that knows when the end is due polls faster near it).
    """
    start = clock()
    deadline = start + timeout
    last, last_said = None, 0.0
    try:
        while True:
            done, message = step()
            now = clock()
            if live is not None and say:
                if message:
                    live.update(message, now - start, expected)
                if done and message:
                    live.stop()
                    say(message)
            elif message and say and (message != last or (every and now - last_said >= every)):
                say(message)
                last, last_said = message, now
            if done:
                return
            if now >= deadline:
                raise on_timeout()
            sleep(interval() if callable(interval) else interval)
    finally:
        if live is not None:
            live.stop()


def follow(rounds: Iterator[Any], step: Callable[[Any], "tuple[bool, str]"], *, timeout: float,
           on_timeout: Callable[[], BaseException], **options) -> None:
    """``poll_until`` over rounds that come at their own pace (``cluster.streaming``: the login node
    polls): ``step`` is handed each round; rounds that run out end the wait as its timeout does.
    The rounds are closed however the wait ends."""
    def next_round() -> tuple[bool, str]:
        item = next(rounds, None)
        if item is None:
            raise on_timeout()
        return step(item)

    with closing(rounds):
        poll_until(next_round, timeout=timeout, interval=0, on_timeout=on_timeout, **options)
