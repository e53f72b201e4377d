"""Deploy AI services on SLURM, monitor them with Prometheus, benchmark them: over SSH.

The tree is the architecture: ``cluster/`` is the only code that talks to the
cluster (transport, SLURM, job directories and remote scripts); ``services/``,
``monitoring/`` and ``bench/`` build on it; ``reports/`` turns gathered data
into files without touching the cluster; ``watch/`` follows jobs; ``cli/``
parses arguments and prints. ``api.BenchmarkOrchestrator`` wires them.
"""

from orchestrator.api import BenchmarkOrchestrator
from orchestrator.version import __version__

__all__ = ["BenchmarkOrchestrator", "__version__"]
