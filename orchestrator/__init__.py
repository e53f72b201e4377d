"""Deploy AI services on SLURM, monitor them with Prometheus, benchmark them: over SSH."""

__version__ = "0.1.0"

from .orchestrator import BenchmarkOrchestrator  # noqa: E402

__all__ = ["BenchmarkOrchestrator", "__version__"]
