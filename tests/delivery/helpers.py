"""Incidents and deliveries built by hand, for sink payload tests."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from engine.delivery.routing import incident_link
from engine.delivery.secrets import Redactor, Secret
from engine.delivery.sinks.base import SendContext
from engine.model import Alert, Confidence, Evidence, Finding, Incident, Severity
from engine.serialize import incident_to_dict
from engine.store.base import Delivery

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
PUBLIC_URL = "http://incidents.example"


def make_incident(
    *,
    id: str = "inc-0123456789ab",
    team: str | None = "payments",
    severity: Severity = Severity.CRITICAL,
    status: str = "open",
) -> Incident:
    alert = Alert(
        "fp1",
        "firing",
        {"alertname": "HighErrorRate", "service": "checkout-api"},
        {"summary": "5xx above 5% on checkout-api"},
        T0,
    )
    findings = (
        Finding(
            "logs.error_spike",
            Severity.HIGH,
            Confidence.HIGH,
            'Errors match "timeout after <num>ms to db & cache"',
            "Check the <db> pool & restart if > 90% busy",
            (Evidence("context/logs/17", {}), Evidence("context/logs/18", {})),
        ),
        Finding(
            "deploy.recent_correlated",
            Severity.MEDIUM,
            Confidence.MEDIUM,
            "checkout-api v2.3.1 was deployed 4m before the alert",
            "Roll back v2.3.1",
            (Evidence("context/deploys/3", {}),),
        ),
    )
    return Incident(
        id=id,
        fingerprint="fp1",
        status=status,
        title="5xx above 5% on checkout-api",
        service="checkout-api",
        alertname="HighErrorRate",
        team=team,
        severity=severity,
        opened_at=T0,
        last_seen=T0,
        alert=alert,
        findings=findings,
        resolved_at=T0 if status == "resolved" else None,
        resolution={"auto": True, "note": "resolved by Alertmanager"}
        if status == "resolved"
        else None,
    )


def make_delivery(
    incident: Incident,
    sink: str,
    event: str = "trigger",
    *,
    id: int = 7,
    attempts: int = 1,
    options: dict[str, Any] | None = None,
) -> Delivery:
    payload = {
        "incident": incident_to_dict(incident),
        "link": incident_link(PUBLIC_URL, incident.id),
        "event": event,
        "options": options or {},
    }
    return Delivery(id, incident.id, sink, event, payload, attempts, "sending", T0, None, T0)


def context(**secrets: str) -> SendContext:
    values = {ref: Secret(v, ref) for ref, v in secrets.items()}
    return SendContext(values, Redactor(values.values()))
