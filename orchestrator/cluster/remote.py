"""Output of the tool's remote scripts, split into sections (pure but for the nonce).

One round trip can carry several answers (doctor's checks, a probe's job state,
endpoint, health and log, many Prometheus responses), so scripts print a marker
line before each. The marker carries a random token chosen for that call:
``@@<token> name arg...``. A service's log line, a job name or a Prometheus
answer cannot forge it, because they never saw the token.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field


@dataclass
class Section:
    name: str
    args: list[str]
    lines: list[str] = field(default_factory=list)

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


class Marker:
    """The section marker of one remote call."""

    def __init__(self, token: str | None = None):
        self.token = token or secrets.token_hex(8)
        self.prefix = f"@@{self.token} "

    def echo(self, name: str, *shell_args: str) -> str:
        """Shell that prints the marker; ``shell_args`` are shell words (already quoted or "$VAR")."""
        return " ".join(["echo", f"'{self.prefix}{name}'", *shell_args])

    def parse(self, text: str) -> list[Section]:
        """Sections in order; lines before the first marker are ignored (login banners, noise)."""
        out: list[Section] = []
        # split on \n only: a log may hold \r or other characters splitlines() would break at
        lines = text.split("\n")
        if lines and lines[-1] == "":
            lines.pop()  # the newline that ends the output, not an empty last line
        for line in lines:
            if line.startswith(self.prefix):
                parts = line[len(self.prefix):].split()
                out.append(Section(parts[0] if parts else "", parts[1:]))
            elif out:
                out[-1].lines.append(line)
        return out

    def split(self, text: str, separator: str) -> list[list[Section]]:
        """Sections grouped by ``separator`` sections (several probes in one call)."""
        groups: list[list[Section]] = [[]]
        for sec in self.parse(text):
            if sec.name == separator:
                groups.append([])
            else:
                groups[-1].append(sec)
        return groups


def by_name(sections: list[Section]) -> dict[str, Section]:
    """The last section of each name."""
    return {s.name: s for s in sections}
