"""The PostgreSQL backend: several replicas share one database (or one schema of it).

URL. Any libpq URL (`postgresql://user:pass@host:5432/db?sslmode=require`, or
`postgres://...`). Two extra query parameters are read and removed before connecting:

- `schema=NAME`: keep the tables in schema NAME (created if missing) instead of the
  database's default (`public`); it becomes the connections' search_path. Tests give
  each run its own schema this way. `options=-csearch_path=NAME` works too, but then the
  schema must already exist.
- `pool_size=N`: connections per process (default: env INCIDENT_PILOT_DB_POOL_SIZE,
  else 10).

Concurrency model. Every method takes a connection from a psycopg_pool.ConnectionPool
and runs one transaction at READ COMMITTED; the atomicity lives in the database, never
in this process, so any number of replicas can write at once:
- alert dedup: the (fingerprint, starts_at) primary key of `alerts` and the partial
  unique index of open incidents per fingerprint, both through INSERT ... ON CONFLICT
  (postgres_incidents.py);
- the outbox: claims with SELECT ... FOR UPDATE SKIP LOCKED, heads of each (incident, sink)
  queue only (postgres_outbox.py);
- pruning: deletes in chunks that skip rows another replica is deleting.
A transaction that fails on a serialization failure, a deadlock or a unique violation
(a race the SQL did not absorb) is retried from the start, up to RETRIES times with a
short jittered backoff; plan() may therefore run more than once, and only the last
run's deliveries are stored.

Timestamps are epoch seconds in DOUBLE PRECISION columns, encoded by engine.store.codec
exactly as in SQLite; every window the code queries is indexed (see migrations.py).

Durability: a write method returns after COMMIT, i.e. after PostgreSQL made it durable
(synchronous_commit as configured on the server; the default `on` survives a crash).
"""

from __future__ import annotations

import logging
import os
import random
import re
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any, TypeVar
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

import psycopg
from psycopg import errors
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg_pool import ConnectionPool

from engine.model import CONTEXT_KINDS, Alert, ContextRecord, Incident
from engine.store import codec
from engine.store import postgres_incidents as incidents
from engine.store import postgres_outbox as outbox
from engine.store.base import (
    AlertOutcome,
    Delivery,
    IncidentDraft,
    NewContext,
    PlanDeliveries,
    planned,
)
from engine.store.codec import epoch, from_epoch
from engine.store.migrations import apply_postgres

log = logging.getLogger("incident_pilot.store")

POOL_SIZE_ENV = "INCIDENT_PILOT_DB_POOL_SIZE"
DEFAULT_POOL_SIZE = 10
POOL_TIMEOUT = 30.0  # seconds a call waits for a free connection before failing
CONNECT_TIMEOUT = 10  # seconds, when the URL does not say
RETRIES = 8  # attempts per transaction on a retryable error
PRUNE_CHUNK = 5_000  # rows per delete transaction
COPY_MIN = 8  # from this many records of one kind, add_context uses COPY (else INSERTs)

RETRYABLE = (errors.SerializationFailure, errors.DeadlockDetected, errors.UniqueViolation)
_SCHEMA = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
_PUBLIC = frozenset({"public", "pg_catalog", "information_schema"})

T = TypeVar("T")

_CTX_COLS = {
    kind: ", ".join(f'"{n}"' for n, _ in typed) for kind, typed in codec.TYPED_FIELDS.items()
}
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


def _scalar(conn: psycopg.Connection, sql: str, params: Sequence[Any] = ()) -> Any:
    """The value of a query that always returns exactly one row of one column
    (an aggregate such as COUNT(*), or a function call)."""
    row = conn.execute(sql, params).fetchone()
    assert row is not None, f"no row from {sql!r}"
    return row[0]


def context_query_sql(kind: str, *, with_service: bool) -> str:
    """The SELECT query_context runs (tests EXPLAIN it). Newest first is the backward
    order of the (service, ts, id) / (ts, id) indexes: no sort step."""
    where = "service = %s AND ts >= %s AND ts <= %s" if with_service else "ts >= %s AND ts <= %s"
    return (
        f"SELECT id, service, ts, {_CTX_COLS[kind]}, attributes FROM {kind} "
        f"WHERE {where} ORDER BY ts DESC, id DESC LIMIT %s"
    )


def parse_url(url: str) -> tuple[str, str | None, int | None]:
    """(libpq conninfo, schema or None, pool size or None) from a store URL.

    `schema` and `pool_size` are our own query parameters: removed before libpq sees the
    URL. The schema becomes the connections' search_path (through `options`, kept with
    any options the URL already has).
    """
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("postgresql", "postgres"):
        raise ValueError(f"not a PostgreSQL URL: {url!r}")
    query = parse_qsl(parts.query, keep_blank_values=True)
    schema = pool_size = None
    kept = []
    for name, value in query:
        if name == "schema":
            if not _SCHEMA.match(value):
                raise ValueError(
                    f"schema={value!r}: use letters, digits and '_' (not starting with a "
                    "digit), at most 63 characters"
                )
            schema = value
        elif name == "pool_size":
            pool_size = _pool_size(value, "pool_size in the store URL")
        else:
            kept.append((name, value))
    conninfo = urlunsplit(
        ("postgresql", parts.netloc, parts.path, urlencode(kept, quote_via=quote), parts.fragment)
    )
    params = conninfo_to_dict(conninfo)  # libpq's own parser: rejects what libpq would
    extra: dict[str, Any] = {}
    if schema is not None:
        options = params.get("options") or ""
        extra["options"] = f"{options} -c search_path={schema}".strip()
    if "connect_timeout" not in params:
        extra["connect_timeout"] = CONNECT_TIMEOUT
    if "application_name" not in params:
        extra["application_name"] = "incident-pilot"
    return make_conninfo(conninfo, **extra), schema, pool_size


def _pool_size(text: str, where: str) -> int:
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise ValueError(f"{where} must be a whole number >= 1, got {text!r}")
    return n


def redact(url: str) -> str:
    """The URL without its password, for messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


class PostgresStore:
    """`Store` on PostgreSQL. `url` as described in the module docstring."""

    single_writer = False

    def __init__(self, url: str, *, pool_size: int | None = None) -> None:
        self.url = url
        self._conninfo, self.schema, url_pool_size = parse_url(url)
        if pool_size is None:
            pool_size = url_pool_size
        if pool_size is None:
            env = os.environ.get(POOL_SIZE_ENV, "").strip()
            pool_size = _pool_size(env, POOL_SIZE_ENV) if env else DEFAULT_POOL_SIZE
        self.pool_size = pool_size
        self._local = threading.local()  # the connection of this thread's transaction
        # Connect once directly: a wrong URL fails here, plainly, not as a pool timeout.
        try:
            with psycopg.connect(self._conninfo, autocommit=True) as conn:
                apply_postgres(conn, self.schema)
                self._sequences = {
                    kind: _scalar(conn, "SELECT pg_get_serial_sequence(%s, 'id')", (kind,))
                    for kind in CONTEXT_KINDS
                }
        except psycopg.OperationalError as exc:
            raise ValueError(f"cannot connect to {redact(url)}: {exc}".strip()) from exc
        self._pool = ConnectionPool(
            self._conninfo,
            min_size=1,
            max_size=pool_size,
            kwargs={"autocommit": True},
            check=ConnectionPool.check_connection,
            timeout=POOL_TIMEOUT,
            name="incident-pilot",
            open=True,
        )
        self._closed = False

    # --- connections and transactions ---------------------------------------
    @contextmanager
    def _conn(self) -> Iterator[psycopg.Connection]:
        """This thread's transaction connection if it is inside one (a plan() reading the
        store sees the uncommitted change, as on SQLite, and needs no second connection),
        else one from the pool."""
        current = getattr(self._local, "conn", None)
        if current is not None:
            yield current
            return
        if self._closed:
            raise RuntimeError("store is closed")
        with self._pool.connection() as conn:
            yield conn

    def _transact(self, work: Callable[[psycopg.Connection], T], *, snapshot: bool = False) -> T:
        """Run work(conn) in one transaction, retried on the errors concurrency can cause.
        `snapshot`: a read-only REPEATABLE READ transaction (several consistent reads)."""
        if getattr(self._local, "conn", None) is not None:
            return work(self._local.conn)  # nested (a plan() reading): same transaction
        for attempt in range(1, RETRIES + 1):
            try:
                with self._conn() as conn, conn.transaction():
                    if snapshot:
                        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
                    self._local.conn = conn
                    try:
                        return work(conn)
                    finally:
                        self._local.conn = None
            except (*RETRYABLE, incidents.RaceError) as exc:
                if attempt == RETRIES:
                    raise
                log.debug("retrying a transaction (attempt %d): %s", attempt, exc)
                time.sleep(random.uniform(0, 0.002 * 2**attempt))
        raise AssertionError("unreachable")

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._pool.close()

    def __enter__(self) -> PostgresStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def reset_for_tests(self) -> None:
        """Empty every table and restart the ids. Tests only: refuses a shared schema."""
        if self.schema is None or self.schema in _PUBLIC:
            raise RuntimeError("reset_for_tests() needs a store opened with ?schema=<scratch>")
        with self._conn() as conn:
            conn.execute(
                f"TRUNCATE {', '.join(CONTEXT_KINDS)}, deliveries, alerts, incidents"
                " RESTART IDENTITY"
            )

    # --- context -----------------------------------------------------------
    def add_context(self, records: Sequence[NewContext]) -> list[ContextRecord]:
        """One transaction. Ids come from the kind's sequence (one round trip for the
        batch), rows go in with COPY: about as fast as PostgreSQL ingests."""
        rows: dict[str, list[list[Any]]] = {kind: [] for kind in CONTEXT_KINDS}
        order: dict[str, list[int]] = {kind: [] for kind in CONTEXT_KINDS}
        split = codec.split_fields
        for i, rec in enumerate(records):
            kind_rows = rows.get(rec.kind)
            if kind_rows is None:
                codec.check_kind(rec.kind)  # raises ValueError with the list of kinds
            assert kind_rows is not None  # rows has every valid kind; check_kind raised
            columns, attributes = split(rec.kind, rec.fields)
            kind_rows.append([0, rec.service, epoch(rec.ts), *columns, attributes])
            order[rec.kind].append(i)
        ids: list[int] = [0] * len(records)

        def work(conn: psycopg.Connection) -> None:
            for kind, kind_rows in rows.items():
                if not kind_rows:
                    continue
                new_ids = sorted(
                    r[0]
                    for r in conn.execute(
                        "SELECT nextval(%s::regclass) FROM generate_series(1, %s)",
                        (self._sequences[kind], len(kind_rows)),
                    )
                )
                for row, rid, i in zip(kind_rows, new_ids, order[kind], strict=True):
                    row[0] = rid
                    ids[i] = rid
                with conn.cursor() as cur:
                    if len(kind_rows) < COPY_MIN:
                        cur.executemany(_CTX_INSERT[kind], kind_rows)
                        continue
                    with cur.copy(_CTX_COPY[kind]) as copy:
                        copy.set_types(_CTX_TYPES[kind])
                        for row in kind_rows:
                            copy.write_row(row)

        if records:
            self._transact(work)
        return [
            ContextRecord(rec.kind, str(ids[i]), rec.service, codec.aware(rec.ts), dict(rec.fields))
            for i, rec in enumerate(records)
        ]

    def query_context(
        self,
        kind: str,
        *,
        start: datetime,
        end: datetime,
        service: str | None = None,
        limit: int | None = None,
    ) -> list[ContextRecord]:
        codec.check_kind(kind)
        args: list[Any] = [service] if service is not None else []
        args += [epoch(start), epoch(end), limit]
        sql = context_query_sql(kind, with_service=service is not None)
        with self._conn() as conn:
            rows = conn.execute(sql, args).fetchall()
        return [self._record(kind, row) for row in rows]

    @staticmethod
    def _record(kind: str, row: Sequence[Any]) -> ContextRecord:
        fields = codec.join_fields(kind, tuple(row[3:-1]), row[-1])
        return ContextRecord(kind, str(row[0]), row[1], from_epoch(row[2]), fields)

    def get_context(self, kind: str, record_id: str) -> ContextRecord | None:
        codec.check_kind(kind)
        try:
            rid = int(record_id)
        except (TypeError, ValueError):
            return None
        if not -(2**63) <= rid < 2**63:
            return None
        sql = f"SELECT id, service, ts, {_CTX_COLS[kind]}, attributes FROM {kind} WHERE id = %s"
        with self._conn() as conn:
            row = conn.execute(sql, (rid,)).fetchone()
        return None if row is None else self._record(kind, row)

    def prune_context(self, before: datetime) -> int:
        """Delete in chunks, each its own short transaction. Rows another replica's pruner
        is deleting right now are skipped (SKIP LOCKED), so two pruners share the work
        instead of queueing on each other; the count is what this call deleted."""
        cutoff, total = epoch(before), 0
        for kind in CONTEXT_KINDS:
            sql = (
                f"DELETE FROM {kind} WHERE id IN (SELECT id FROM {kind} WHERE ts < %s"
                f" ORDER BY ts LIMIT %s FOR UPDATE SKIP LOCKED)"
            )

            def delete_chunk(conn: psycopg.Connection, sql: str = sql) -> int:
                return conn.execute(sql, (cutoff, PRUNE_CHUNK)).rowcount

            while True:
                n = self._transact(delete_chunk)
                total += n
                if n < PRUNE_CHUNK:
                    break
        return total

    def context_counts(self) -> dict[str, int]:
        return self._transact(self._context_counts, snapshot=True)

    @staticmethod
    def _context_counts(conn: psycopg.Connection) -> dict[str, int]:
        return {k: _scalar(conn, f"SELECT COUNT(*) FROM {k}") for k in CONTEXT_KINDS}

    def oldest_context_ts(self) -> datetime | None:
        sql = " UNION ALL ".join(f"(SELECT MIN(ts) FROM {k})" for k in CONTEXT_KINDS)
        with self._conn() as conn:
            oldest = [row[0] for row in conn.execute(sql)]
        present = [ts for ts in oldest if ts is not None]
        return from_epoch(min(present)) if present else None

    # --- alerts and incidents ---------------------------------------------
    def _plan(
        self,
        conn: psycopg.Connection,
        plan: PlanDeliveries | None,
        outcome: AlertOutcome,
        now: datetime,
    ) -> None:
        """Run `plan` inside the caller's transaction and store its deliveries, so they
        commit (or roll back) with the change that caused them."""
        deliveries = planned(plan, outcome)
        if deliveries:
            assert outcome.incident is not None  # planned() refuses deliveries without one
            outbox.insert(conn, outcome.incident.id, deliveries, epoch(now))

    def get_incident(self, incident_id: str) -> Incident | None:
        with self._conn() as conn:
            return incidents.get(conn, incident_id)

    def find_repeat(self, fingerprint: str, starts_at: datetime) -> Incident | None:
        with self._conn() as conn:
            return incidents.find_repeat(conn, fingerprint, starts_at)

    def open_incidents(
        self,
        *,
        service: str | None = None,
        fingerprint: str | None = None,
        since: datetime | None = None,
    ) -> list[Incident]:
        filters = {"status": "open", "service": service, "fingerprint": fingerprint}
        with self._conn() as conn:
            return incidents.select(conn, filters, since, None)

    def list_incidents(
        self,
        *,
        limit: int = 50,
        status: str | None = None,
        service: str | None = None,
        team: str | None = None,
        since: datetime | None = None,
    ) -> list[Incident]:
        filters = {"status": status, "service": service, "team": team}
        with self._conn() as conn:
            return incidents.select(conn, filters, since, None if limit < 0 else limit)

    def record_firing(
        self,
        draft: IncidentDraft,
        *,
        now: datetime,
        renotify_after: timedelta,
        plan: PlanDeliveries | None = None,
    ) -> AlertOutcome:
        """As SQLiteStore.record_firing; safe across processes (postgres_incidents.py)."""

        def work(conn: psycopg.Connection) -> AlertOutcome:
            outcome = incidents.record_firing(conn, draft, now, renotify_after)
            self._plan(conn, plan, outcome, now)
            return outcome

        return self._transact(work)

    def record_resolved(
        self, alert: Alert, *, now: datetime, plan: PlanDeliveries | None = None
    ) -> AlertOutcome:
        """As SQLiteStore.record_resolved."""

        def work(conn: psycopg.Connection) -> AlertOutcome:
            outcomes = incidents.record_resolved(conn, alert, now)
            for outcome in outcomes:
                self._plan(conn, plan, outcome, now)
            return outcomes[0]

        return self._transact(work)

    def resolve_incident(
        self,
        incident_id: str,
        *,
        at: datetime,
        note: str | None = None,
        auto: bool = False,
        plan: PlanDeliveries | None = None,
    ) -> AlertOutcome:
        def work(conn: psycopg.Connection) -> AlertOutcome:
            outcome = incidents.resolve(conn, incident_id, at, note, auto)
            self._plan(conn, plan, outcome, at)
            return outcome

        return self._transact(work)

    def set_narration(self, incident_id: str, narration: dict[str, Any]) -> None:
        """Replace the narration. Raises KeyError for an unknown incident."""
        found = self._transact(lambda conn: incidents.set_narration(conn, incident_id, narration))
        if not found:
            raise KeyError(incident_id)

    def stats(self) -> dict[str, Any]:
        def work(conn: psycopg.Connection) -> dict[str, Any]:
            return {
                **incidents.counts(conn),
                "context": self._context_counts(conn),
                "outbox": outbox.counts(conn),
            }

        return self._transact(work, snapshot=True)

    # --- delivery outbox ---------------------------------------------------
    def claim_deliveries(
        self, *, now: datetime, limit: int, lease: timedelta, worker: str
    ) -> list[Delivery]:
        """Claim the due head of each (incident, sink) queue (see postgres_outbox.py): each
        delivery goes to one worker of one replica until its lease expires."""
        return self._transact(lambda conn: outbox.claim(conn, now, limit, lease, worker))

    def finish_delivery(
        self,
        delivery_id: int,
        *,
        ok: bool,
        now: datetime,
        error: str | None = None,
        retry_at: datetime | None = None,
    ) -> None:
        """As SQLiteStore.finish_delivery. Raises KeyError for an unknown id."""
        self._transact(lambda conn: outbox.finish(conn, delivery_id, ok, now, error, retry_at))

    def dead_deliveries(self, limit: int = 50) -> list[Delivery]:
        """Dead letters, newest first."""
        with self._conn() as conn:
            return outbox.dead(conn, limit)
