"""The secret that locks a service: made on the laptop at submit, shipped in the job bundle (mode 600,
in a 700 job dir), and shown by the tool's curl on the login node through a config file (``curl -K``),
so it is never in a process's argv, a log or local state (pure, but for the random bytes).

Every cluster user can reach every compute node's ports; the secret is what keeps them out.
"""

from __future__ import annotations

import secrets

from orchestrator.cluster import jobdir
from orchestrator.services.recipes import BASIC_USER


def new_secret() -> str:
    # hex: safe unquoted in a URL (PostgreSQL's DSN), a curl config, a header and a YAML file
    return secrets.token_hex(24)


def curl_config(auth: str, secret: str) -> str:
    """What curl on the login node reads with ``-K``: the header or user the service wants (empty: nothing)."""
    if auth == "bearer":
        return f'header = "Authorization: Bearer {secret}"\n'
    if auth == "basic":
        return f'user = "{BASIC_USER}:{secret}"\n'
    return ""


def web_config(secret: str) -> str:
    """Prometheus's ``--web.config.file``: one basic-auth user whose password is the secret (bcrypt, as
    the exporter toolkit requires; every endpoint, /-/reload and /-/quit included, asks for it)."""
    import bcrypt  # (paramiko's own dependency; loaded only when a Prometheus job is submitted)
    hashed = bcrypt.hashpw(secret.encode(), bcrypt.gensalt(rounds=10)).decode()
    return f"basic_auth_users:\n  {BASIC_USER}: '{hashed}'\n"


def job_files(auth: str, secret: str) -> dict[str, str]:
    """The job dir's files that carry the secret (all shipped mode 600)."""
    files = {jobdir.SECRET: secret, jobdir.CURL_CONFIG: curl_config(auth, secret)}
    if auth == "basic":
        files[jobdir.WEB_CONFIG] = web_config(secret)
    return files
