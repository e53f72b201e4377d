"""Jinja2 rendering of everything under templates/ (sbatch scripts, configs).

StrictUndefined: a template that names a variable nobody passed fails loudly
instead of rendering an empty string into a job script.
"""

from __future__ import annotations

import shlex
from functools import lru_cache

import jinja2

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


def render_string(text: str, **context) -> str:
    """Render a user-supplied snippet (recipe command/environment) strictly."""
    return environment().from_string(text).render(**context)


@lru_cache(maxsize=1)
def html_environment() -> jinja2.Environment:
    """Reports: every value is escaped unless it is our own markup (charts, marked ``Markup``)."""
    return jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES)), undefined=jinja2.StrictUndefined,
                              autoescape=True, trim_blocks=True, lstrip_blocks=True)


def render_html(template: str, **context) -> str:
    return html_environment().get_template(template).render(**context)
