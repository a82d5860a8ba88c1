"""The delivery outbox: functions over a connection inside the store's transaction.

Each (incident, sink) pair is a queue; its head is its lowest-id pending/sending
delivery: delivered and dead ones drop out, so a dead letter does not block later
messages, and a failing sink does not hold back the incident's other sinks. Claiming
the heads is the dialect's (it is where row locking differs most: SQLite's writer lock
against PostgreSQL's FOR UPDATE SKIP LOCKED). An incident's next delivery only becomes a
head once the previous one is delivered or dead, which keeps per-incident order: its
deliveries get increasing ids in commit order, because every transaction that adds some
holds the incident's row lock.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from engine.store import codec
from engine.store.base import Delivery, NewDelivery, RetryRefused
from engine.store.codec import epoch, from_epoch
from engine.store.dialect import Conn, Dialect

COLUMNS = (
    "id, incident_id, sink, event, payload, attempts, status, next_attempt_at, last_error, "
    "created_at"
)
STATUSES = ("pending", "sending", "delivered", "dead")


def decode(row: Sequence[Any]) -> Delivery:
    did, iid, sink, event, payload, attempts, status, next_at, error, created = row
    return Delivery(
        id=did,
        incident_id=iid,
        sink=sink,
        event=event,
        payload=codec.loads(payload),
        attempts=attempts,
        status=status,
        next_attempt_at=from_epoch(next_at),
        last_error=error,
        created_at=from_epoch(created),
    )


def insert(
    dialect: Dialect,
    conn: Conn,
    incident_id: str,
    deliveries: Sequence[NewDelivery],
    t_now: float,
) -> None:
    if dialect.for_update:
        # The incident's row lock orders this against every other writer of the incident;
        # the change that planned these usually holds it already.
        conn.execute(f"SELECT 1 FROM incidents WHERE id = ?{dialect.for_update}", (incident_id,))
    conn.executemany(
        "INSERT INTO deliveries (incident_id, sink, event, payload, attempts, status,"
        " next_attempt_at, created_at) VALUES (?, ?, ?, ?, 0, 'pending', ?, ?)",
        [
            (incident_id, d.sink, d.event, codec.dumps(d.payload), t_now + d.delay, t_now)
            for d in deliveries
        ],
    )


def claim(
    dialect: Dialect, conn: Conn, now: datetime, limit: int, lease: timedelta, worker: str
) -> list[Delivery]:
    t_now = epoch(now)
    rows = dialect.claim_deliveries(conn, t_now, limit, t_now + lease.total_seconds(), worker)
    return sorted((decode(r) for r in rows), key=lambda d: d.id)


def _settle(
    ok: bool, now: datetime, error: str | None, retry_at: datetime | None
) -> tuple[str, tuple[float | str | None, ...]]:
    """The SET clause and its arguments that settle a delivery: delivered, pending again
    at retry_at, or dead."""
    if ok:
        return "status = 'delivered', delivered_at = ?", (epoch(now),)
    if retry_at is not None:
        return "status = 'pending', next_attempt_at = ?, last_error = ?", (epoch(retry_at), error)
    return "status = 'dead', last_error = ?", (error,)


def finish(
    dialect: Dialect,
    conn: Conn,
    delivery_id: int,
    ok: bool,
    now: datetime,
    error: str | None,
    retry_at: datetime | None,
) -> None:
    sql = f"SELECT status FROM deliveries WHERE id = ?{dialect.for_update}"
    row = conn.execute(sql, (delivery_id,)).fetchone()
    if row is None:
        raise KeyError(delivery_id)
    if row[0] in ("delivered", "dead"):
        return  # a late finish (its lease had expired) must not resurrect a settled delivery
    sets, args = _settle(ok, now, error, retry_at)
    conn.execute(
        f"UPDATE deliveries SET {sets}, lease_until = NULL, worker = NULL WHERE id = ?",
        (*args, delivery_id),
    )


def release_held(conn: Conn, incident_id: str, t_now: float) -> int:
    """Make the incident's held first deliveries (never attempted, due later) due now."""
    return conn.execute(
        "UPDATE deliveries SET next_attempt_at = ? WHERE incident_id = ? AND status = 'pending'"
        " AND attempts = 0 AND next_attempt_at > ?",
        (t_now, incident_id, t_now),
    ).rowcount


def dead(conn: Conn, limit: int) -> list[Delivery]:
    sql = f"SELECT {COLUMNS} FROM deliveries WHERE status = 'dead' ORDER BY id DESC LIMIT ?"
    return [decode(r) for r in conn.execute(sql, (limit,))]


def select(
    conn: Conn,
    statuses: Sequence[str],
    incident: str | None,
    sink: str | None,
    before: int | None,
    limit: int,
) -> list[Delivery]:
    """Deliveries in `statuses`, of `incident` and `sink` when given, with an id below
    `before` when given; newest first."""
    marks = ", ".join("?" * len(statuses))
    where, args = [f"status IN ({marks})"], list[Any](statuses)
    for clause, value in (("incident_id = ?", incident), ("sink = ?", sink), ("id < ?", before)):
        if value is not None:
            where.append(clause)
            args.append(value)
    sql = f"SELECT {COLUMNS} FROM deliveries WHERE {' AND '.join(where)} ORDER BY id DESC LIMIT ?"
    return [decode(r) for r in conn.execute(sql, (*args, limit))]


def get(conn: Conn, delivery_id: int) -> Delivery | None:
    row = conn.execute(f"SELECT {COLUMNS} FROM deliveries WHERE id = ?", (delivery_id,)).fetchone()
    return decode(row) if row else None


def resend(dialect: Dialect, conn: Conn, delivery_id: int, t_now: float) -> Delivery | None:
    """Queue a dead delivery again, due now, as if new (attempts 0, created now: a fresh
    retry window). None for an unknown id; RetryRefused when it is not dead, or when it
    would page for an incident that has since resolved (a trigger or update whose resolve
    already went out would leave the receiver's alert open for good)."""
    sql = (
        "SELECT d.status, d.event, i.status FROM deliveries AS d"
        f" JOIN incidents AS i ON i.id = d.incident_id WHERE d.id = ?{dialect.for_update}"
    )
    row = conn.execute(sql, (delivery_id,)).fetchone()
    if row is None:
        return None
    status, event, incident_status = row
    if status != "dead":
        raise RetryRefused(f"the delivery is {status}, not dead: only a dead letter is re-sent")
    if event != "resolve" and incident_status == "resolved":
        raise RetryRefused(
            f"its incident has been resolved: re-sending this {event} would open an alert "
            "that no resolve follows"
        )
    conn.execute(
        "UPDATE deliveries SET status = 'pending', attempts = 0, next_attempt_at = ?,"
        " created_at = ?, last_error = NULL, lease_until = NULL, worker = NULL WHERE id = ?",
        (t_now, t_now, delivery_id),
    )
    return get(conn, delivery_id)


def oldest_pending(conn: Conn) -> float | None:
    """created_at (epoch) of the oldest delivery not yet delivered or dead."""
    row = conn.execute(
        "SELECT MIN(created_at) FROM deliveries WHERE status IN ('pending', 'sending')"
    ).fetchone()
    return None if row is None or row[0] is None else float(row[0])
