"""Alerts and incidents: functions over a connection inside the store's transaction.

`SQLStore` owns the transactions (engine.store.sql); these functions only run SQL, the
same on both engines. The rules stay true when several processes write at once (on
PostgreSQL at READ COMMITTED; on SQLite the write lock already serialises writers):

- the (fingerprint, starts_at) key of `alerts` is claimed first, with INSERT ... ON
  CONFLICT DO NOTHING: of N concurrent identical firings exactly one inserts, the others
  wait for it to commit and then count a repeat;
- a new incident is inserted with ON CONFLICT on the partial unique index
  `incidents_one_open`: when another process opened one for the fingerprint meanwhile,
  the insert does nothing and this firing attaches to that incident instead;
- alerts of one duplicate group (engine.rules.grouping) lock the group's values before
  they look for its open incident, so racing alerts of other fingerprints join one;
- every change to an incident locks its row first (UPDATE, or SELECT with the dialect's
  FOR UPDATE), so counters never lose an increment and one incident's deliveries get
  increasing ids in commit order (what keeps the outbox in order).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from functools import lru_cache
from typing import Any

from engine.model import Alert, Finding, Incident, Severity
from engine.store import codec, search
from engine.store.base import ANY_OF_COLUMNS, AlertOutcome, AlertRecord, OutcomeKind
from engine.store.codec import epoch, from_epoch
from engine.store.dialect import Conn, Dialect

COLUMNS = (
    "id, fingerprint, status, title, service, alertname, team, severity, opened_at, last_seen, "
    "alert, findings, repeat_count, attached_count, resolved_at, resolution, narration, "
    "last_notified_at, symptoms"
)
AUTO_NOTE = "resolved by Alertmanager"
ATTACH_TRIES = 5  # open-vs-attach races per firing before giving up (each one needs a
# concurrent transaction to open and then resolve an incident of the same fingerprint)

# Decoding an incident's `findings` and `alert` JSON is most of the cost of reading one.
# Both are written when the incident opens (findings grow once more when its pull rules
# answer: add_findings), so the decoded values are cached by their text (the key is the
# exact JSON, so a hit is always right).
# The objects are shared between the incidents returned: like the frozen dataclasses
# holding them, they are read-only by convention.
_DECODE_CACHE = 1024
_findings_from_json = lru_cache(maxsize=_DECODE_CACHE)(codec.findings_from_json)
_alert_from_json = lru_cache(maxsize=_DECODE_CACHE)(codec.alert_from_json)


class RaceError(RuntimeError):
    """The open incident to attach to kept changing under us; the store retries."""


def decode(row: Sequence[Any]) -> Incident:
    (iid, fp, status, title, service, alertname, team, severity, opened, seen, alert) = row[:11]
    (findings, repeats, attached, resolved, resolution, narration, notified, symptoms) = row[11:]
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
        symptoms=tuple(codec.loads(symptoms) or ()),
    )


def get(conn: Conn, incident_id: str, *, lock: str = "") -> Incident | None:
    sql = f"SELECT {COLUMNS} FROM incidents WHERE id = ?{lock}"
    row = conn.execute(sql, (incident_id,)).fetchone()
    return None if row is None else decode(row)


def find_repeat(conn: Conn, fingerprint: str, starts_at: datetime) -> Incident | None:
    sql = (
        f"SELECT {COLUMNS} FROM incidents WHERE id = "
        "(SELECT incident_id FROM alerts WHERE fingerprint = ? AND starts_at = ?)"
    )
    row = conn.execute(sql, (fingerprint, epoch(starts_at))).fetchone()
    return None if row is None else decode(row)


def select(
    conn: Conn,
    filters: dict[str, Any],
    since: datetime | None,
    limit: int | None,
    any_of: Sequence[Mapping[str, str]] = (),
    *,
    severities: Sequence[Severity] = (),
    q_words: Sequence[str] = (),
    before: tuple[datetime, str] | None = None,
) -> list[Incident]:
    """Incidents matching the non-None `filters` (column -> value) and, when `any_of` is
    not empty, at least one of its maps (each an AND of column = value), newest first by
    opened_at; `since` is inclusive; `limit` is the dialect's (its `unlimited`: all).
    `severities`: one of them; `q_words`: each the prefix of a term (engine.store.search);
    `before`: strictly after this (opened_at, id) in the newest-first order (a cursor)."""
    equal = {column: value for column, value in filters.items() if value is not None}
    where: list[str] = []
    args: list[Any] = []
    if any_of:
        # The equalities go into every group: the same rows, but SQLite's planner then
        # answers each group from its own index (MULTI-INDEX OR: the open incident of the
        # fingerprint, the open ones of the service and alertname) instead of reading all
        # the incidents of the status and testing the OR on each.
        either, args = any_of_clause(any_of, equal)
        where.append(either)
    else:
        where = [f"{column} = ?" for column in equal]
        args = list(equal.values())
    if since is not None:
        where.append("opened_at >= ?")
        args.append(epoch(since))
    if severities:
        where.append(f"severity IN ({', '.join('?' for _ in severities)})")
        args.extend(int(s) for s in severities)
    if q_words:
        clauses, q_args = search.match_sql(list(q_words))
        where.extend(clauses)
        args.extend(q_args)
    if before is not None:
        at = epoch(before[0])
        where.append("(opened_at < ? OR (opened_at = ? AND id < ?))")
        args.extend([at, at, before[1]])
    sql = f"SELECT {COLUMNS} FROM incidents"
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY opened_at DESC, id DESC LIMIT ?"
    return [decode(row) for row in conn.execute(sql, [*args, limit])]


def any_of_clause(
    any_of: Sequence[Mapping[str, str]], equal: Mapping[str, Any] | None = None
) -> tuple[str, list[Any]]:
    """`(a = ? AND b = ?) OR (...)`, one group per map, and its parameters; `equal` (column
    -> value, the caller's own columns) is ANDed into every group. Column names of the
    maps are checked against a fixed set (they are spelt into the SQL); values are
    parameters."""
    equal = equal or {}
    branches: list[str] = []
    args: list[Any] = []
    for branch in any_of:
        unknown = set(branch) - ANY_OF_COLUMNS
        if unknown or not branch:
            raise ValueError(
                f"any_of maps compare {', '.join(sorted(ANY_OF_COLUMNS))} only, and at least"
                f" one of them; got {sorted(branch)!r}"
            )
        columns = [*equal, *branch]
        branches.append("(" + " AND ".join(f"{column} = ?" for column in columns) + ")")
        args.extend([*equal.values(), *branch.values()])
    return "(" + " OR ".join(branches) + ")", args


def alerts_of(conn: Conn, incident_id: str) -> list[AlertRecord]:
    """Each alert recorded for the incident, oldest first."""
    rows = conn.execute(
        "SELECT fingerprint, starts_at, status, ends_at, labels, generator_url FROM alerts"
        " WHERE incident_id = ? ORDER BY starts_at, fingerprint",
        (incident_id,),
    ).fetchall()
    return [
        AlertRecord(fp, from_epoch(start), status, from_epoch(end), codec.loads(labels), url or "")
        for fp, start, status, end, labels, url in rows
    ]


def record_resolved(
    dialect: Dialect, conn: Conn, alert: Alert, now: datetime
) -> list[AlertOutcome]:
    """Mark the alert resolved; one outcome per incident touched, the newest alert's first.

    The alert rows resolved are those of `alert.fingerprint` still firing with
    starts_at <= alert.starts_at (Alertmanager has one active alert per fingerprint, so an
    older row still firing missed its own resolution; a newer one is a later episode).
    Their ends_at is alert.ends_at, or `now` when missing. Outcome kinds:
    - resolved: the incident had no firing alert left and was resolved (notify=True),
      resolved_at = ends_at, resolution {"auto": True, "note": AUTO_NOTE, "at": ...};
    - ignored, with the incident: other alerts of the incident (grouped / attached ones)
      still fire, so it stays open; or the resolution was already recorded (resent);
    - ignored, incident None: a fingerprint never seen firing.
    """
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
            " ORDER BY (starts_at = ?) DESC, starts_at DESC LIMIT 1",
            key,
        ).fetchone()
        return [AlertOutcome("ignored", None if row is None else get(conn, row[0]), notify=False)]
    incident_ids = list(dict.fromkeys(r[0] for r in rows))  # unique, newest first
    among, among_args = dialect.in_list("id", incident_ids)
    if dialect.for_update:
        # Incident rows first, in one order, then their alerts: the order every writer uses.
        conn.execute(
            f"SELECT 1 FROM incidents WHERE {among} ORDER BY id{dialect.for_update}", among_args
        )
    of_them, of_them_args = dialect.in_list("incident_id", incident_ids)
    conn.execute(
        "UPDATE alerts SET status = 'resolved', ends_at = ?"
        f" WHERE fingerprint = ? AND status = 'firing' AND starts_at <= ? AND {of_them}",
        # Only the incidents locked above: a firing of another one, committed since the
        # SELECT, stays firing.
        (epoch(end), *key, *of_them_args),
    )
    resolution = codec.dumps(codec.resolution(auto=True, note=AUTO_NOTE, at=end))
    outcomes = []
    for incident_id in incident_ids:
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
        kind: OutcomeKind = "resolved" if done else "ignored"
        outcomes.append(AlertOutcome(kind, get(conn, incident_id), notify=bool(done)))
    return outcomes


def resolve(
    dialect: Dialect, conn: Conn, incident_id: str, at: datetime, note: str | None, auto: bool
) -> AlertOutcome:
    incident = get(conn, incident_id, lock=dialect.for_update)
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


def add_findings(
    dialect: Dialect, conn: Conn, incident_id: str, findings: Sequence[Finding]
) -> Incident | None:
    """Append `findings` to the incident's (its row locked first); None when unknown."""
    incident = get(conn, incident_id, lock=dialect.for_update)
    if incident is None:
        return None
    if findings:
        merged = (*incident.findings, *findings)
        conn.execute(
            "UPDATE incidents SET findings = ? WHERE id = ?",
            (codec.findings_to_json(merged), incident_id),
        )
        incident = get(conn, incident_id)
    return incident


def set_narration(conn: Conn, incident_id: str, narration: dict[str, Any]) -> bool:
    sql = "UPDATE incidents SET narration = ? WHERE id = ?"
    return conn.execute(sql, (codec.dumps(narration), incident_id)).rowcount > 0
