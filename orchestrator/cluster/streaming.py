"""A whole wait in one remote command: the login node repeats a poll, the laptop reads each round.

A wait (a job pending, Prometheus starting, a load running) was one round trip per poll: a
20-second session spent 30 of its 48 commands polling. Now the login node runs the poll itself
every ``interval`` seconds (``repeat_script``) and prints each round's output followed by an end
marker; the laptop reads the rounds as they arrive (``Transport.stream``), says their progress,
and closes the channel once it has what it waited for. The remote loop then dies at its next
write (SIGPIPE), and in any case after its bounded number of rounds: nothing is left running.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Iterator
from contextlib import closing

from orchestrator.cluster.remote import Marker
from orchestrator.errors import CommandTimeout, HostKeyError, TransportError


class LineSplitter:
    """Bytes as they arrive, out as whole lines (split on \\n only, as Marker.parse does)."""

    def __init__(self) -> None:
        self._rest = b""

    def feed(self, data: bytes) -> list[str]:
        *lines, self._rest = (self._rest + data).split(b"\n")
        return [line.decode(errors="replace") for line in lines]

    def flush(self) -> list[str]:
        rest, self._rest = self._rest, b""
        return [rest.decode(errors="replace")] if rest else []


def process_lines(argv: list[str], timeout: float | None, what: str,
                  on_end: Callable[[int, str], None] | None = None, **popen: object) -> Iterator[str]:
    """Lines of a local process's stdout as they come (the OpenSSH and local transports' stream).
    Closing the generator early kills the process; ``on_end(returncode, stderr)`` may raise."""
    import selectors   # (here: paramiko's commands, most of them, never start a local process)
    import subprocess
    import tempfile
    deadline = None if timeout is None else time.monotonic() + timeout
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=err, **popen)
        assert proc.stdout is not None
        fd = proc.stdout.fileno()
        os.set_blocking(fd, False)
        split = LineSplitter()
        try:
            with selectors.DefaultSelector() as sel:
                sel.register(fd, selectors.EVENT_READ)
                while True:
                    left = None if deadline is None else deadline - time.monotonic()
                    if left is not None and left <= 0:
                        raise CommandTimeout(f"remote command timed out after {timeout}s: {what[:120]}")
                    if not sel.select(left):
                        continue
                    data = os.read(fd, 65536)
                    if not data:
                        break
                    yield from split.feed(data)
            yield from split.flush()
            proc.wait(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            proc.stdout.close()
        err.seek(0)
        if on_end is not None:
            on_end(proc.returncode, err.read().decode(errors="replace"))


def repeat_script(command: str, interval: float, seconds: float, mark: Marker,
                  fast_after: float | None = None, fast_interval: float | None = None) -> str:
    """``command`` run every ``interval`` seconds (every ``fast_interval`` once ``fast_after`` seconds
    have passed) for at most ``seconds``, each run's output followed by the end marker and its exit
    status. Each round runs in a subshell: nothing in one can end the loop early."""
    pause = f"sleep {interval:g}"
    if fast_after is not None and fast_interval is not None:
        pause = (f"if [ $(( $(date +%s) - t0 )) -ge {math.ceil(fast_after)} ]; then sleep {fast_interval:g}; "
                 f"else {pause}; fi")
    return (f"t0=$(date +%s); while :; do ( {command} ); {mark.echo('round')} $?; "
            f"[ $(( $(date +%s) - t0 )) -ge {math.ceil(seconds)} ] && break; {pause}; done")


def split_rounds(lines: Iterator[str], mark: Marker) -> Iterator[str]:
    """Each round's output (its lines joined, newline-ended as a command's stdout is)."""
    end = mark.prefix + "round"
    held: list[str] = []
    for line in lines:
        at = line.find(end)   # not only at a line's start: a round's output may not end with a newline
        if at < 0:
            held.append(line)
            continue
        if at:
            held.append(line[:at])
        yield "".join(x + "\n" for x in held)
        held = []


def repeated(transport, command: str, *, interval: float, timeout: float,
             fast_after: float | None = None, fast_interval: float | None = None) -> Iterator[str]:
    """The stdout of ``command`` run every ``interval`` seconds, one round at a time as it arrives,
    each stream of rounds ONE remote command (another begins only if a stream ends before
    ``timeout``: a round slower than its interval). Close it (or leave its ``with``) to stop."""
    began = time.monotonic()
    lost_in_a_row = 0
    while True:
        left = timeout - (time.monotonic() - began)
        fast = None if fast_after is None else max(0.0, fast_after - (time.monotonic() - began))
        mark = Marker()
        lines = transport.stream(repeat_script(command, interval, max(left, 0), mark, fast, fast_interval),
                                 timeout=max(left, 0) + interval + 60)
        try:
            with closing(lines):
                for out in split_rounds(lines, mark):
                    lost_in_a_row = 0
                    yield out
        except (HostKeyError, CommandTimeout):
            raise
        except TransportError:
            # the connection dropped mid-wait: the polls are safe to repeat, so the wait goes on over a
            # new one (the transport reconnects), as each poll's own command once did; twice in a row
            # without a round between is a cluster out of reach
            lost_in_a_row += 1
            if lost_in_a_row > 1:
                raise
            continue
        if time.monotonic() - began >= timeout:
            return
