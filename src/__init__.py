"""Seed 000's import path (``src.monitor``); the tool itself is the ``orchestrator`` package."""
