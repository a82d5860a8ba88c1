"""The Jinja2 environment rule templates run in: sandboxed, strict about undefined names.

Alert labels, log lines and every other piece of data reach a template only as values:
nothing renders data as a template, so a label `{{ 7*7 }}` prints as `{{ 7*7 }}`.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

from jinja2 import FileSystemLoader, StrictUndefined, Template, pass_context
from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment

from engine.links import incident_url
from engine.timeutil import format_duration


def _percent(value: Any, digits: int = 0) -> str:
    try:
        return f"{float(value) * 100:.{digits}f}%"
    except (TypeError, ValueError):
        return str(value)


def _duration(seconds: Any) -> str:
    try:
        return format_duration(float(seconds))
    except (TypeError, ValueError):
        return str(seconds)


def _relative(seconds: Any) -> str:
    """An age in seconds as `3m before` / `30s after` (the alert's start)."""
    try:
        s = float(seconds)
    except (TypeError, ValueError):
        return str(seconds)
    if abs(s) < 1:
        return "at the same moment as"
    return f"{format_duration(abs(s))} {'before' if s >= 0 else 'after'}"


def _shortsha(value: Any, length: int = 7) -> str:
    return str(value)[:length]


def _ms(value: Any) -> str:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return str(value)
    return f"{v / 1000:.2f} s" if v >= 10_000 else f"{v:.0f} ms"


@pass_context
def _incident_url(context: Context, incident_id: Any) -> str:
    """`{{ first.id | incident_url }}`: that incident's page under the public URL (the
    scope's `public_url`; without one, the page's path)."""
    base = context.get("public_url")
    return incident_url(base if isinstance(base, str) else "", str(incident_id))


FILTERS = {
    "percent": _percent,
    "duration": _duration,
    "relative": _relative,
    "shortsha": _shortsha,
    "ms": _ms,
    "incident_url": _incident_url,
}


@lru_cache(maxsize=32)
def _environment(dirs: tuple[str, ...]) -> ImmutableSandboxedEnvironment:
    env = ImmutableSandboxedEnvironment(
        undefined=StrictUndefined,
        autoescape=False,
        loader=FileSystemLoader(list(dirs)),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(FILTERS)
    return env


def environment(template_dirs: Sequence[Path] = ()) -> ImmutableSandboxedEnvironment:
    return _environment(tuple(str(d) for d in template_dirs))


def flat_globals(template: Template) -> Template:
    """Jinja keeps a template's globals as a ChainMap over the environment's, and copies
    them (twice, through ChainMap's Python-level iteration) on every render: about a third
    of rendering these short templates. The environment's globals are never changed after
    it is built (engine.rules.templating), so a plain dict of the same names is the same."""
    template.globals = dict(template.globals)
    return template
