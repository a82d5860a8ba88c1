"""The delivery outbox on PostgreSQL: functions over a connection inside a transaction.

Claiming is safe across replicas without any lock held between calls:

    head  = the lowest-id pending/sending delivery of each (incident, sink) (DISTINCT ON
            over the small partial index deliveries_queue), as of the statement's snapshot
    claim = the due heads, oldest first, locked with FOR UPDATE SKIP LOCKED, LIMIT n,
            then set to 'sending' with a lease, in the same statement

A head another worker is claiming right now is locked: SKIP LOCKED passes over it
instead of waiting. A head another worker claimed (or finished) after our snapshot is
re-checked by PostgreSQL on the newest row version when locked (READ COMMITTED), and the
due condition no longer holds, so it is not claimed twice. An incident's next delivery
only becomes a head once the previous one is delivered or dead, which keeps per-incident
order: its deliveries get increasing ids in commit order, because every transaction
that adds some holds the incident's row lock.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

import psycopg

from engine.store import codec
from engine.store.base import Delivery, NewDelivery
from engine.store.codec import epoch

# Row decoding is backend-neutral (same columns, same codec): shared with SQLite.
from engine.store.sqlite_outbox import COLUMNS, STATUSES, finish_assignment
from engine.store.sqlite_outbox import _delivery as decode

CLAIM_SQL = f"""
WITH head AS (
    SELECT DISTINCT ON (incident_id, sink) id FROM deliveries
    WHERE status IN ('pending', 'sending')
    ORDER BY incident_id, sink, id
), claimable AS (
    SELECT d.id FROM deliveries AS d
    WHERE d.id IN (SELECT id FROM head)
      AND ((d.status = 'pending' AND d.next_attempt_at <= %(now)s)
           OR (d.status = 'sending' AND d.lease_until <= %(now)s))
    ORDER BY d.id
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
)
UPDATE deliveries SET status = 'sending', attempts = attempts + 1,
    lease_until = %(lease_until)s, worker = %(worker)s
FROM claimable WHERE deliveries.id = claimable.id
RETURNING {", ".join("deliveries." + c.strip() for c in COLUMNS.split(","))}
"""


def insert(
    conn: psycopg.Connection, incident_id: str, deliveries: Sequence[NewDelivery], t_now: float
) -> None:
    # The incident's row lock orders this against every other writer of the incident
    # (see the module docstring); the change that planned these usually holds it already.
    conn.execute("SELECT 1 FROM incidents WHERE id = %s FOR UPDATE", (incident_id,))
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO deliveries (incident_id, sink, event, payload, attempts, status,"
            " next_attempt_at, created_at) VALUES (%s, %s, %s, %s, 0, 'pending', %s, %s)",
            [
                (incident_id, d.sink, d.event, codec.dumps(d.payload), t_now, t_now)
                for d in deliveries
            ],
        )


def claim(
    conn: psycopg.Connection, now: datetime, limit: int, lease: timedelta, worker: str
) -> list[Delivery]:
    t_now = epoch(now)
    rows = conn.execute(
        CLAIM_SQL,
        {
            "now": t_now,
            "limit": limit,
            "lease_until": t_now + lease.total_seconds(),
            "worker": worker,
        },
    ).fetchall()
    return sorted((decode(r) for r in rows), key=lambda d: d.id)


def finish(
    conn: psycopg.Connection,
    delivery_id: int,
    ok: bool,
    now: datetime,
    error: str | None,
    retry_at: datetime | None,
) -> None:
    row = conn.execute(
        "SELECT status FROM deliveries WHERE id = %s FOR UPDATE", (delivery_id,)
    ).fetchone()
    if row is None:
        raise KeyError(delivery_id)
    if row[0] in ("delivered", "dead"):
        return  # a late finish (its lease had expired) must not resurrect a settled delivery
    sets, args = finish_assignment(ok, now, error, retry_at, "%s")
    conn.execute(
        f"UPDATE deliveries SET {sets}, lease_until = NULL, worker = NULL WHERE id = %s",
        (*args, delivery_id),
    )


def dead(conn: psycopg.Connection, limit: int) -> list[Delivery]:
    sql = f"SELECT {COLUMNS} FROM deliveries WHERE status = 'dead' ORDER BY id DESC LIMIT %s"
    return [decode(r) for r in conn.execute(sql, (limit,))]


def counts(conn: psycopg.Connection) -> dict[str, int]:
    by_status: dict[str, int] = dict(
        conn.execute("SELECT status, COUNT(*) FROM deliveries GROUP BY status")
    )
    return {status: by_status.get(status, 0) for status in STATUSES}
