"""known_hosts as OpenSSH reads it, for paramiko (pure apart from reading the file).

paramiko's own loader stops at marker lines, and keeps one key per type and
host name. Here every key of every line is kept (a host may list several of
one type), ``@revoked`` keys are collected and refused even when another
line lists them, before anything is sent to the host, and
``@cert-authority`` lines are set aside: this tool verifies plain host keys,
so a host known only through a CA gets an error that says so and how to add
its key.
"""

from __future__ import annotations

import base64
import re
import hashlib
import hmac
from dataclasses import dataclass, field


@dataclass
class KnownHosts:
    plain_lines: list[str] = field(default_factory=list)        # what paramiko may load
    revoked: set[tuple[str, str]] = field(default_factory=set)   # (key type, base64 key)
    ca_patterns: list[str] = field(default_factory=list)         # host patterns of @cert-authority lines

    def is_revoked(self, key_type: str, key_b64: str) -> bool:
        return (key_type, key_b64) in self.revoked

    def keys_for(self, host: str) -> list[tuple[str, str]]:
        """(key type, base64 key) of every plain line whose host patterns match ``host`` (``name`` or
        ``[name]:port``), revoked ones left out."""
        out = []
        for line in self.plain_lines:
            parts = line.split()
            if len(parts) >= 3 and host_matches(host, parts[0]) and not self.is_revoked(parts[1], parts[2]):
                out.append((parts[1], parts[2]))
        return out

    def has_ca_for(self, host: str) -> bool:
        return any(host_matches(host, p) for p in self.ca_patterns)


def host_matches(host: str, patterns: str) -> bool:
    """OpenSSH host pattern lists: ``a,*.b,!c.b``, ``[h]:2222``, and hashed ``|1|salt|hash`` names."""
    ok = False
    for pat in patterns.split(","):
        neg = pat.startswith("!")
        pat = pat[1:] if neg else pat
        if pat.startswith("|1|"):
            try:
                _, _, salt, digest = pat.split("|")
                mac = hmac.new(base64.b64decode(salt), host.encode(), hashlib.sha1).digest()
                hit = base64.b64encode(mac).decode() == digest
            except ValueError:
                hit = False
        else:
            # OpenSSH's wildcards are * and ? only: `[10.0.0.2]:2222` is a literal name, not a character class
            hit = re.fullmatch(".*".join(".".join(re.escape(p) for p in part.split("?"))
                                         for part in pat.split("*")), host) is not None
        if hit and neg:
            return False
        ok = ok or hit
    return ok


def parse_known_hosts(text: str) -> KnownHosts:
    out = KnownHosts()
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("@"):
            parts = line.split()
            if parts[0] == "@revoked" and len(parts) >= 4:
                out.revoked.add((parts[2], parts[3]))
            elif parts[0] == "@cert-authority" and len(parts) >= 2:
                out.ca_patterns.append(parts[1])
            continue  # unknown markers are ignored, as OpenSSH does
        out.plain_lines.append(line)
    return out
