"""A transport that replays what the sandbox cluster answered, and the recorder that captured it.

A cassette (tests/data/cassettes/*.json) holds, in order, every remote call of
a scenario run against the sandbox (command, exit code, stdout, stderr; file
downloads with their bytes) and every random token the tool drew and wall-clock time it read (``waiting.now``) meanwhile.
Replaying draws the same tokens, so the tool sends the same commands and
parses the real answers: unit tests of the orchestration code without a
cluster, as any user, in milliseconds. Commands are compared whole, job IDs,
ports and times included (the answers and the clock are the recorded ones),
heredoc bodies (rendered configs) too, with only the per-call output markers
blanked; what a
command ships on stdin (each file of a job bundle, by name, mode and content;
node programs against the code's current files) and every upload are compared
too; any difference fails the test, showing both.
"""

from __future__ import annotations

import base64
import contextlib
import json
import re
import secrets
from pathlib import Path

from orchestrator import waiting
from orchestrator.cluster.transport import CommandResult, TransportStats
from orchestrator.errors import CommandTimeout, TransportError

CASSETTES = Path(__file__).resolve().parent / "data" / "cassettes"
_MARKER = re.compile(r"@@[0-9a-f]{16}")
_BCRYPT = re.compile(rb"\$2[aby]\$\d\d\$[./A-Za-z0-9]{53}")


def shipped(stdin: str | None) -> dict | None:
    """What a command's stdin ships, as compared between recording and replay: a job bundle (base64 of a
    gzipped tar) as {member: [mode, sha256 of its bytes]}, other input as its sha256. The tool draws the
    recorded tokens when replaying, so the job script, the secret and every shipped file are the same
    bytes: a dropped file, a renamed field in a client, a changed mode all show."""
    if stdin is None:
        return None
    import gzip
    import hashlib
    import io
    import tarfile
    try:
        raw = base64.b64decode(stdin.strip(), validate=True)
        with tarfile.open(fileobj=io.BytesIO(gzip.decompress(raw)), mode="r:") as tar:
            # a bcrypt hash carries a random salt (Prometheus's web.yml): compared as "a bcrypt hash"
            return {m.name: [oct(m.mode), hashlib.sha256(_BCRYPT.sub(b"<bcrypt>", tar.extractfile(m).read())).hexdigest()]
                    for m in tar if m.isfile()}
    except (ValueError, OSError, tarfile.TarError):
        return {"sha256": hashlib.sha256(stdin.encode()).hexdigest()}


NODE_PROGRAMS = Path(__file__).resolve().parents[1] / "orchestrator" / "oncluster"


RENDERED = ("job.sbatch",)   # made from a template at submit: its lines have unit tests of their own


def expected_bundle(recorded: dict | None, sent: dict | None = None) -> dict | None:
    """What the tool must ship now for a recorded bundle: the same members and modes, each node program
    (a file of orchestrator/oncluster/) as the code ships it today. The replays test shipping, not the
    programs' bytes: a comment edited in a node program or the job template fails no replay, while a
    dropped member, a changed mode or a stale copy of a program still does (the programs' behaviour and
    the script's lines have unit tests of their own)."""
    import hashlib
    if not recorded or "sha256" in recorded:
        return recorded
    out = dict(recorded)
    for name in RENDERED:
        if name in out and sent and name in sent and "sha256" not in sent:
            out[name] = [out[name][0], sent[name][1]]
    for name, (mode, _) in recorded.items():
        current = NODE_PROGRAMS / name
        if "/" not in name and name.endswith(".py") and current.is_file():
            out[name] = [mode, hashlib.sha256(current.read_bytes()).hexdigest()]
    return out


def normalise(command: str) -> str:
    """What must match between recording and replay: all of the command but its random output markers."""
    return _MARKER.sub("@@<marker>", command)


class RecordingTransport:
    """Wraps a real transport; every call and every drawn token goes into the cassette."""

    def __init__(self, inner):
        self.inner = inner
        self.stats = inner.stats
        self.description = inner.description
        self.calls: list[dict] = []
        self.tokens: list[str] = []
        self.times: list[float] = []
        self._token_hex = secrets.token_hex
        self._now = waiting.now

    @contextlib.contextmanager
    def drawing_tokens(self):
        def token_hex(n=None):
            t = self._token_hex(n)
            self.tokens.append(t)
            return t
        def now():
            t = self._now()
            self.times.append(t)
            return t
        secrets.token_hex = token_hex
        waiting.now = now
        try:
            yield self
        finally:
            secrets.token_hex = self._token_hex
            waiting.now = self._now

    def run(self, command, *, timeout=120, check=False, stdin=None, idempotent=True):
        try:
            r = self.inner.run(command, timeout=timeout, check=False, stdin=stdin, idempotent=idempotent)
        except TransportError as exc:
            self.calls.append({"op": "run", "command": command, "error": type(exc).__name__, "message": str(exc)})
            raise
        self.calls.append({"op": "run", "command": command, "exit_code": r.exit_code, "stdout": r.stdout,
                           "stderr": r.stderr, **({"stdin": shipped(stdin)} if stdin is not None else {})})
        return r.check() if check else r

    def stream(self, command, *, timeout=None):
        call = {"op": "stream", "command": command, "lines": []}
        self.calls.append(call)   # in the order it began: commands may run while it is open
        try:
            for line in self.inner.stream(command, timeout=timeout):
                call["lines"].append(line)
                yield line
        except TransportError as exc:
            call.update(error=type(exc).__name__, message=str(exc))
            raise

    def get(self, remote_path, local_path):
        try:
            self.inner.get(remote_path, local_path)
        except (OSError, TransportError) as exc:
            self.calls.append({"op": "get", "remote": remote_path, "error": type(exc).__name__, "message": str(exc)})
            raise
        self.calls.append({"op": "get", "remote": remote_path,
                           "content": base64.b64encode(Path(local_path).read_bytes()).decode()})

    def put(self, local_path, remote_path):
        self.inner.put(local_path, remote_path)
        self.calls.append({"op": "put", "remote": remote_path,
                           "content": base64.b64encode(Path(local_path).read_bytes()).decode()})

    def forward(self, *a, **k):
        raise NotImplementedError("port forwards are not recorded")

    def close(self):
        self.inner.close()

    def save(self, name: str, meta: dict) -> Path:
        CASSETTES.mkdir(parents=True, exist_ok=True)
        path = CASSETTES / f"{name}.json"
        path.write_text(json.dumps({"meta": meta, "tokens": self.tokens, "times": self.times, "calls": self.calls},
                                  indent=1))
        return path


class ReplayMismatch(AssertionError):
    pass


class ReplayTransport:
    """Answers each call with the next recorded one; a different command is a test failure."""

    description = "replay"

    def __init__(self, name: str):
        doc = json.loads((CASSETTES / f"{name}.json").read_text())
        self.meta = doc["meta"]
        self.calls = list(doc["calls"])
        self.tokens = list(doc["tokens"])
        self.times = list(doc.get("times", []))
        self.position = 0
        self.stats = TransportStats()

    def _next(self, op: str, what: str) -> dict:
        if self.position >= len(self.calls):
            raise ReplayMismatch(f"call {self.position + 1} ({op} {what[:200]!r}) beyond the recording's "
                                 f"{len(self.calls)} calls")
        call = self.calls[self.position]
        self.position += 1
        if call["op"] != op:
            raise ReplayMismatch(f"call {self.position}: expected {call['op']}, the tool did {op} {what[:200]!r}")
        return call

    def _command(self, op: str, command: str) -> dict:
        """The next recorded call, which must be this ``op`` of this command (but for its markers)."""
        self.stats.count(command)
        call = self._next(op, command)
        if normalise(call["command"]) != normalise(command):
            raise ReplayMismatch(f"call {self.position}: command differs from the recording\n"
                                 f"recorded: {normalise(call['command'])[:4000]}\n"
                                 f"sent:     {normalise(command)[:4000]}")
        return call

    @staticmethod
    def _raise_recorded(call: dict) -> None:
        if "error" in call:
            raise (CommandTimeout if call["error"] == "CommandTimeout" else TransportError)(call["message"])

    def run(self, command, *, timeout=120, check=False, stdin=None, idempotent=True):
        call = self._command("run", command)
        expected = expected_bundle(call.get("stdin"), shipped(stdin))
        if expected != shipped(stdin) and "error" not in call:
            raise ReplayMismatch(f"call {self.position}: its stdin differs from the recording\n"
                                 f"expected: {json.dumps(expected)[:4000]}\n"
                                 f"sent:     {json.dumps(shipped(stdin))[:1500]}")
        self._raise_recorded(call)
        r = CommandResult(command, call["exit_code"], call["stdout"], call["stderr"])
        return r.check() if check else r

    def stream(self, command, *, timeout=None):
        call = self._command("stream", command)
        yield from call["lines"]
        self._raise_recorded(call)

    def get(self, remote_path, local_path):
        self.stats.transfers += 1
        call = self._next("get", remote_path)
        if normalise(call["remote"]) != normalise(remote_path):
            raise ReplayMismatch(f"call {self.position}: fetched {remote_path}, recorded {call['remote']}")
        if "error" in call:
            raise OSError(call["message"])
        Path(local_path).write_bytes(base64.b64decode(call["content"]))

    def put(self, local_path, remote_path):
        self.stats.transfers += 1
        call = self._next("put", remote_path)
        if normalise(call["remote"]) != normalise(remote_path) or \
                call.get("content") != base64.b64encode(Path(local_path).read_bytes()).decode():
            raise ReplayMismatch(f"call {self.position}: uploaded {local_path} to {remote_path}, which differs from "
                                 f"the recording (to {call['remote']})")

    def forward(self, *a, **k):
        raise NotImplementedError

    def close(self):
        pass

    @property
    def finished(self) -> bool:
        return self.position == len(self.calls)

    @contextlib.contextmanager
    def replaying(self, monkeypatch):
        """Draw the recorded tokens; never sleep (the recorded answers already say when things were done)."""
        tokens = iter(self.tokens)

        def token_hex(n=None):
            try:
                return next(tokens)
            except StopIteration:
                raise ReplayMismatch("the tool drew more random tokens than when recorded") from None
        monkeypatch.setattr(secrets, "token_hex", token_hex)
        times = iter(self.times)

        def wall_clock():
            try:
                return next(times)
            except StopIteration:
                raise ReplayMismatch("the tool read the wall clock more often than when recorded") from None
        monkeypatch.setattr(waiting, "now", wall_clock)
        # a clock that moves only when the tool sleeps: waits end on what the recorded answers say
        now = [0.0]
        monkeypatch.setattr(waiting, "clock", lambda: now[0])
        monkeypatch.setattr(waiting, "sleep", lambda s: now.__setitem__(0, now[0] + s))
        yield self
