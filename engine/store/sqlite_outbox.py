"""The delivery outbox on SQLite: functions over a connection already inside a transaction."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from engine.store import codec
from engine.store.base import Delivery, NewDelivery
from engine.store.codec import epoch, from_epoch

COLUMNS = (
    "id, incident_id, sink, event, payload, attempts, status, next_attempt_at, last_error, "
    "created_at"
)
STATUSES = ("pending", "sending", "delivered", "dead")


def _delivery(row: Sequence[Any]) -> Delivery:
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
    conn: sqlite3.Connection, incident_id: str, deliveries: Sequence[NewDelivery], t_now: float
) -> None:
    conn.executemany(
        "INSERT INTO deliveries (incident_id, sink, event, payload, attempts, status,"
        " next_attempt_at, created_at) VALUES (?, ?, ?, ?, 0, 'pending', ?, ?)",
        [(incident_id, d.sink, d.event, codec.dumps(d.payload), t_now, t_now) for d in deliveries],
    )


def claim(
    conn: sqlite3.Connection, now: datetime, limit: int, lease: timedelta, worker: str
) -> list[Delivery]:
    # Each (incident, sink) pair is a queue; its head is its lowest-id pending/sending
    # delivery: delivered and dead ones drop out, so a dead letter does not block later
    # messages, and a failing sink does not hold back the incident's other sinks.
    # INDEXED BY: the partial index holds only undelivered rows, in (incident_id, sink,
    # id) order, so the GROUP BY needs no sort (the planner, without ANALYZE statistics,
    # would otherwise pick the status index and a temp b-tree).
    t_now = epoch(now)
    rows = conn.execute(
        f"UPDATE deliveries SET status = 'sending', attempts = attempts + 1,"
        f" lease_until = ?, worker = ? WHERE id IN ("
        f" SELECT d.id FROM deliveries AS d JOIN ("
        f"  SELECT MIN(id) AS id FROM deliveries INDEXED BY deliveries_queue"
        f"  WHERE status IN ('pending', 'sending') GROUP BY incident_id, sink"
        f" ) AS head ON head.id = d.id"
        f" WHERE (d.status = 'pending' AND d.next_attempt_at <= ?)"
        f"    OR (d.status = 'sending' AND d.lease_until <= ?)"
        f" ORDER BY d.id LIMIT ?"
        f") RETURNING {COLUMNS}",
        (t_now + lease.total_seconds(), worker, t_now, t_now, limit),
    ).fetchall()
    return sorted((_delivery(r) for r in rows), key=lambda d: d.id)


def finish_assignment(
    ok: bool, now: datetime, error: str | None, retry_at: datetime | None, mark: str
) -> tuple[str, tuple[float | str | None, ...]]:
    """The SET clause (with `mark` as the driver's placeholder) and its arguments that
    settle a delivery: delivered, pending again at retry_at, or dead. Both backends use it."""
    if ok:
        return f"status = 'delivered', delivered_at = {mark}", (epoch(now),)
    if retry_at is not None:
        return (
            f"status = 'pending', next_attempt_at = {mark}, last_error = {mark}",
            (epoch(retry_at), error),
        )
    return f"status = 'dead', last_error = {mark}", (error,)


def finish(
    conn: sqlite3.Connection,
    delivery_id: int,
    ok: bool,
    now: datetime,
    error: str | None,
    retry_at: datetime | None,
) -> None:
    row = conn.execute("SELECT status FROM deliveries WHERE id = ?", (delivery_id,)).fetchone()
    if row is None:
        raise KeyError(delivery_id)
    if row[0] in ("delivered", "dead"):
        return  # a late finish (its lease had expired) must not resurrect a settled delivery
    sets, args = finish_assignment(ok, now, error, retry_at, "?")
    conn.execute(
        f"UPDATE deliveries SET {sets}, lease_until = NULL, worker = NULL WHERE id = ?",
        (*args, delivery_id),
    )


def dead(conn: sqlite3.Connection, limit: int) -> list[Delivery]:
    sql = f"SELECT {COLUMNS} FROM deliveries WHERE status = 'dead' ORDER BY id DESC LIMIT ?"
    return [_delivery(r) for r in conn.execute(sql, (limit,))]


def counts(conn: sqlite3.Connection) -> dict[str, int]:
    by_status = dict(conn.execute("SELECT status, COUNT(*) FROM deliveries GROUP BY status"))
    return {status: by_status.get(status, 0) for status in STATUSES}
