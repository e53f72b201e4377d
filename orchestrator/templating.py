"""Jinja2 rendering of everything under templates/ (sbatch scripts, configs).

StrictUndefined: a template that names a variable nobody passed fails loudly
instead of rendering an empty string into a job script.
"""

from __future__ import annotations

import shlex
from functools import lru_cache

import jinja2
import jinja2.sandbox

from orchestrator.resources import TEMPLATES


@lru_cache(maxsize=4)
def environment(directory: str = str(TEMPLATES)) -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(directory),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,
    )
    env.filters["q"] = lambda v: shlex.quote(str(v))
    return env


def render(template: str, directory: str | None = None, **context) -> str:
    return environment(directory or str(TEMPLATES)).get_template(template).render(**context)


@lru_cache(maxsize=1)
def recipe_environment() -> jinja2.sandbox.ImmutableSandboxedEnvironment:
    """For text from recipes: sandboxed (no attribute walk to Python internals, no globals such
    as ``lipsum``/``cycler``), strict, and holding only the variables the tool documents."""
    env = jinja2.sandbox.ImmutableSandboxedEnvironment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True,
                                                       autoescape=False)
    env.globals.clear()
    return env


def render_string(text: str, **context) -> str:
    """Render a user-supplied snippet (recipe command/environment): nothing in it runs on this machine."""
    return recipe_environment().from_string(text).render(**context)


def literal(text: str) -> str:
    """Text to put into a recipe snippet so that it renders as itself (data, never template code)."""
    return "".join("{{ '{' }}" if c == "{" else c for c in text)


@lru_cache(maxsize=1)
def html_environment() -> jinja2.Environment:
    """Reports: every value is escaped unless it is our own markup (charts, marked ``Markup``)."""
    return jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES)), undefined=jinja2.StrictUndefined,
                              autoescape=True, trim_blocks=True, lstrip_blocks=True)


def render_html(template: str, **context) -> str:
    return html_environment().get_template(template).render(**context)
