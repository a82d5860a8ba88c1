"""The stdout report: readable, coloured only when asked, and safe to print."""

from __future__ import annotations

import json
from datetime import timedelta

from engine.alerts import parse_alert
from engine.model import Incident
from engine.narrate import render_json, render_text
from engine.pipeline import build_draft
from engine.store import open_store
from engine.testing import make_alert
from engine.timeutil import utcnow


def incident_with(**labels: str) -> Incident:
    alert = parse_alert(make_alert(**labels), "alert", utcnow())
    store = open_store(":memory:")
    try:
        outcome = store.record_firing(
            build_draft(alert, []), now=utcnow(), renotify_after=timedelta(hours=4)
        )
    finally:
        store.close()
    assert outcome.incident is not None
    return outcome.incident


def test_a_label_cannot_drive_the_terminal() -> None:
    incident = incident_with(service="api\x1b[2J\x1b[31mgateway", team="edge\x07")
    text = render_text(incident, "opened", colour=True)
    assert "\x1b[2J" not in text and "\x07" not in text
    assert "api\\x1b[2J\\x1b[31mgateway" in text
    assert "\x1b[1m" in text  # our own colours stay


def test_plain_text_off_a_terminal_and_json_lines() -> None:
    incident = incident_with(service="api-gateway", alertname="HighErrorRate")
    text = render_text(incident, "opened")
    assert "\x1b" not in text
    assert "api-gateway" in text and incident.id in text
    line = render_json(incident, "opened")
    assert "\n" not in line
    assert json.loads(line)["incident"]["id"] == incident.id
