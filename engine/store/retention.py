"""Retention: what the pruner deletes, in small transactions that yield between them.

Each chunk is its own short write transaction, sized from the previous one's speed to
take a few milliseconds, and after each one the pruner waits as long as the chunk took. Writers queued behind the write lock (SQLite) or on the rows
(PostgreSQL) get in between chunks, so a backlog prune of a million rows takes at most
about half of the write time and an alert never waits for more than one chunk.

What goes, and when:
- context records (deploys, logs, traces) older than `--retention`;
- resolved incidents whose resolution is older than `--incident-retention`, with their
  alerts, outbox rows and search terms; never an incident with a delivery still pending
  or sending (its resolve may not have reached the pager yet);
- delivered outbox rows older than `--incident-retention`, whatever their incident;
- stored pull answers older than `--retention` (they are context fetched at alert time).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from engine.model import CONTEXT_KINDS
from engine.store import tallies
from engine.store.dialect import Conn, Dialect

INCIDENT_CHUNK = 50  # incidents in the first chunk (each also takes its alerts and deliveries)

TARGET_SECONDS = 0.004  # aim for chunks this long: about one alert's write, no more
MIN_CHUNK, MAX_CHUNK = 20, 5_000
CHUNK = 200  # rows in the first chunk; later ones are sized to take TARGET_SECONDS
MIN_PAUSE = 0.001


def paced(
    step: Callable[[int], int],
    *,
    first: int | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    """Run `step(limit)` (delete at most `limit` rows in one transaction; return how many)
    until it deletes fewer than asked. Each chunk is sized from the last one's speed to
    take about TARGET_SECONDS, and after each the pruner sleeps as long as it took. The
    total deleted."""
    total, limit = 0, first or CHUNK
    while True:
        started = time.perf_counter()
        n = step(limit)
        took = time.perf_counter() - started
        total += n
        if n < limit:
            return total
        per_row = took / max(n, 1)
        wanted = TARGET_SECONDS / per_row if per_row > 0 else MAX_CHUNK
        limit = int(min(MAX_CHUNK, max(MIN_CHUNK, (limit + wanted) / 2)))
        sleep(max(MIN_PAUSE, took))


def prune_context(dialect: Dialect, cutoff: float) -> int:
    """Context records with ts < cutoff (epoch seconds), every kind."""
    total = 0
    for kind in CONTEXT_KINDS:
        total += _prune_by(dialect, kind, "ts", cutoff)
    return total


def prune_pulls(dialect: Dialect, cutoff: float) -> int:
    return _prune_by(dialect, "pulls", "created_at", cutoff)


def prune_delivered(dialect: Dialect, cutoff: float) -> int:
    """Delivered outbox rows delivered before cutoff. Oldest ids first: ids grow with
    time, so the scan of the (status, id) index stops early."""
    sql = (
        "DELETE FROM deliveries WHERE id IN (SELECT id FROM deliveries"
        " WHERE status = 'delivered' AND delivered_at < ?"
        f" ORDER BY id LIMIT ?{dialect.skip_locked})"
    )
    return paced(lambda n: dialect.write(lambda c: c.execute(sql, (cutoff, n)).rowcount))


def prune_resolved(dialect: Dialect, cutoff: float) -> int:
    """Resolved incidents resolved before cutoff, with their alerts and deliveries; an
    incident with a delivery still pending or sending is kept. The incidents deleted."""
    pick = (
        "SELECT i.id FROM incidents i WHERE i.status = 'resolved' AND i.resolved_at < ?"
        " AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.incident_id = i.id"
        " AND d.status IN ('pending', 'sending'))"
        f" ORDER BY i.resolved_at LIMIT ?{dialect.skip_locked}"
    )

    def chunk(conn: Conn, limit: int) -> int:
        ids = [row[0] for row in conn.execute(pick, (cutoff, limit))]
        if not ids:
            return 0
        for table in ("deliveries", "alerts", "incident_terms"):
            where, args = dialect.in_list("incident_id", ids)
            conn.execute(f"DELETE FROM {table} WHERE {where}", args)
        where, args = dialect.in_list("id", ids)
        return conn.execute(f"DELETE FROM incidents WHERE {where}", args).rowcount

    return paced(lambda n: dialect.write(lambda c: chunk(c, n)), first=INCIDENT_CHUNK)


def _prune_by(dialect: Dialect, table: str, column: str, cutoff: float) -> int:
    sql = (
        f"DELETE FROM {table} WHERE id IN (SELECT id FROM {table} WHERE {column} < ?"
        f" ORDER BY {column} LIMIT ?{dialect.skip_locked})"
    )
    counted = f"context.{table}" if table in CONTEXT_KINDS else None

    def chunk(conn: Conn, limit: int) -> int:
        n = int(conn.execute(sql, (cutoff, limit)).rowcount)
        if counted:
            tallies.add(conn, dialect.name, counted, -n)
        return n

    return paced(lambda n: dialect.write(lambda c: chunk(c, n)))
