"""Deploy AI services on SLURM, monitor them with Prometheus, benchmark them: over SSH.

The tree is the architecture: ``cluster/`` is the only code that talks to the
cluster (transport, SLURM, job directories and remote scripts); ``services/``,
``monitoring/`` and ``bench/`` build on it; ``reports/`` turns gathered data
into files without touching the cluster; ``watch/`` follows jobs; ``cli/``
parses arguments and prints. ``api.BenchmarkOrchestrator`` wires them.
"""

from orchestrator.version import __version__

__all__ = ["BenchmarkOrchestrator", "MonitorManager", "__version__"]


def __getattr__(name: str):
    # `from orchestrator import BenchmarkOrchestrator` works as ever, but importing any one module of
    # the package (the CLI's fast commands, a job-side script) no longer loads the API and its config
    if name == "BenchmarkOrchestrator":
        from orchestrator.api import BenchmarkOrchestrator
        return BenchmarkOrchestrator
    if name == "MonitorManager":   # seed 000's form of the monitor module
        from orchestrator.api.monitor_manager import MonitorManager
        return MonitorManager
    raise AttributeError(f"module 'orchestrator' has no attribute {name!r}")
