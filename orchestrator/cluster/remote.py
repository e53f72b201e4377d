"""Output of the tool's remote scripts: ``@@name arg...`` lines open sections (pure).

Every multi-part remote command (doctor, probes, watcher polls, session
progress) prints this way, so one round trip can carry several answers.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Section:
    name: str
    args: list[str]
    lines: list[str] = field(default_factory=list)

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


def parse_sections(text: str) -> list[Section]:
    """Sections in order; lines before the first ``@@`` line are ignored."""
    out: list[Section] = []
    for line in text.splitlines():
        if line.startswith("@@"):
            parts = line[2:].split()
            out.append(Section(parts[0] if parts else "", parts[1:]))
        elif out:
            out[-1].lines.append(line)
    return out


def by_name(sections: list[Section]) -> dict[str, Section]:
    """The last section of each name."""
    return {s.name: s for s in sections}
