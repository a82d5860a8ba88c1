"""The PostgreSQL dialect: several replicas share one database (or one schema of it).

URL: any libpq URL, with our `schema=` and `pool_size=` parameters (postgres_url.py).

Concurrency model. Every transaction takes a connection from a psycopg_pool.ConnectionPool
and runs at READ COMMITTED; the atomicity lives in the database, never in this process,
so any number of replicas can write at once:
- alert dedup: the (fingerprint, starts_at) primary key of `alerts` and the partial
  unique index of open incidents per fingerprint, both through INSERT ... ON CONFLICT
  (engine.store.incidents);
- every change to an incident locks its row (`for_update`), in one order;
- the outbox: claims with SELECT ... FOR UPDATE SKIP LOCKED, heads of each (incident,
  sink) queue only (CLAIM_SQL below);
- pruning: deletes in chunks that skip rows another replica is deleting (`skip_locked`).
A transaction that fails on a serialization failure, a deadlock or a unique violation
(a race the SQL did not absorb) is retried from the start, up to RETRIES times with a
short jittered backoff.

Durability: a write returns after COMMIT, i.e. after PostgreSQL made it durable
(synchronous_commit as configured on the server; the default `on` survives a crash).
"""

from __future__ import annotations

import logging
import os
import random
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from functools import lru_cache
from typing import Any, TypeVar

import psycopg
from psycopg import errors
from psycopg_pool import ConnectionPool, PoolTimeout

from engine.store import codec
from engine.store.dialect import Conn, Cursor
from engine.store.errors import StoreUnavailable
from engine.store.incidents import RaceError
from engine.store.outbox import COLUMNS as DELIVERY_COLUMNS
from engine.store.postgres_url import parse_url, pool_size_from, redact
from engine.store.sql import SQLStore

__all__ = ["PostgresDialect", "PostgresStore", "parse_url", "redact"]

log = logging.getLogger("incident_pilot.store")

POOL_SIZE_ENV = "INCIDENT_PILOT_DB_POOL_SIZE"
DEFAULT_POOL_SIZE = 10
# Seconds a call waits for a free connection before failing: the first call to meet a
# database that went away waits this long (the pool retries), then answers 503 well
# within the request timeout.
POOL_TIMEOUT = 10.0
# While the database is known to be unreachable, each call first tries it directly, for
# at most this long: refused at once while it is gone (503 without waiting on the pool);
# when it answers, a fresh pool replaces the old one, which may be waiting out a
# reconnect backoff of minutes.
DOWN_CONNECT_TIMEOUT = 2
CHECK_AFTER_IDLE = 2.0  # seconds a returned connection is trusted without a check round trip
RETRIES = 8  # attempts per transaction on a retryable error
COPY_MIN = 8  # from this many records of one kind, add_context uses COPY (else INSERTs)
RETRYABLE = (
    errors.SerializationFailure,
    errors.DeadlockDetected,
    errors.UniqueViolation,
    RaceError,
)
_PUBLIC = frozenset({"public", "pg_catalog", "information_schema"})
# pg_advisory_xact_lock(PG_LOCK_CLASS, hashtext(schema)): one migration at a time per
# schema, whichever replica gets there first; the others wait, then find nothing to do.
PG_LOCK_CLASS = 0x1D_C1D  # "incident-pilot", any constant unlikely to clash
KEY_LOCK_CLASS = PG_LOCK_CLASS + 1  # lock_keys: duplicate groups (engine.store.incidents)

T = TypeVar("T")

_CTX_COLS = {kind: ", ".join(codec.column_names(kind)) for kind in codec.TYPED_FIELDS}
_CTX_COPY = {
    kind: f"COPY {kind} (id, service, ts, {cols}, attributes) FROM STDIN (FORMAT BINARY)"
    for kind, cols in _CTX_COLS.items()
}
# Binary COPY needs the exact column types (text for JSON / strings, float8 for numbers).
_PG_TYPES = {str: "text", float: "float8"}
_CTX_TYPES = {
    kind: ["int8", "text", "float8", *(_PG_TYPES[t] for _, t in typed), "text"]
    for kind, typed in codec.TYPED_FIELDS.items()
}
_CTX_INSERT = {
    kind: f"INSERT INTO {kind} (id, service, ts, {cols}, attributes) "
    f"VALUES (%s, %s, %s, {', '.join(['%s'] * len(codec.TYPED_FIELDS[kind]))}, %s)"
    for kind, cols in _CTX_COLS.items()
}

# The heads (DISTINCT ON over the small partial index deliveries_queue) as of the
# statement's snapshot; the due ones, oldest first, locked with SKIP LOCKED, then set to
# 'sending' in the same statement. A head another worker is claiming right now is locked
# and passed over; one claimed (or finished) after our snapshot is re-checked on its
# newest version when locked (READ COMMITTED), and is no longer due.
CLAIM_SQL = f"""
WITH head AS (
    SELECT DISTINCT ON (incident_id, sink) id FROM deliveries
    WHERE status IN ('pending', 'sending')
    ORDER BY incident_id, sink, id
), claimable AS (
    SELECT d.id FROM deliveries AS d
    WHERE d.id IN (SELECT id FROM head)
      AND ((d.status = 'pending' AND d.next_attempt_at <= ?)
           OR (d.status = 'sending' AND d.lease_until <= ?))
    ORDER BY d.id
    LIMIT ?
    FOR UPDATE SKIP LOCKED
)
UPDATE deliveries SET status = 'sending', attempts = attempts + 1,
    lease_until = ?, worker = ?
FROM claimable WHERE deliveries.id = claimable.id
RETURNING {", ".join("deliveries." + c.strip() for c in DELIVERY_COLUMNS.split(","))}
"""


def pg_unavailable(exc: BaseException) -> StoreUnavailable | None:
    """The StoreUnavailable for a psycopg error a later retry may get past (the database
    gone, full, read-only, a lock or statement timeout), else None."""
    if isinstance(exc, PoolTimeout):
        return StoreUnavailable("database unreachable (no connection in time)", str(exc))
    if isinstance(exc, errors.DiskFull):
        return StoreUnavailable("disk full", str(exc))
    if isinstance(exc, errors.ReadOnlySqlTransaction):
        return StoreUnavailable("read-only", str(exc))
    if isinstance(exc, errors.LockNotAvailable | errors.QueryCanceled):
        return StoreUnavailable("lock or statement timeout", str(exc))
    if isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError):
        return StoreUnavailable("database unreachable", str(exc))
    return None


@lru_cache(maxsize=512)
def _format_style(sql: str) -> str:
    """`?` placeholders as psycopg's `%s` (the store's SQL has no `%` or `?` literals)."""
    assert "%" not in sql, sql
    return sql.replace("?", "%s")


class PgConn:
    """A psycopg connection that takes the store's `?` placeholders."""

    def __init__(self, conn: psycopg.Connection) -> None:
        self.raw = conn

    def execute(self, sql: str, params: Sequence[Any] = (), /) -> Cursor:
        if not params:  # no parameters: a script of several statements goes as one query
            return self.raw.execute(sql)  # type: ignore[return-value]
        return self.raw.execute(_format_style(sql), params)  # type: ignore[return-value]

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]], /) -> None:
        with self.raw.cursor() as cur:
            cur.executemany(_format_style(sql), rows)


class PostgresDialect:
    name = "postgresql"
    single_writer = False
    unlimited: int | None = None
    for_update = " FOR UPDATE"
    skip_locked = " FOR UPDATE SKIP LOCKED"

    def __init__(self, url: str, *, pool_size: int | None = None) -> None:
        self.url = url
        self._conninfo, self.schema, url_pool_size = parse_url(url)
        if pool_size is None:
            pool_size = url_pool_size
        if pool_size is None:
            env = os.environ.get(POOL_SIZE_ENV, "").strip()
            pool_size = pool_size_from(env, POOL_SIZE_ENV) if env else DEFAULT_POOL_SIZE
        self.pool_size = pool_size
        self._local = threading.local()  # .conn: this thread's transaction, if any
        self._closed = False
        self._down = False  # the last call could not reach the database
        # Connect once directly: a wrong URL fails here, plainly, not as a pool timeout.
        try:
            psycopg.connect(self._conninfo, autocommit=True).close()
        except psycopg.OperationalError as exc:
            raise ValueError(f"cannot connect to {redact(url)}: {exc}".strip()) from exc
        self._pool_lock = threading.Lock()
        self._last_used: weakref.WeakKeyDictionary[psycopg.Connection, float] = (
            weakref.WeakKeyDictionary()
        )
        self.pool = self._open_pool()
        self._sequences: dict[str, str] = {}

    # --- transactions -------------------------------------------------------------
    def _open_pool(self) -> ConnectionPool:
        return ConnectionPool(
            self._conninfo,
            min_size=1,
            max_size=self.pool_size,
            kwargs={"autocommit": True},
            check=self._check,
            reset=self._returned,
            timeout=POOL_TIMEOUT,
            name="incident-pilot",
            open=True,
        )

    def _reachable(self) -> psycopg.OperationalError | None:
        """None when a direct connection to the database works, else why not."""
        try:
            psycopg.connect(
                self._conninfo, autocommit=True, connect_timeout=DOWN_CONNECT_TIMEOUT
            ).close()
        except psycopg.OperationalError as exc:
            return exc
        return None

    def _returned(self, conn: psycopg.Connection) -> None:
        self._last_used[conn] = time.monotonic()

    def _check(self, conn: psycopg.Connection) -> None:
        """Before a pooled connection is handed out: a round trip to see it still works,
        unless it was in use moments ago (an alert takes ~7 connections from the pool;
        checking each cost a round trip apiece). A connection that died within that
        moment fails its first statement and is dropped by the pool; the call answers
        503 as for any lost connection."""
        last = self._last_used.get(conn)
        if last is not None and time.monotonic() - last < CHECK_AFTER_IDLE:
            return
        try:
            ConnectionPool.check_connection(conn)
        except Exception:
            # One stale connection, or the database gone? Only the latter sends the calls
            # after this one to _recover.
            if self._reachable() is not None:
                self._down = True
            raise

    def _unavailable(self, exc: psycopg.Error) -> StoreUnavailable | None:
        """The StoreUnavailable for `exc` (marking the database down when it cannot be
        reached directly either), or None."""
        unavailable = pg_unavailable(exc)
        lost = unavailable is not None and unavailable.reason.startswith("database unreachable")
        if lost and self._reachable() is not None:
            self._down = True
        return unavailable

    def _recover(self) -> None:
        """While down: StoreUnavailable at once if the database still refuses a direct
        connection; when it answers, a fresh pool (the old one's connections are all
        dead, and its reconnect attempts may be in a backoff of minutes)."""
        exc = self._reachable()
        if exc is not None:
            raise StoreUnavailable("database unreachable", str(exc).strip()) from exc
        with self._pool_lock:
            if not self._down or self._closed:
                return
            old, self.pool = self.pool, self._open_pool()
            self._down = False
        log.warning("the database answers again: new connection pool")
        old.close(timeout=1.0)

    @contextmanager
    def _transaction(self, isolation: str | None = None) -> Iterator[PgConn]:
        if self._closed:
            raise RuntimeError("store is closed")
        if self._down:
            self._recover()
        with self.pool.connection() as raw, raw.transaction():
            if isolation:
                raw.execute(f"SET TRANSACTION ISOLATION LEVEL {isolation}")
            conn = PgConn(raw)
            self._local.conn = conn
            try:
                yield conn
            finally:
                self._local.conn = None

    def write(self, work: Callable[[Conn], T]) -> T:
        current = getattr(self._local, "conn", None)
        if current is not None:
            return work(current)  # nested (a plan() reading or writing): same transaction
        for attempt in range(1, RETRIES + 1):
            try:
                with self._transaction() as conn:
                    return work(conn)
            except RETRYABLE as exc:
                if attempt == RETRIES:
                    raise
                log.debug("retrying a transaction (attempt %d): %s", attempt, exc)
                time.sleep(random.uniform(0, 0.002 * 2**attempt))
            except psycopg.Error as exc:
                unavailable = self._unavailable(exc)
                if unavailable is None:
                    raise
                raise unavailable from exc
        raise AssertionError("unreachable")

    @contextmanager
    def read(self, *, snapshot: bool = False) -> Iterator[Conn]:
        current = getattr(self._local, "conn", None)
        if current is not None:
            yield current  # inside a write: read what it changed
            return
        try:
            if not snapshot:
                if self._closed:
                    raise RuntimeError("store is closed")
                if self._down:
                    self._recover()
                with self.pool.connection() as raw:
                    yield PgConn(raw)
            else:
                with self._transaction("REPEATABLE READ READ ONLY") as conn:
                    yield conn
        except psycopg.Error as exc:
            unavailable = self._unavailable(exc)
            if unavailable is None:
                raise
            raise unavailable from exc

    # --- what the SQL says differently -------------------------------------------
    def in_list(self, column: str, values: Sequence[Any]) -> tuple[str, list[Any]]:
        return f"{column} = ANY(?)", [list(values)]

    def lock_keys(self, conn: Conn, keys: Sequence[str]) -> None:
        for key in keys:  # one statement each: the order of taking them is the order given
            conn.execute("SELECT pg_advisory_xact_lock(?, hashtext(?))", (KEY_LOCK_CLASS, key))

    def defer_foreign_keys(self, conn: Conn) -> None:
        pass  # alerts.incident_id is DEFERRABLE INITIALLY DEFERRED (migrations.py)

    def insert_context(self, conn: Conn, kind: str, rows: Sequence[list[Any]]) -> list[int]:
        """Ids come from the kind's sequence (one round trip for the batch), rows go in
        with COPY: about as fast as PostgreSQL ingests."""
        assert isinstance(conn, PgConn)
        sequence = self._sequences.get(kind)
        if sequence is None:
            sequence = conn.execute("SELECT pg_get_serial_sequence(?, 'id')", (kind,)).fetchone()[0]
            self._sequences[kind] = sequence
        ids = sorted(
            r[0]
            for r in conn.execute(
                "SELECT nextval(?::regclass) FROM generate_series(1, ?)", (sequence, len(rows))
            )
        )
        with conn.raw.cursor() as cur:
            if len(rows) < COPY_MIN:
                cur.executemany(
                    _CTX_INSERT[kind], [[i, *row] for i, row in zip(ids, rows, strict=True)]
                )
            else:
                with cur.copy(_CTX_COPY[kind]) as copy:
                    copy.set_types(_CTX_TYPES[kind])
                    for rid, row in zip(ids, rows, strict=True):
                        copy.write_row([rid, *row])
        return ids

    def claim_deliveries(
        self, conn: Conn, t_now: float, limit: int, lease_until: float, worker: str
    ) -> list[Any]:
        return conn.execute(CLAIM_SQL, (t_now, t_now, limit, lease_until, worker)).fetchall()

    @contextmanager
    def migration(self) -> Iterator[Conn]:
        # The advisory lock, held to the end of the transaction, makes replicas starting
        # at the same moment take turns; PostgreSQL's DDL is transactional.
        with self._transaction() as conn:
            conn.execute(
                "SELECT pg_advisory_xact_lock(?, hashtext(?))", (PG_LOCK_CLASS, self.schema or "")
            )
            if self.schema is not None:
                # Identifier checked by parse_url; quoted so case is kept.
                conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{self.schema}"')
            yield conn

    def run_script(self, conn: Conn, sql: str) -> None:
        conn.execute(sql)  # no parameters: psycopg sends the whole script at once

    def reset(self, tables: Sequence[str]) -> None:
        """Refuses a shared schema: tests only, on a store opened with ?schema=<scratch>."""
        if self.schema is None or self.schema in _PUBLIC:
            raise RuntimeError("reset_for_tests() needs a store opened with ?schema=<scratch>")
        self.write(lambda conn: conn.execute(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY"))

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.pool.close()


class PostgresStore(SQLStore):
    """`Store` on PostgreSQL. `url` as described in postgres_url.py."""

    def __init__(self, url: str, *, pool_size: int | None = None) -> None:
        dialect = PostgresDialect(url, pool_size=pool_size)
        self.url, self.schema, self.pool_size = url, dialect.schema, dialect.pool_size
        super().__init__(dialect)
