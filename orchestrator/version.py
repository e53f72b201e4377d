"""The package version (and commit, in a checkout), in a module of its own: anything may import it."""

__version__ = "0.2.0"


def git_commit() -> str | None:
    """The commit of the tool that ran (a source checkout), with -dirty for local changes; None if installed."""
    import subprocess
    from pathlib import Path
    PROJECT_ROOT = Path(__file__).resolve().parents[1]
    if not (PROJECT_ROOT / ".git").exists():
        return None
    try:
        out = subprocess.run(["git", "-C", str(PROJECT_ROOT), "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=5)
        dirty = subprocess.run(["git", "-C", str(PROJECT_ROOT), "status", "--porcelain"], capture_output=True,
                               text=True, timeout=5).stdout.strip()
        return out.stdout.strip() + ("-dirty" if dirty else "") if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None
