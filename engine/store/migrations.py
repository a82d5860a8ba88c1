"""Schema migrations: named, versioned, recorded in `schema_migrations`, applied on open.

A migration is `(name, sql)`; its version is its 1-based position in the list. Every
backend keeps its own SQL list (SQLITE_MIGRATIONS, POSTGRES_MIGRATIONS, both here) but
uses the same names in the same order, listed in MIGRATION_NAMES, so one database's
`schema_migrations` reads the same whatever the backend, and `check_migrations` catches
a backend that forgot one. Migrations are append-only: never edit or reorder a shipped
one, add a new one instead.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Sequence
from typing import Any

Migration = tuple[str, str]

MIGRATION_NAMES: tuple[str, ...] = (
    "0001_context",
    "0002_incidents_alerts",
    "0003_outbox",
    "0004_outbox_queue_per_sink",
)

_CONTEXT_TABLE = """
CREATE TABLE {kind} (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    service TEXT NOT NULL,
    ts REAL NOT NULL,
    {columns},
    attributes TEXT
);
CREATE INDEX {kind}_service_ts ON {kind} (service, ts);
CREATE INDEX {kind}_ts ON {kind} (ts);
"""

SQLITE_MIGRATIONS: list[Migration] = [
    (
        "0001_context",
        # AUTOINCREMENT: ids are never reused after a prune, so a cited record path
        # (context/logs/42) can never come to mean a different record.
        _CONTEXT_TABLE.format(kind="deploys", columns='"commit" TEXT, author TEXT')
        + _CONTEXT_TABLE.format(kind="logs", columns="level TEXT, message TEXT")
        + _CONTEXT_TABLE.format(kind="traces", columns="trace_id TEXT, duration_ms REAL"),
    ),
    (
        "0002_incidents_alerts",
        """
CREATE TABLE incidents (
    id TEXT PRIMARY KEY,
    fingerprint TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('open', 'resolved')),
    title TEXT NOT NULL,
    service TEXT,
    alertname TEXT,
    team TEXT,
    severity INTEGER NOT NULL,
    opened_at REAL NOT NULL,
    last_seen REAL NOT NULL,
    resolved_at REAL,
    repeat_count INTEGER NOT NULL DEFAULT 0,
    attached_count INTEGER NOT NULL DEFAULT 0,
    last_notified_at REAL,
    alert TEXT NOT NULL,
    findings TEXT NOT NULL,
    resolution TEXT,
    narration TEXT
);
-- The guarantee behind "at most one open incident per fingerprint": even a buggy
-- caller or a second process cannot insert a second one.
CREATE UNIQUE INDEX incidents_one_open ON incidents (fingerprint) WHERE status = 'open';
-- Lists are "newest first" by (opened_at, id): each filter's index ends with both.
CREATE INDEX incidents_opened_at ON incidents (opened_at, id);
CREATE INDEX incidents_status_opened ON incidents (status, opened_at, id);
CREATE INDEX incidents_service_opened ON incidents (service, opened_at, id);
CREATE INDEX incidents_team_opened ON incidents (team, opened_at, id);

CREATE TABLE alerts (
    fingerprint TEXT NOT NULL,
    starts_at REAL NOT NULL,
    incident_id TEXT NOT NULL REFERENCES incidents (id),
    status TEXT NOT NULL CHECK (status IN ('firing', 'resolved')),
    ends_at REAL,
    received_at REAL NOT NULL,
    PRIMARY KEY (fingerprint, starts_at)
);
CREATE INDEX alerts_incident_status ON alerts (incident_id, status);
""",
    ),
    (
        "0003_outbox",
        """
CREATE TABLE deliveries (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    incident_id TEXT NOT NULL REFERENCES incidents (id),
    sink TEXT NOT NULL,
    event TEXT NOT NULL,
    payload TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    status TEXT NOT NULL CHECK (status IN ('pending', 'sending', 'delivered', 'dead')),
    next_attempt_at REAL NOT NULL,
    lease_until REAL,
    worker TEXT,
    last_error TEXT,
    created_at REAL NOT NULL,
    delivered_at REAL
);
-- Small by construction (delivered rows drop out), and exactly what claiming reads:
-- the head of each incident's queue.
CREATE INDEX deliveries_undelivered ON deliveries (incident_id, id)
    WHERE status IN ('pending', 'sending');
CREATE INDEX deliveries_status ON deliveries (status, id);
""",
    ),
    (
        # One queue per (incident, sink): a sink that keeps failing must not hold back
        # the same incident's messages to the other sinks.
        "0004_outbox_queue_per_sink",
        """
CREATE INDEX deliveries_queue ON deliveries (incident_id, sink, id)
    WHERE status IN ('pending', 'sending');
DROP INDEX deliveries_undelivered;
""",
    ),
]


class MigrationError(RuntimeError):
    pass


def check_migrations(migrations: Sequence[Migration]) -> None:
    """A backend's list must carry exactly MIGRATION_NAMES, in order."""
    names = tuple(name for name, _ in migrations)
    if names != MIGRATION_NAMES:
        raise MigrationError(f"migration names {names} do not match {MIGRATION_NAMES}")


def split_sql(sql: str) -> list[str]:
    """Split a script into statements (sqlite3 runs one per execute; executescript would
    COMMIT first and break the surrounding transaction)."""
    statements, current = [], ""
    for piece in sql.split(";"):
        current += piece + ";"
        if sqlite3.complete_statement(current):
            if current.strip(" \n\t;"):
                statements.append(current.strip())
            current = ""
    if current.strip(" \n\t;"):
        raise MigrationError(f"incomplete SQL statement: {current.strip()[:80]!r}")
    return statements


def apply_sqlite(
    conn: sqlite3.Connection, migrations: Sequence[Migration] = SQLITE_MIGRATIONS
) -> list[str]:
    """Apply the missing migrations in one transaction; return the names applied.

    Idempotent: what `schema_migrations` records is skipped. BEGIN IMMEDIATE makes two
    processes opening a fresh file at once take turns instead of both creating tables.
    `conn` must be in autocommit mode (isolation_level=None).
    """
    check_migrations(migrations)
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, applied_at REAL NOT NULL)"
        )
        done = dict(conn.execute("SELECT version, name FROM schema_migrations").fetchall())
        for version, name in done.items():
            if version > len(migrations):
                raise MigrationError(
                    f"database has migration {version} ({name}), newer than this code knows"
                )
            if migrations[version - 1][0] != name:
                raise MigrationError(
                    f"database migration {version} is {name!r}, code expects "
                    f"{migrations[version - 1][0]!r}"
                )
        applied = []
        for version, (name, sql) in enumerate(migrations, start=1):
            if version in done:
                continue
            for statement in split_sql(sql):
                conn.execute(statement)
            conn.execute(
                "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
                (version, name, time.time()),
            )
            applied.append(name)
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return applied


# --- PostgreSQL ---------------------------------------------------------------------
#
# Same tables, columns and index names as SQLite, in PostgreSQL's dialect:
# - timestamps are epoch seconds in `double precision` (codec.epoch / from_epoch), exactly
#   as in SQLite, so one codec serves both backends and window comparisons are identical;
# - ids are identity columns (backed by a sequence: never reused after a prune);
# - text ids compare with COLLATE "C" (byte order, as SQLite), so "newest first, then id"
#   ties order the same on both backends whatever the database's locale;
# - the context indexes end with `id`: ORDER BY ts DESC, id DESC is then a backward index
#   scan with no sort step (SQLite's indexes end with the rowid implicitly);
# - alerts.incident_id is a DEFERRABLE foreign key: record_firing claims the
#   (fingerprint, starts_at) key first (INSERT ... ON CONFLICT DO NOTHING) and only then
#   knows which incident the alert belongs to.

_PG_CONTEXT_TABLE = """
CREATE TABLE {kind} (
    id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    service TEXT NOT NULL,
    ts DOUBLE PRECISION NOT NULL,
    {columns},
    attributes TEXT
);
CREATE INDEX {kind}_service_ts ON {kind} (service, ts, id);
CREATE INDEX {kind}_ts ON {kind} (ts, id);
"""

POSTGRES_MIGRATIONS: list[Migration] = [
    (
        "0001_context",
        _PG_CONTEXT_TABLE.format(kind="deploys", columns='"commit" TEXT, author TEXT')
        + _PG_CONTEXT_TABLE.format(kind="logs", columns="level TEXT, message TEXT")
        + _PG_CONTEXT_TABLE.format(
            kind="traces", columns="trace_id TEXT, duration_ms DOUBLE PRECISION"
        ),
    ),
    (
        "0002_incidents_alerts",
        """
CREATE TABLE incidents (
    id TEXT COLLATE "C" PRIMARY KEY,
    fingerprint TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('open', 'resolved')),
    title TEXT NOT NULL,
    service TEXT,
    alertname TEXT,
    team TEXT,
    severity INTEGER NOT NULL,
    opened_at DOUBLE PRECISION NOT NULL,
    last_seen DOUBLE PRECISION NOT NULL,
    resolved_at DOUBLE PRECISION,
    repeat_count INTEGER NOT NULL DEFAULT 0,
    attached_count INTEGER NOT NULL DEFAULT 0,
    last_notified_at DOUBLE PRECISION,
    alert TEXT NOT NULL,
    findings TEXT NOT NULL,
    resolution TEXT,
    narration TEXT
);
-- At most one open incident per fingerprint, across every replica: the arbiter of
-- record_firing's INSERT ... ON CONFLICT (fingerprint) WHERE status = 'open'.
CREATE UNIQUE INDEX incidents_one_open ON incidents (fingerprint) WHERE status = 'open';
CREATE INDEX incidents_opened_at ON incidents (opened_at, id);
CREATE INDEX incidents_status_opened ON incidents (status, opened_at, id);
CREATE INDEX incidents_service_opened ON incidents (service, opened_at, id);
CREATE INDEX incidents_team_opened ON incidents (team, opened_at, id);

CREATE TABLE alerts (
    fingerprint TEXT NOT NULL,
    starts_at DOUBLE PRECISION NOT NULL,
    incident_id TEXT COLLATE "C" NOT NULL
        REFERENCES incidents (id) DEFERRABLE INITIALLY DEFERRED,
    status TEXT NOT NULL CHECK (status IN ('firing', 'resolved')),
    ends_at DOUBLE PRECISION,
    received_at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (fingerprint, starts_at)
);
CREATE INDEX alerts_incident_status ON alerts (incident_id, status);
""",
    ),
    (
        "0003_outbox",
        """
CREATE TABLE deliveries (
    id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    incident_id TEXT COLLATE "C" NOT NULL REFERENCES incidents (id),
    sink TEXT NOT NULL,
    event TEXT NOT NULL,
    payload TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    status TEXT NOT NULL CHECK (status IN ('pending', 'sending', 'delivered', 'dead')),
    next_attempt_at DOUBLE PRECISION NOT NULL,
    lease_until DOUBLE PRECISION,
    worker TEXT,
    last_error TEXT,
    created_at DOUBLE PRECISION NOT NULL,
    delivered_at DOUBLE PRECISION
);
-- The head of each incident's queue, which is all claiming reads (small: delivered and
-- dead rows drop out).
CREATE INDEX deliveries_undelivered ON deliveries (incident_id, id)
    WHERE status IN ('pending', 'sending');
CREATE INDEX deliveries_status ON deliveries (status, id);
""",
    ),
    (
        # One queue per (incident, sink): a sink that keeps failing must not hold back
        # the same incident's messages to the other sinks.
        "0004_outbox_queue_per_sink",
        """
CREATE INDEX deliveries_queue ON deliveries (incident_id, sink, id)
    WHERE status IN ('pending', 'sending');
DROP INDEX deliveries_undelivered;
""",
    ),
]

# pg_advisory_xact_lock(PG_LOCK_CLASS, hashtext(schema)): one migration at a time per
# schema, whichever replica gets there first; the others wait, then find nothing to do.
PG_LOCK_CLASS = 0x1D_C1D  # "incident-pilot", any constant unlikely to clash


def apply_postgres(
    conn: Any, schema: str | None, migrations: Sequence[Migration] = POSTGRES_MIGRATIONS
) -> list[str]:
    """Apply the missing migrations in one transaction; return the names applied.

    `conn` is a psycopg 3 connection in autocommit mode whose search_path starts with
    `schema` (None: the database's default, usually public). PostgreSQL's DDL is
    transactional, so a failure leaves nothing half-applied; the advisory lock, held to
    the end of the transaction, makes replicas starting at the same moment take turns.
    """
    check_migrations(migrations)
    with conn.transaction():
        conn.execute(
            "SELECT pg_advisory_xact_lock(%s, hashtext(%s))", (PG_LOCK_CLASS, schema or "")
        )
        if schema is not None:
            # Identifier checked by the caller; quoted so case is kept.
            conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
        conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE,"
            " applied_at DOUBLE PRECISION NOT NULL)"
        )
        done = dict(conn.execute("SELECT version, name FROM schema_migrations").fetchall())
        for version, name in done.items():
            if version > len(migrations):
                raise MigrationError(
                    f"database has migration {version} ({name}), newer than this code knows"
                )
            if migrations[version - 1][0] != name:
                raise MigrationError(
                    f"database migration {version} is {name!r}, code expects "
                    f"{migrations[version - 1][0]!r}"
                )
        applied = []
        for version, (name, sql) in enumerate(migrations, start=1):
            if version in done:
                continue
            conn.execute(sql)  # no parameters: psycopg sends the whole script at once
            conn.execute(
                "INSERT INTO schema_migrations (version, name, applied_at) VALUES (%s, %s, %s)",
                (version, name, time.time()),
            )
            applied.append(name)
    return applied
