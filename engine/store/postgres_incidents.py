"""Alerts and incidents on PostgreSQL: functions over a connection inside a transaction.

`PostgresStore` owns the pool and the transactions (READ COMMITTED, retried on
serialization failures / deadlocks / unique violations, see postgres.py); these
functions only run SQL. The rules are those of sqlite_incidents; what differs is how
they stay true when several processes write at once:

- the (fingerprint, starts_at) key of `alerts` is claimed first, with INSERT ... ON
  CONFLICT DO NOTHING: of N concurrent identical firings exactly one inserts, the others
  wait for it to commit and then count a repeat;
- a new incident is inserted with ON CONFLICT on the partial unique index
  `incidents_one_open`: when another process opened one for the fingerprint meanwhile,
  the insert does nothing and this firing attaches to that incident instead;
- every change to an incident locks its row first (UPDATE or SELECT ... FOR UPDATE), so
  counters never lose an increment and one incident's deliveries get increasing ids in
  commit order (what keeps the outbox in order).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import psycopg

from engine.model import Alert, Incident
from engine.store import codec
from engine.store.base import AlertOutcome, IncidentDraft, OutcomeKind
from engine.store.codec import epoch, from_epoch

# Row decoding is backend-neutral (same columns, same codec): shared with SQLite.
from engine.store.sqlite_incidents import AUTO_NOTE, COLUMNS
from engine.store.sqlite_incidents import _incident as decode

ATTACH_TRIES = 5  # open-vs-attach races per firing before giving up (each one needs a
# concurrent transaction to open and then resolve an incident of the same fingerprint)


class RaceError(RuntimeError):
    """The open incident to attach to kept changing under us; the caller retries."""


def get(conn: psycopg.Connection, incident_id: str) -> Incident | None:
    row = conn.execute(f"SELECT {COLUMNS} FROM incidents WHERE id = %s", (incident_id,)).fetchone()
    return None if row is None else decode(row)


def find_repeat(conn: psycopg.Connection, fingerprint: str, starts_at: datetime) -> Incident | None:
    sql = (
        f"SELECT {COLUMNS} FROM incidents WHERE id = "
        "(SELECT incident_id FROM alerts WHERE fingerprint = %s AND starts_at = %s)"
    )
    row = conn.execute(sql, (fingerprint, epoch(starts_at))).fetchone()
    return None if row is None else decode(row)


def select(
    conn: psycopg.Connection, filters: dict[str, Any], since: datetime | None, limit: int | None
) -> list[Incident]:
    """Incidents matching the non-None `filters`, newest first; limit None means all."""
    where = [f"{column} = %s" for column, value in filters.items() if value is not None]
    args: list[Any] = [value for value in filters.values() if value is not None]
    if since is not None:
        where.append("opened_at >= %s")
        args.append(epoch(since))
    sql = f"SELECT {COLUMNS} FROM incidents"
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY opened_at DESC, id DESC LIMIT %s"
    return [decode(row) for row in conn.execute(sql, [*args, limit])]


def _repeat(conn: psycopg.Connection, key: tuple[str, float], t_now: float) -> AlertOutcome | None:
    row = conn.execute(
        "UPDATE incidents SET repeat_count = repeat_count + 1, last_seen = %s"
        " WHERE id = (SELECT incident_id FROM alerts WHERE fingerprint = %s AND starts_at = %s)"
        f" RETURNING {COLUMNS}",
        (t_now, *key),
    ).fetchone()
    return None if row is None else AlertOutcome("repeat", decode(row), notify=False)


def record_firing(
    conn: psycopg.Connection, draft: IncidentDraft, now: datetime, renotify_after: timedelta
) -> AlertOutcome:
    alert, t_now = draft.alert, epoch(now)
    key = (alert.fingerprint, epoch(alert.starts_at))
    # Fast path for the common retry: the firing is already recorded.
    outcome = _repeat(conn, key, t_now)
    if outcome is not None:
        return outcome
    # Claim the key. The incident id is provisional (the FK is checked at commit): an
    # attach below points the row at the incident it joins.
    claimed = conn.execute(
        "INSERT INTO alerts (fingerprint, starts_at, incident_id, status, ends_at, received_at)"
        " VALUES (%s, %s, %s, 'firing', NULL, %s) ON CONFLICT DO NOTHING RETURNING 1",
        (*key, draft.id, t_now),
    ).fetchone()
    if claimed is None:
        # A concurrent identical firing got there first and has committed (ON CONFLICT
        # waited for it): this one is a repeat of it.
        outcome = _repeat(conn, key, t_now)
        if outcome is None:  # cannot happen: alert rows are never deleted
            raise RaceError(f"alert {key} conflicted but is not visible")
        return outcome
    for _ in range(ATTACH_TRIES):
        target = _attach_target(conn, draft)
        if target is not None:
            incident_id, notified = target
            notify = notified is None or from_epoch(notified) + renotify_after <= now
            conn.execute(
                "UPDATE incidents SET attached_count = attached_count + 1, last_seen = %s,"
                " last_notified_at = %s WHERE id = %s",
                (t_now, t_now if notify else notified, incident_id),
            )
            conn.execute(
                "UPDATE alerts SET incident_id = %s WHERE fingerprint = %s AND starts_at = %s",
                (incident_id, *key),
            )
            return AlertOutcome("attached", get(conn, incident_id), notify=notify)
        if _insert(conn, draft, t_now):
            return AlertOutcome("opened", get(conn, draft.id), notify=True)
        # Another process opened an incident for this fingerprint after our look: join it.
    raise RaceError(f"could not settle an open incident for fingerprint {alert.fingerprint!r}")


def _attach_target(conn: psycopg.Connection, draft: IncidentDraft) -> tuple[str, Any] | None:
    """(incident id, last_notified_at) of the open incident this firing joins, locked."""
    if draft.duplicate_of is not None:
        row = conn.execute(
            "SELECT id, last_notified_at FROM incidents WHERE id = %s AND status = 'open'"
            " FOR UPDATE",
            (draft.duplicate_of,),
        ).fetchone()
        if row is not None:
            return row[0], row[1]
    row = conn.execute(
        "SELECT id, last_notified_at FROM incidents WHERE fingerprint = %s AND status = 'open'"
        " FOR UPDATE",
        (draft.alert.fingerprint,),
    ).fetchone()
    return None if row is None else (row[0], row[1])


def _insert(conn: psycopg.Connection, draft: IncidentDraft, t_now: float) -> bool:
    """Open the draft's incident; False when one is already open for the fingerprint."""
    alert = draft.alert
    row = conn.execute(
        "INSERT INTO incidents (id, fingerprint, status, title, service, alertname, team,"
        " severity, opened_at, last_seen, last_notified_at, alert, findings, narration)"
        " VALUES (%s, %s, 'open', %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
        " ON CONFLICT (fingerprint) WHERE status = 'open' DO NOTHING RETURNING 1",
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
    ).fetchone()
    return row is not None


def record_resolved(conn: psycopg.Connection, alert: Alert, now: datetime) -> list[AlertOutcome]:
    """One outcome per incident touched, the newest alert's first (see
    SQLiteStore.record_resolved for the rules)."""
    end = codec.real_end(alert.ends_at) or now
    key = (alert.fingerprint, epoch(alert.starts_at))
    rows = conn.execute(
        "SELECT incident_id FROM alerts WHERE fingerprint = %s AND status = 'firing'"
        " AND starts_at <= %s ORDER BY starts_at DESC",
        key,
    ).fetchall()
    if not rows:
        # Resent resolution or unknown alert: report the incident it concerns, if any.
        row = conn.execute(
            "SELECT incident_id FROM alerts WHERE fingerprint = %s"
            " ORDER BY (starts_at = %s) DESC, starts_at DESC LIMIT 1",
            key,
        ).fetchone()
        return [AlertOutcome("ignored", None if row is None else get(conn, row[0]), notify=False)]
    incident_ids = list(dict.fromkeys(r[0] for r in rows))  # unique, newest first
    # Incident rows first, in one order, then their alerts: the order every writer uses.
    conn.execute(
        "SELECT 1 FROM incidents WHERE id = ANY(%s) ORDER BY id FOR UPDATE", (incident_ids,)
    )
    conn.execute(
        "UPDATE alerts SET status = 'resolved', ends_at = %s"
        " WHERE fingerprint = %s AND status = 'firing' AND starts_at <= %s"
        " AND incident_id = ANY(%s)",  # the incidents locked above (a firing committed
        (epoch(end), *key, incident_ids),  # since the SELECT, of another one, stays firing)
    )
    resolution = codec.dumps(codec.resolution(auto=True, note=AUTO_NOTE, at=end))
    outcomes = []
    for incident_id in incident_ids:
        firing = conn.execute(
            "SELECT 1 FROM alerts WHERE incident_id = %s AND status = 'firing' LIMIT 1",
            (incident_id,),
        ).fetchone()
        done = (
            firing is None
            and conn.execute(
                "UPDATE incidents SET status = 'resolved', resolved_at = %s, resolution = %s"
                " WHERE id = %s AND status = 'open'",
                (epoch(end), resolution, incident_id),
            ).rowcount
        )
        kind: OutcomeKind = "resolved" if done else "ignored"
        outcomes.append(AlertOutcome(kind, get(conn, incident_id), notify=bool(done)))
    return outcomes


def resolve(
    conn: psycopg.Connection, incident_id: str, at: datetime, note: str | None, auto: bool
) -> AlertOutcome:
    row = conn.execute(
        f"SELECT {COLUMNS} FROM incidents WHERE id = %s FOR UPDATE", (incident_id,)
    ).fetchone()
    incident = None if row is None else decode(row)
    if incident is None or incident.status != "open":
        return AlertOutcome("ignored", incident, notify=False)
    conn.execute(
        "UPDATE incidents SET status = 'resolved', resolved_at = %s, resolution = %s WHERE id = %s",
        (epoch(at), codec.dumps(codec.resolution(auto=auto, note=note, at=at)), incident_id),
    )
    conn.execute(
        "UPDATE alerts SET status = 'resolved', ends_at = %s"
        " WHERE incident_id = %s AND status = 'firing'",
        (epoch(at), incident_id),
    )
    return AlertOutcome("resolved", get(conn, incident_id), notify=True)


def set_narration(conn: psycopg.Connection, incident_id: str, narration: dict[str, Any]) -> bool:
    sql = "UPDATE incidents SET narration = %s WHERE id = %s"
    return conn.execute(sql, (codec.dumps(narration), incident_id)).rowcount > 0


def counts(conn: psycopg.Connection) -> dict[str, dict[str, int]]:
    """The `alerts` and `incidents` parts of stats()."""
    by_status: dict[str, int] = dict(
        conn.execute("SELECT status, COUNT(*) FROM alerts GROUP BY status")
    )
    firing, resolved = by_status.get("firing", 0), by_status.get("resolved", 0)
    incidents = {"open": 0, "resolved": 0, "total": 0, "repeats": 0, "attached": 0}
    for status, count, repeats, attached in conn.execute(
        "SELECT status, COUNT(*), SUM(repeat_count), SUM(attached_count) FROM incidents"
        " GROUP BY status"
    ):
        incidents[status] = count
        incidents["total"] += count
        incidents["repeats"] += int(repeats)
        incidents["attached"] += int(attached)
    return {
        "alerts": {"firing": firing, "resolved": resolved, "total": firing + resolved},
        "incidents": incidents,
    }
