"""Builders for alerts, drafts and findings used by the store tests."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

from engine.model import Alert, Confidence, Evidence, Finding, Severity
from engine.store.base import IncidentDraft

T0 = datetime(2026, 1, 31, 12, 0, 0, 123000, tzinfo=UTC)
MIN = timedelta(minutes=1)
RENOTIFY = timedelta(minutes=30)
_ids = itertools.count(1)


def make_alert(
    fingerprint: str = "fp-a",
    *,
    starts_at: datetime = T0,
    status: str = "firing",
    ends_at: datetime | None = None,
    service: str = "checkout-api",
    **labels: str,
) -> Alert:
    return Alert(
        fingerprint=fingerprint,
        status=status,
        labels={"alertname": "HighErrorRate", "service": service, **labels},
        annotations={"summary": "5xx above 5%"},
        starts_at=starts_at,
        ends_at=ends_at,
        generator_url="http://prometheus:9090/graph?g0.expr=x&g0.tab=1",
    )


def make_finding(rule: str = "deploy-regression") -> Finding:
    return Finding(
        rule_id=rule,
        severity=Severity.HIGH,
        confidence=Confidence.MEDIUM,
        summary="deploy abc123 went out 3m before the alert",
        suggestion="roll back abc123",
        evidence=(Evidence("context/deploys/1", {"commit": "abc123", "author": "ana"}),),
        outputs={"commit": "abc123", "minutes": 3},
    )


def make_draft(
    alert: Alert | None = None,
    *,
    id: str | None = None,
    duplicate_of: str | None = None,
    team: str | None = "payments",
    severity: Severity = Severity.CRITICAL,
    narration: dict[str, Any] | None = None,
) -> IncidentDraft:
    alert = alert or make_alert()
    return IncidentDraft(
        id=id or f"inc-{next(_ids):04d}",
        alert=alert,
        title=f"{alert.alertname} on {alert.service}",
        team=team,
        severity=severity,
        findings=(make_finding(),),
        duplicate_of=duplicate_of,
        narration=narration,
    )
