"""What a session keeps while it runs: each point's jobs and results, and the session's own state."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from orchestrator.analysis.sweep import Point


@dataclass
class PointRun:
    point: Point
    out_dir: Path
    clients: list[str] = field(default_factory=list)
    targets: dict[str, str] = field(default_factory=dict)   # client service ID -> the service it loads
    go_time: float | None = None
    records: int = 0                      # request records collected (in out_dir/requests.jsonl)
    service_counts: dict[str, int] = field(default_factory=dict)  # target -> items it holds (vector clients)
    monitored: bool = False               # its clients were added to the monitor's targets
    all_done: bool = False                # every client wrote done.json: its files are complete
    redeployed: list[str] = field(default_factory=list)  # services this point deployed anew (swept fields)
    warmup_until: float | None = None
    report: dict | None = None
    interrupted: bool = False
    cache: dict[str, str] = field(default_factory=dict)   # service -> how its prefix cache began the load
    conversations: dict = field(default_factory=dict)     # multiturn: cut, context_tokens (from done.json)
    lost: list[str] = field(default_factory=list)         # clients whose job ended before they finished
    last: bool = False                    # no point follows: the monitor goes with the session


@dataclass
class SessionState:
    session_id: str
    out_dir: Path
    started: list[str] = field(default_factory=list)       # service IDs this session started
    services: dict = field(default_factory=dict)           # name -> service_id (current)
    replicas: dict = field(default_factory=dict)           # a replicated service's name -> its replicas' names
    all_services: list[str] = field(default_factory=list)
    monitor_id: str | None = None
    interrupted: bool = False
    errors: list[str] = field(default_factory=list)
    points: list[PointRun] = field(default_factory=list)
