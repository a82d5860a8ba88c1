"""Narration: the incident as a readable text report (a template in templates/), or JSON."""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TextIO

from engine.model import Incident
from engine.paths import templates_dir
from engine.rules.templating import environment
from engine.serialize import incident_to_dict

REPORT_TEMPLATE = "incident.txt.j2"
_SEVERITY_COLOURS = {"critical": "1;31", "high": "31", "medium": "33", "low": "36", "info": "37"}


class Colour:
    """ANSI colours when writing to a terminal; plain text otherwise."""

    def __init__(self, enabled: bool):
        self.enabled = enabled

    def _wrap(self, code: str, text: Any) -> str:
        return f"\x1b[{code}m{text}\x1b[0m" if self.enabled else str(text)

    def bold(self, text: Any) -> str:
        return self._wrap("1", text)

    def severity(self, word: str, text: Any) -> str:
        return self._wrap(_SEVERITY_COLOURS.get(word, "0"), text)


_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def printable(value: Any) -> Any:
    """Data with terminal control characters shown as escapes (`\\x1b`), so a label
    cannot move the cursor, recolour or clear the on-call engineer's terminal."""
    if isinstance(value, str):
        return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", value)
    if isinstance(value, Mapping):
        return {k: printable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [printable(v) for v in value]
    return value


def render_text(
    incident: Incident | Mapping[str, Any],
    event: str,
    *,
    colour: bool = False,
    template_dirs: tuple[Path, ...] = (),
    link: str = "",
) -> str:
    """The text report (templates/incident.txt.j2); `link`: the incident's page."""
    data = incident_to_dict(incident) if isinstance(incident, Incident) else incident
    data = printable(data)
    env = environment((*template_dirs, templates_dir()))
    template = env.get_template(REPORT_TEMPLATE)
    text = template.render(incident=data, event=event, link=printable(link), c=Colour(colour))
    return text.rstrip() + "\n"


def render_json(incident: Incident, event: str) -> str:
    return json.dumps({"event": event, "incident": incident_to_dict(incident)}, sort_keys=True)


class StdoutReporter:
    """Prints each new or changed incident: text (coloured on a terminal only) or JSON lines."""

    def __init__(self, fmt: str = "text", stream: TextIO | None = None):
        self.fmt = fmt
        self.stream = stream or sys.stdout
        self.colour = fmt == "text" and hasattr(self.stream, "isatty") and self.stream.isatty()

    def report(self, incident: Incident, event: str) -> None:
        if self.fmt == "json":
            text = render_json(incident, event) + "\n"
        else:
            text = render_text(incident, event, colour=self.colour) + "\n"
        self.stream.write(text)
        self.stream.flush()
