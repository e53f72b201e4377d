"""Building remote command lines: every argument is quoted, always.

The login node's shell parses what we send, so an argument is never pasted
into a command line raw: ``x'; touch /tmp/pwned; echo '`` must arrive as one
literal argument.
"""

from __future__ import annotations

import secrets
import shlex


def quote(arg: object) -> str:
    return shlex.quote(str(arg))


def command(*args: object) -> str:
    """One command line from argv: each element becomes one remote argument."""
    return " ".join(quote(a) for a in args)


def path(remote: str) -> str:
    """Quote a remote path but let a leading ``~`` or ``$HOME`` expand remotely.

    ``~/.orchestrator`` must mean the cluster user's home, which only the
    remote shell knows; the rest of the path stays quoted.
    """
    for prefix in ("~/", "$HOME/"):
        if remote.startswith(prefix):
            rest = remote[len(prefix):]
            return '"$HOME"/' + quote(rest) if rest else '"$HOME"'
    if remote in ("~", "$HOME"):
        return '"$HOME"'
    return quote(remote)


def heredoc(name: str, text: str) -> str:
    """Shell that writes ``text`` to file ``name`` verbatim (a quoted, random delimiter: no expansion,
    and no line of the text can end it early)."""
    delim = f"ORCH_EOF_{secrets.token_hex(8)}"
    body = text if text.endswith("\n") else text + "\n"
    return f"cat > {command(name)} <<'{delim}'\n{body}{delim}\n"
