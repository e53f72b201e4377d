"""The laptop's own HTTP servers (the live dashboard, the watcher's status): loopback only, and only
for requests that name loopback in their Host header.

Binding to 127.0.0.1 keeps other machines out, but not a web page in the user's browser: with DNS
rebinding, ``http://evil.example:8765/`` resolves to 127.0.0.1 and the page reads the answers (and
each request costs a remote query). Such a request carries ``Host: evil.example:8765``: refused.
"""

from __future__ import annotations

LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")


def host_allowed(host_header: str | None, port: int) -> bool:
    """True for ``127.0.0.1:PORT``, ``localhost:PORT`` or ``[::1]:PORT`` (or those names alone)."""
    if not host_header:
        return False  # HTTP/1.1 requires it; a request without one is not a browser's
    host = host_header.strip().lower()
    return any(host in (name, f"{name}:{port}") for name in LOOPBACK_NAMES)
