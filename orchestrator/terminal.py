"""Waits on a terminal: one live line (a spinner, what is happening, a bar when the wait's length
is known, elapsed time and time left) under the log lines, drawn with rich. ``logs.configure``
installs it only when stderr is a terminal and the format is text; otherwise every wait prints
plain lines as before (CI logs, pipes, ``--log-format json``)."""

from __future__ import annotations


class LiveWaits:
    def __init__(self, console):
        from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn
        self.console = console
        self.progress = Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(bar_width=24),
                                 TimeElapsedColumn(), TimeRemainingColumn(), console=console, transient=True)
        self.task = None

    def update(self, message: str, elapsed: float, expected: float | None) -> None:
        if self.task is None:
            self.progress.start()
            self.task = self.progress.add_task(message, total=expected)
        self.progress.update(self.task, description=message,
                             completed=min(elapsed, expected) if expected else None)

    def stop(self) -> None:
        if self.task is not None:
            self.progress.remove_task(self.task)
            self.progress.stop()
            self.task = None

    def print(self, line: str) -> None:
        self.console.print(line, markup=False, highlight=False, soft_wrap=True)


_CONTROL = {c: f"\\x{c:02x}" for c in [*range(0x00, 0x09), *range(0x0b, 0x20), 0x7f, *range(0x80, 0xa0)]}


def printable(text: str) -> str:
    """Text from the cluster (anyone's job names, log lines) as it may reach a terminal: control
    characters but newline and tab written as ``\\xNN``, so no escape sequence of another user's moves
    the cursor, retitles the window or writes to the clipboard."""
    return text.translate(_CONTROL)


def render_table(headers: list[str], rows: list[list[object]], sep: str = "  ") -> str:
    cells = [[str(c) for c in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in cells:
        for i, c in enumerate(row):
            widths[i] = max(widths[i], len(c))
    lines = [sep.join(h.ljust(w) for h, w in zip(headers, widths)).rstrip()]
    lines.append(sep.join("-" * w for w in widths))
    lines += [sep.join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in cells]
    return "\n".join(lines)
