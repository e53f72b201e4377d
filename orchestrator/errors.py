"""Exception types shared across the package.

Every error a user can cause carries a message that says where (file, field,
job) and what was expected, so the CLI prints it as one line and exits 1.
"""


class OrchestratorError(Exception):
    """Base for every error the CLI reports as a one-line message."""


class ConfigError(OrchestratorError):
    """config.yaml is missing, malformed, or has a wrong key or type."""


class RecipeError(OrchestratorError):
    """A recipe file failed validation."""


class TransportError(OrchestratorError):
    """The connection to the cluster could not be opened or was lost."""


class HostKeyError(TransportError):
    """The login node's host key is unknown or changed: refused on purpose."""


class RemoteCommandError(OrchestratorError):
    """A remote command exited non-zero (or timed out) where success was required."""

    def __init__(self, result, message: str | None = None):
        self.result = result
        detail = (result.stderr.strip() or result.stdout.strip()).splitlines()
        tail = detail[-1] if detail else "(no output)"
        super().__init__(message or f"remote command failed (exit {result.exit_code}): {tail}")


class CommandTimeout(TransportError):
    """A remote command did not finish within its timeout."""


class OutcomeUnknown(TransportError):
    """The connection dropped while a command that is not safe to repeat was running: it may have run."""


class SlurmError(OrchestratorError):
    """SLURM refused a request (sbatch rejection, unknown job, ...)."""


class StateError(OrchestratorError):
    """The local state file is corrupt or cannot be written."""


class Terminated(BaseException):
    """SIGTERM or SIGHUP arrived: unwinds like Ctrl-C (not an error of the tool), so that every
    ``finally`` runs and cancels what was started; the CLI exits 128 + the signal number."""

    def __init__(self, signum: int):
        import signal
        self.signum = signum
        super().__init__(f"terminated by {signal.Signals(signum).name}")

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


class ServiceNotReady(OrchestratorError):
    """A service that ended, or did not answer its health check in time, before it was ready."""
