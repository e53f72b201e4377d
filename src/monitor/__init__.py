"""Seed 000's import path, kept so its quick start runs as written from a checkout:
``from src.monitor import MonitorManager`` is ``from orchestrator import MonitorManager``."""

from orchestrator.api.monitor_manager import MonitorInstance, MonitorManager

__all__ = ["MonitorInstance", "MonitorManager"]
