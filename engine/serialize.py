"""Domain objects as JSON answers (the API, `--format json`, replay --json)."""

from __future__ import annotations

from typing import Any

from engine.model import Alert, ContextRecord, Incident
from engine.timeutil import format_ts


def alert_to_dict(alert: Alert) -> dict[str, Any]:
    return alert.as_scope()


def incident_to_dict(inc: Incident) -> dict[str, Any]:
    return {
        "id": inc.id,
        "path": inc.path,
        "status": inc.status,
        "title": inc.title,
        "severity": inc.severity.word,
        "service": inc.service,
        "alertname": inc.alertname,
        "team": inc.team,
        "fingerprint": inc.fingerprint,
        "opened_at": format_ts(inc.opened_at),
        "last_seen": format_ts(inc.last_seen),
        "resolved_at": format_ts(inc.resolved_at) if inc.resolved_at else None,
        "repeat_count": inc.repeat_count,
        "attached_count": inc.attached_count,
        "resolution": inc.resolution,
        "symptoms": list(inc.symptoms),
        "alert": alert_to_dict(inc.alert),
        "findings": [f.to_dict() for f in inc.findings],
        "narration": inc.narration,
    }


def incident_summary(inc: Incident) -> dict[str, Any]:
    """The list view: everything but the findings' bodies."""
    out = incident_to_dict(inc)
    out["findings"] = [
        {"rule": f.rule_id, "severity": f.severity.word, "summary": f.summary} for f in inc.findings
    ]
    del out["alert"], out["narration"]
    return out


def context_to_dict(rec: ContextRecord) -> dict[str, Any]:
    return {
        "id": rec.id,
        "kind": rec.kind,
        "path": rec.path,
        "service": rec.service,
        "ts": format_ts(rec.ts),
        **rec.fields,
    }
