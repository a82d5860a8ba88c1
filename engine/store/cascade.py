"""Dependency cascades inside the write transaction: symptoms, and merging into a root.

A `Cascade` (engine.store.base; built by engine.rules.grouping from the rule that exports
`symptom_of`) names the alert's upstream services and its dependents. Under the advisory
locks record_firing takes first (each upstream service, and the alert's own service when
it has dependents: an upstream and its dependent always share one key), either

- an open incident of an upstream service, opened inside the rule's window, exists: the
  alert attaches to it as a symptom (`add_symptom`); or
- the alert opens its own incident, and the open incidents its dependents opened since
  `merge_since` are merged into it (`merge_downstream`): their alerts move over and
  become symptoms, they are resolved with `merged_into`, their pages not yet attempted
  are withdrawn and the sinks that already had one get a resolve.

So the dependents of a root that alerts late were first held (their page waits
`Cascade.hold`), then merged: one page, whatever the arrival order.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from engine.model import Alert, Incident
from engine.store import codec
from engine.store.base import AlertOutcome, Cascade
from engine.store.codec import epoch
from engine.store.dialect import Conn, Dialect
from engine.store.incidents import any_of_clause, get
from engine.timeutil import format_ts

MERGED_NOTE = "merged into {root}: a symptom of its upstream failure"


def upstream_incident(dialect: Dialect, conn: Conn, cascade: Cascade) -> Any:
    """(id, last_notified_at, service) of the oldest open incident of an upstream service
    opened inside the window, locked; None when there is none."""
    either, args = any_of_clause(cascade.upstream, {"status": "open"})
    sql = f"SELECT id, last_notified_at, service FROM incidents WHERE {either}"
    for bound, op in ((cascade.since, ">="), (cascade.until, "<=")):
        if bound is not None:
            sql += f" AND opened_at {op} ?"
            args.append(epoch(bound))
    sql += f" ORDER BY opened_at, id LIMIT 1{dialect.for_update}"
    return conn.execute(sql, args).fetchone()


def symptom(
    alert: Alert,
    cascade: Cascade | None,
    service: str | None,
    now: datetime,
    merged_from: str | None,
) -> dict[str, Any]:
    """What an incident lists about one symptom alert (`cascade` None: a rule's
    `symptom_of` named the incident without a cascade join)."""
    return {
        "fingerprint": alert.fingerprint,
        "service": alert.service,
        "alertname": alert.alertname,
        "startsAt": format_ts(alert.starts_at),
        "at": format_ts(now),
        "via": list(cascade.via.get(service or "", ())) if cascade is not None else [],
        "rule": cascade.rule if cascade is not None else None,
        "merged_from": merged_from,
    }


def add_symptoms(conn: Conn, incident_id: str, entries: list[dict[str, Any]]) -> None:
    """Append to the incident's symptom list (its row is locked by the caller)."""
    row = conn.execute("SELECT symptoms FROM incidents WHERE id = ?", (incident_id,)).fetchone()
    listed = list(codec.loads(row[0]) or ()) if row is not None else []
    conn.execute(
        "UPDATE incidents SET symptoms = ? WHERE id = ?",
        (codec.dumps([*listed, *entries]), incident_id),
    )


def merge_downstream(
    dialect: Dialect, conn: Conn, root: str, cascade: Cascade, now: datetime
) -> tuple[tuple[AlertOutcome, frozenset[str]], ...]:
    """Merge the dependents' open incidents into the new incident `root` (see the module
    doc). Returns each merged incident's resolved outcome with the sinks to resolve."""
    if not cascade.downstream:
        return ()
    either, args = any_of_clause(cascade.downstream, {"status": "open"})
    sql = f"SELECT id FROM incidents WHERE {either} AND id <> ?"
    args.append(root)
    if cascade.merge_since is not None:
        sql += " AND opened_at >= ?"
        args.append(epoch(cascade.merge_since))
    ids = [r[0] for r in conn.execute(sql + f" ORDER BY id{dialect.for_update}", args)]
    merged, entries, moved = [], [], 0
    t_now = epoch(now)
    for incident_id in ids:
        incident = get(conn, incident_id)
        assert incident is not None  # locked above
        moved += conn.execute(
            "UPDATE alerts SET incident_id = ? WHERE incident_id = ?", (root, incident_id)
        ).rowcount
        entries.append(symptom(incident.alert, cascade, incident.service, now, incident_id))
        entries.extend(
            {**s, "merged_from": s.get("merged_from") or incident_id} for s in incident.symptoms
        )
        merged.append(_close(dialect, conn, incident, root, now))
    if entries:
        add_symptoms(conn, root, entries)
        conn.execute(
            "UPDATE incidents SET attached_count = attached_count + ?, last_seen = ? WHERE id = ?",
            (moved, t_now, root),
        )
    return tuple(merged)


def _close(
    dialect: Dialect, conn: Conn, incident: Incident, root: str, now: datetime
) -> tuple[AlertOutcome, frozenset[str]]:
    """Resolve a merged incident: withdraw its pages not yet attempted, and name the sinks
    that had one on its way (they get a resolve)."""
    conn.execute(
        "DELETE FROM deliveries WHERE incident_id = ? AND status = 'pending' AND attempts = 0",
        (incident.id,),
    )
    sent = frozenset(
        r[0]
        for r in conn.execute(
            "SELECT DISTINCT sink FROM deliveries WHERE incident_id = ? AND event = 'trigger'",
            (incident.id,),
        )
    )
    note = MERGED_NOTE.format(root=root)
    resolution = {**codec.resolution(auto=True, note=note, at=now), "merged_into": root}
    conn.execute(
        # Its alerts now count as the root's (attached there): not twice.
        "UPDATE incidents SET status = 'resolved', resolved_at = ?, resolution = ?,"
        " attached_count = 0 WHERE id = ?",
        (epoch(now), codec.dumps(resolution), incident.id),
    )
    closed = get(conn, incident.id)
    return AlertOutcome("resolved", closed, notify=bool(sent)), sent
