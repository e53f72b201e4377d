"""Files shipped inside the package (templates, recipes, workloads, exporters).

Found beside this module, so an installed wheel finds them as a source checkout does; the
checkout's top-level ``recipes/`` and ``templates/`` are links into the package. The package is
always a real directory (it is never imported from a zip), which is what ``importlib.resources``
would find too; that module is not imported for it (3-4 ms of every command: zipfile, readers).
"""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).parent


def packaged(*parts: str) -> Path:
    """A path inside the installed package."""
    return _PACKAGE.joinpath(*parts)


def packaged_text(*parts: str) -> str:
    return packaged(*parts).read_text()


TEMPLATES = packaged("templates")
RECIPES = packaged("recipes")
