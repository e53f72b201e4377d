"""Files shipped inside the package (templates, recipes, workloads, exporters).

Read through ``importlib.resources`` so an installed wheel finds them as a
source checkout does; the checkout's top-level ``recipes/`` and ``templates/``
are links into the package.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path


def packaged(*parts: str) -> Path:
    """A path inside the installed package (it is a real directory: no zip imports)."""
    return Path(str(files("orchestrator").joinpath(*parts)))


def packaged_text(*parts: str) -> str:
    return files("orchestrator").joinpath(*parts).read_text()


TEMPLATES = packaged("templates")
RECIPES = packaged("recipes")
