"""Alerts and incidents on SQLite: functions over a connection already inside a transaction.

`SQLiteStore` owns the connections and transactions (see sqlite.py); these functions
only run SQL, so each public write is exactly one `BEGIN IMMEDIATE` there.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any

from engine.model import Alert, Incident, Severity
from engine.store import codec
from engine.store.base import AlertOutcome, IncidentDraft, OutcomeKind
from engine.store.codec import epoch, from_epoch

COLUMNS = (
    "id, fingerprint, status, title, service, alertname, team, severity, opened_at, last_seen, "
    "alert, findings, repeat_count, attached_count, resolved_at, resolution, narration, "
    "last_notified_at"
)
AUTO_NOTE = "resolved by Alertmanager"

# Decoding an incident's `findings` and `alert` JSON was ~85% of the cost of reading one
# (~90 of ~105 us), and incident.duplicate_open reads every open incident for every alert
# (docs/PERFORMANCE.md). Both columns are written once when the incident opens and never
# updated, so the decoded values are cached by their text (the key is the exact JSON, so a
# hit is always right). The objects are shared between the incidents returned: like the
# frozen dataclasses holding them, they are read-only by convention. Bounded: about the
# 500 open incidents the rule reads, with room to spare.
_DECODE_CACHE = 1024
_findings_from_json = lru_cache(maxsize=_DECODE_CACHE)(codec.findings_from_json)
_alert_from_json = lru_cache(maxsize=_DECODE_CACHE)(codec.alert_from_json)


def _incident(row: Sequence[Any]) -> Incident:
    (iid, fp, status, title, service, alertname, team, severity, opened, seen, alert) = row[:11]
    (findings, repeats, attached, resolved, resolution, narration, notified) = row[11:]
    return Incident(
        id=iid,
        fingerprint=fp,
        status=status,
        title=title,
        service=service,
        alertname=alertname,
        team=team,
        severity=Severity(severity),
        opened_at=from_epoch(opened),
        last_seen=from_epoch(seen),
        alert=_alert_from_json(alert),
        findings=_findings_from_json(findings),
        repeat_count=repeats,
        attached_count=attached,
        resolved_at=from_epoch(resolved),
        resolution=codec.loads(resolution),
        narration=codec.loads(narration),
        last_notified_at=from_epoch(notified),
    )


def get(conn: sqlite3.Connection, incident_id: str) -> Incident | None:
    row = conn.execute(f"SELECT {COLUMNS} FROM incidents WHERE id = ?", (incident_id,)).fetchone()
    return None if row is None else _incident(row)


def find_repeat(conn: sqlite3.Connection, fingerprint: str, starts_at: datetime) -> Incident | None:
    sql = (
        f"SELECT {COLUMNS} FROM incidents WHERE id = "
        "(SELECT incident_id FROM alerts WHERE fingerprint = ? AND starts_at = ?)"
    )
    row = conn.execute(sql, (fingerprint, epoch(starts_at))).fetchone()
    return None if row is None else _incident(row)


def select(
    conn: sqlite3.Connection, filters: dict[str, Any], since: datetime | None, limit: int
) -> list[Incident]:
    """Incidents matching the non-None `filters` (column -> value), newest first by
    opened_at; `since` is inclusive; limit -1 means all."""
    where = [f"{column} = ?" for column, value in filters.items() if value is not None]
    args: list[Any] = [value for value in filters.values() if value is not None]
    if since is not None:
        where.append("opened_at >= ?")
        args.append(epoch(since))
    sql = f"SELECT {COLUMNS} FROM incidents"
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY opened_at DESC, id DESC LIMIT ?"
    return [_incident(row) for row in conn.execute(sql, [*args, limit])]


def record_firing(
    conn: sqlite3.Connection, draft: IncidentDraft, now: datetime, renotify_after: timedelta
) -> AlertOutcome:
    alert, t_now = draft.alert, epoch(now)
    key = (alert.fingerprint, epoch(alert.starts_at))
    row = conn.execute(
        "SELECT incident_id FROM alerts WHERE fingerprint = ? AND starts_at = ?", key
    ).fetchone()
    if row is not None:
        conn.execute(
            "UPDATE incidents SET repeat_count = repeat_count + 1, last_seen = ? WHERE id = ?",
            (t_now, row[0]),
        )
        return AlertOutcome("repeat", get(conn, row[0]), notify=False)
    kind: OutcomeKind
    target = _attach_target(conn, draft)
    if target is not None:
        incident_id, notified = target
        notify = notified is None or from_epoch(notified) + renotify_after <= now
        conn.execute(
            "UPDATE incidents SET attached_count = attached_count + 1, last_seen = ?,"
            " last_notified_at = ? WHERE id = ?",
            (t_now, t_now if notify else notified, incident_id),
        )
        kind = "attached"
    else:
        kind = "opened"
        incident_id, notify = draft.id, True
        _insert(conn, draft, t_now)
    conn.execute(
        "INSERT INTO alerts (fingerprint, starts_at, incident_id, status, ends_at, received_at)"
        " VALUES (?, ?, ?, 'firing', NULL, ?)",
        (*key, incident_id, t_now),
    )
    return AlertOutcome(kind, get(conn, incident_id), notify=notify)


def _attach_target(conn: sqlite3.Connection, draft: IncidentDraft) -> tuple[str, Any] | None:
    """(incident id, last_notified_at) of the open incident this firing joins, if any."""
    if draft.duplicate_of is not None:
        row = conn.execute(
            "SELECT id, last_notified_at FROM incidents WHERE id = ? AND status = 'open'",
            (draft.duplicate_of,),
        ).fetchone()
        if row is not None:
            return row[0], row[1]
    row = conn.execute(
        "SELECT id, last_notified_at FROM incidents WHERE fingerprint = ? AND status = 'open'",
        (draft.alert.fingerprint,),
    ).fetchone()
    return None if row is None else (row[0], row[1])


def _insert(conn: sqlite3.Connection, draft: IncidentDraft, t_now: float) -> None:
    alert = draft.alert
    conn.execute(
        "INSERT INTO incidents (id, fingerprint, status, title, service, alertname, team,"
        " severity, opened_at, last_seen, last_notified_at, alert, findings, narration)"
        " VALUES (?, ?, 'open', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            draft.id,
            alert.fingerprint,
            draft.title,
            alert.service,
            alert.alertname,
            draft.team,
            int(draft.severity),
            t_now,
            t_now,
            t_now,
            codec.alert_to_json(alert),
            codec.findings_to_json(draft.findings),
            codec.dumps(draft.narration),
        ),
    )


def record_resolved(conn: sqlite3.Connection, alert: Alert, now: datetime) -> list[AlertOutcome]:
    """One outcome per incident touched, the newest alert's first (see
    SQLiteStore.record_resolved for the rules)."""
    end = codec.real_end(alert.ends_at) or now
    key = (alert.fingerprint, epoch(alert.starts_at))
    rows = conn.execute(
        "SELECT incident_id FROM alerts WHERE fingerprint = ? AND status = 'firing'"
        " AND starts_at <= ? ORDER BY starts_at DESC",
        key,
    ).fetchall()
    if not rows:
        # Resent resolution or unknown alert: report the incident it concerns, if any.
        row = conn.execute(
            "SELECT incident_id FROM alerts WHERE fingerprint = ?"
            " ORDER BY starts_at = ? DESC, starts_at DESC LIMIT 1",
            key,
        ).fetchone()
        return [AlertOutcome("ignored", None if row is None else get(conn, row[0]), notify=False)]
    conn.execute(
        "UPDATE alerts SET status = 'resolved', ends_at = ?"
        " WHERE fingerprint = ? AND status = 'firing' AND starts_at <= ?",
        (epoch(end), *key),
    )
    resolution = codec.dumps(codec.resolution(auto=True, note=AUTO_NOTE, at=end))
    outcomes = []
    for incident_id in dict.fromkeys(r[0] for r in rows):  # unique, newest first
        firing = conn.execute(
            "SELECT 1 FROM alerts WHERE incident_id = ? AND status = 'firing' LIMIT 1",
            (incident_id,),
        ).fetchone()
        done = (
            firing is None
            and conn.execute(
                "UPDATE incidents SET status = 'resolved', resolved_at = ?, resolution = ?"
                " WHERE id = ? AND status = 'open'",
                (epoch(end), resolution, incident_id),
            ).rowcount
        )
        resolved_kind: OutcomeKind = "resolved" if done else "ignored"
        outcomes.append(AlertOutcome(resolved_kind, get(conn, incident_id), notify=bool(done)))
    return outcomes


def resolve(
    conn: sqlite3.Connection, incident_id: str, at: datetime, note: str | None, auto: bool
) -> AlertOutcome:
    incident = get(conn, incident_id)
    if incident is None or incident.status != "open":
        return AlertOutcome("ignored", incident, notify=False)
    conn.execute(
        "UPDATE incidents SET status = 'resolved', resolved_at = ?, resolution = ? WHERE id = ?",
        (epoch(at), codec.dumps(codec.resolution(auto=auto, note=note, at=at)), incident_id),
    )
    conn.execute(
        "UPDATE alerts SET status = 'resolved', ends_at = ?"
        " WHERE incident_id = ? AND status = 'firing'",
        (epoch(at), incident_id),
    )
    return AlertOutcome("resolved", get(conn, incident_id), notify=True)


def set_narration(conn: sqlite3.Connection, incident_id: str, narration: dict[str, Any]) -> bool:
    sql = "UPDATE incidents SET narration = ? WHERE id = ?"
    return conn.execute(sql, (codec.dumps(narration), incident_id)).rowcount > 0


def counts(conn: sqlite3.Connection) -> dict[str, dict[str, int]]:
    """The `alerts` and `incidents` parts of stats()."""
    by_status = dict(conn.execute("SELECT status, COUNT(*) FROM alerts GROUP BY status"))
    firing, resolved = by_status.get("firing", 0), by_status.get("resolved", 0)
    incidents = {"open": 0, "resolved": 0, "total": 0, "repeats": 0, "attached": 0}
    for status, count, repeats, attached in conn.execute(
        "SELECT status, COUNT(*), SUM(repeat_count), SUM(attached_count) FROM incidents"
        " GROUP BY status"
    ):
        incidents[status] = count
        incidents["total"] += count
        incidents["repeats"] += repeats
        incidents["attached"] += attached
    return {
        "alerts": {"firing": firing, "resolved": resolved, "total": firing + resolved},
        "incidents": incidents,
    }
