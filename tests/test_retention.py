"""Retention under `serve`: one pass of the pruner (engine.server.run.prune_once) keeps
context for --retention and resolved incidents for --incident-retention."""

from __future__ import annotations

from datetime import timedelta

from engine.server.run import prune_once
from engine.testing import wait_for_deliveries


def alert(name: str) -> dict:
    return {
        "labels": {"alertname": name, "service": "checkout-api", "severity": "page"},
        "annotations": {"summary": f"{name} on checkout-api"},
        "startsAt": "2026-01-31T12:00:00Z",
    }


def incident_of(client, name: str) -> str:
    listed = client.get("/api/incidents", params={"limit": 50}).json()
    items = listed["incidents"] if isinstance(listed, dict) else listed
    return next(i["id"] for i in items if i["title"].startswith(name) or name in i["title"])


def test_a_pass_prunes_resolved_incidents_past_incident_retention_and_keeps_open_ones(
    make_app,
) -> None:
    state, client = make_app(incident_retention=timedelta(0))
    assert client.post("/alerts", json=[alert("DiskFull"), alert("HighLatency")]).status_code == 200
    resolved, still_open = incident_of(client, "DiskFull"), incident_of(client, "HighLatency")
    assert (
        client.post(f"/api/incidents/{resolved}/resolve", json={"note": "freed"}).status_code == 200
    )
    wait_for_deliveries(state)  # a resolved incident with a delivery in flight is kept

    prune_once(state)

    assert client.get(f"/api/incidents/{resolved}").status_code == 404
    assert client.get(f"/api/incidents/{still_open}").status_code == 200


def test_the_default_keeps_resolved_incidents_for_90_days(make_app) -> None:
    state, client = make_app()
    assert state.settings.incident_retention == timedelta(days=90)
    client.post("/alerts", json=[alert("DiskFull")])
    inc = incident_of(client, "DiskFull")
    client.post(f"/api/incidents/{inc}/resolve", json={"note": "freed"})
    wait_for_deliveries(state)
    prune_once(state)
    assert client.get(f"/api/incidents/{inc}").status_code == 200
