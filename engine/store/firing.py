"""Recording a new firing: a repeat, an attach (duplicate or symptom), or a new incident.

Functions over a connection inside the store's transaction (engine.store.sql owns it);
the rules that keep this exact under concurrency are engine.store.incidents' doc. The
decision, in order: the same firing again (repeat); the open incident a `duplicate_of`
names; the open incident of the fingerprint; under the advisory locks of the alert's
duplicate groups and cascade, the oldest open incident of a duplicate group, then the
incident a `symptom_of` names, then an upstream incident of the cascade
(engine.store.cascade); else a new incident, into which the dependents' incidents of a
cascade are merged.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from engine.store import cascade as cascades
from engine.store import codec, search
from engine.store.base import AlertOutcome, IncidentDraft
from engine.store.codec import epoch, from_epoch
from engine.store.dialect import Conn, Dialect
from engine.store.incidents import ATTACH_TRIES, COLUMNS, RaceError, any_of_clause, decode, get


def _repeat(conn: Conn, key: tuple[str, float], t_now: float) -> AlertOutcome | None:
    row = conn.execute(
        "UPDATE incidents SET repeat_count = repeat_count + 1, last_seen = ?"
        " WHERE id = (SELECT incident_id FROM alerts WHERE fingerprint = ? AND starts_at = ?)"
        f" RETURNING {COLUMNS}",
        (t_now, *key),
    ).fetchone()
    return None if row is None else AlertOutcome("repeat", decode(row), notify=False)


def record_firing(
    dialect: Dialect, conn: Conn, draft: IncidentDraft, now: datetime, renotify_after: timedelta
) -> AlertOutcome:
    alert, t_now = draft.alert, epoch(now)
    key = (alert.fingerprint, epoch(alert.starts_at))
    # Fast path for the common retry: the firing is already recorded.
    outcome = _repeat(conn, key, t_now)
    if outcome is not None:
        return outcome
    # Claim the key. The incident id is provisional (foreign keys are checked at commit):
    # an attach below points the row at the incident it joins.
    dialect.defer_foreign_keys(conn)
    claimed = conn.execute(
        "INSERT INTO alerts (fingerprint, starts_at, incident_id, status, ends_at, received_at,"
        " labels, generator_url) VALUES (?, ?, ?, 'firing', NULL, ?, ?, ?)"
        " ON CONFLICT DO NOTHING RETURNING 1",
        (*key, draft.id, t_now, codec.dumps(alert.labels), alert.generator_url),
    ).fetchone()
    if claimed is None:
        # A concurrent identical firing got there first and has committed (ON CONFLICT
        # waited for it): this one is a repeat of it.
        outcome = _repeat(conn, key, t_now)
        if outcome is None:  # cannot happen: alert rows are never deleted
            raise RaceError(f"alert {key} conflicted but is not visible")
        return outcome
    for _ in range(ATTACH_TRIES):
        target = _attach_target(dialect, conn, draft)
        if target is not None:
            incident_id, notified, upstream = target
            notify = notified is None or from_epoch(notified) + renotify_after <= now
            conn.execute(
                "UPDATE incidents SET attached_count = attached_count + 1, last_seen = ?,"
                " last_notified_at = ? WHERE id = ?",
                (t_now, t_now if notify else notified, incident_id),
            )
            conn.execute(
                "UPDATE alerts SET incident_id = ? WHERE fingerprint = ? AND starts_at = ?",
                (incident_id, *key),
            )
            if upstream is not None:  # a symptom of it
                entry = cascades.symptom(alert, draft.cascade, upstream, now, None)
                cascades.add_symptoms(conn, incident_id, [entry])
            return AlertOutcome("attached", get(conn, incident_id), notify=notify)
        if _insert(conn, draft, t_now):
            merged: tuple[tuple[AlertOutcome, frozenset[str]], ...] = ()
            if draft.cascade is not None:
                merged = cascades.merge_downstream(dialect, conn, draft.id, draft.cascade, now)
            return AlertOutcome("opened", get(conn, draft.id), notify=True, merged=merged)
        # Another process opened an incident for this fingerprint after our look: join it.
    raise RaceError(f"could not settle an open incident for fingerprint {alert.fingerprint!r}")


def _attach_target(
    dialect: Dialect, conn: Conn, draft: IncidentDraft
) -> tuple[str, Any, str | None] | None:
    """(incident id, last_notified_at, its service when this firing is a symptom of it) of
    the open incident this firing joins, locked."""
    lock = dialect.for_update
    if draft.duplicate_of is not None:
        row = conn.execute(
            f"SELECT id, last_notified_at FROM incidents WHERE id = ? AND status = 'open'{lock}",
            (draft.duplicate_of,),
        ).fetchone()
        if row is not None:
            return row[0], row[1], None
    row = conn.execute(
        "SELECT id, last_notified_at FROM incidents WHERE fingerprint = ? AND status = 'open'"
        + lock,
        (draft.alert.fingerprint,),
    ).fetchone()
    if row is not None:
        return row[0], row[1], None
    cascade = draft.cascade
    keys = {codec.dumps(dict(group)) or "" for group in draft.groups}
    keys.update(cascade.locks if cascade is not None else ())
    if keys:
        # One call, one order: every writer takes its keys sorted, so none waits in a circle.
        dialect.lock_keys(conn, sorted(keys))
    if draft.groups:
        row = _group_incident(dialect, conn, draft.groups)
        if row is not None:
            return row[0], row[1], None
    if draft.symptom_of is not None:
        row = conn.execute(
            "SELECT id, last_notified_at, service FROM incidents WHERE id = ?"
            f" AND status = 'open'{lock}",
            (draft.symptom_of,),
        ).fetchone()
    if row is None and cascade is not None and cascade.upstream:
        row = cascades.upstream_incident(dialect, conn, cascade)
    return None if row is None else (row[0], row[1], row[2] or "")


def _group_incident(dialect: Dialect, conn: Conn, groups: Sequence[Mapping[str, str]]) -> Any:
    """(id, last_notified_at) of the oldest open incident of the alert's duplicate group.

    The rules looked before this transaction; an alert of the same group (another
    fingerprint) may have opened one since, or be opening one right now. Each group's
    values are locked first (by the caller, in one order), so of two such transactions the
    second waits for the first to commit, and then finds its incident here."""
    either, args = any_of_clause(groups, {"status": "open"})  # status in each group: the indexes
    return conn.execute(
        f"SELECT id, last_notified_at FROM incidents WHERE {either}"
        f" ORDER BY opened_at, id LIMIT 1{dialect.for_update}",
        args,
    ).fetchone()


def _insert(conn: Conn, draft: IncidentDraft, t_now: float) -> bool:
    """Open the draft's incident; False when one is already open for the fingerprint."""
    alert = draft.alert
    row = conn.execute(
        "INSERT INTO incidents (id, fingerprint, status, title, service, alertname, team,"
        " severity, opened_at, last_seen, last_notified_at, alert, findings, narration,"
        " held_until) VALUES (?, ?, 'open', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
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
            t_now + hold(draft) if hold(draft) else None,
        ),
    ).fetchone()
    if row is not None:
        terms = search.incident_terms(draft.id, draft.title, draft.team, alert)
        search.insert_terms(conn, draft.id, terms)
    return row is not None


def hold(draft: IncidentDraft) -> float:
    """Seconds a new incident of this draft holds its first page for an upstream incident
    to open (a dependency cascade); 0 without an upstream to wait for."""
    cascade = draft.cascade
    return cascade.hold if cascade is not None and cascade.upstream else 0.0
