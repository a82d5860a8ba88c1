"""The SQLite backend: one file (WAL mode) or `:memory:` for throwaway runs.

Concurrency model. Every write goes through ONE writer connection, under a lock, inside
`BEGIN IMMEDIATE`: the lock orders this process's threads, and IMMEDIATE takes SQLite's
write lock up front so another process on the same file waits (busy_timeout) instead of
failing half way with SQLITE_BUSY on a read-then-write. Reads use one connection per
thread; WAL lets them run next to the writer and each sees the last commit. An in-memory
database exists only inside its connection, so `:memory:` uses the writer connection for
everything, under the same (re-entrant) lock.

Durability. `journal_mode=WAL` with `synchronous=NORMAL`: a commit is in the WAL file
before the write method returns, so it survives the process crashing or being killed
(kill -9). Only a power loss / OS crash can lose the last transactions (never corrupt the
file); `synchronous=FULL` would close that at the price of an fsync per commit.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any

from engine.model import CONTEXT_KINDS, Alert, ContextRecord, Incident
from engine.store import codec
from engine.store import sqlite_incidents as incidents
from engine.store import sqlite_outbox as outbox
from engine.store.base import (
    AlertOutcome,
    Delivery,
    IncidentDraft,
    NewContext,
    PlanDeliveries,
    planned,
)
from engine.store.codec import epoch, from_epoch
from engine.store.migrations import apply_sqlite

BUSY_TIMEOUT_MS = 10_000
PRUNE_CHUNK = 5_000  # rows per delete transaction: keeps the writer lock short

_CTX_COLS = {
    kind: ", ".join(f'"{n}"' for n, _ in typed) for kind, typed in codec.TYPED_FIELDS.items()
}
_CTX_INSERT = {
    kind: f"INSERT INTO {kind} (service, ts, {cols}, attributes) "
    f"VALUES (?, ?, {', '.join('?' * len(codec.TYPED_FIELDS[kind]))}, ?)"
    for kind, cols in _CTX_COLS.items()
}


class SQLiteStore:
    """`Store` on SQLite. `path` is a file (created if missing) or ":memory:"."""

    single_writer = True

    def __init__(self, path: str) -> None:
        self.path = path
        self._memory = path == ":memory:"
        self._lock = threading.RLock()  # re-entrant: a plan() may read the store
        self._local = threading.local()
        self._readers: list[sqlite3.Connection] = []
        self._closed = False
        self._writer = self._connect()
        if not self._memory:
            # Persistent in the file; every later connection gets WAL too.
            self._writer.execute("PRAGMA journal_mode = WAL")
        apply_sqlite(self._writer)

    def _connect(self) -> sqlite3.Connection:
        # isolation_level=None: we issue BEGIN/COMMIT ourselves; the sqlite3 module's
        # implicit transactions would start DEFERRED ones. check_same_thread=False: a
        # reader is used by its own thread only, but close() runs on another one.
        conn = sqlite3.connect(
            self.path,
            isolation_level=None,
            check_same_thread=False,
            timeout=BUSY_TIMEOUT_MS / 1000,
        )
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        conn.execute("PRAGMA foreign_keys = ON")
        if not self._memory:
            conn.execute("PRAGMA synchronous = NORMAL")  # durable against crashes, see above
        return conn

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            if self._closed:
                raise RuntimeError("store is closed")
            conn = self._writer
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise

    @contextmanager
    def _read(self, snapshot: bool = False) -> Iterator[sqlite3.Connection]:
        """A connection for reading; `snapshot` wraps several statements in one read
        transaction so they see the same state."""
        if self._memory:
            with self._lock:
                if self._closed:
                    raise RuntimeError("store is closed")
                yield self._writer
            return
        if self._closed:
            raise RuntimeError("store is closed")
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._connect()
            with self._lock:
                self._readers.append(conn)
            self._local.conn = conn
        if not snapshot:
            yield conn
            return
        conn.execute("BEGIN")
        try:
            yield conn
        finally:
            conn.execute("COMMIT")

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            for conn in [*self._readers, self._writer]:
                conn.close()
            self._readers.clear()

    def __enter__(self) -> SQLiteStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- context -----------------------------------------------------------
    def add_context(self, records: Sequence[NewContext]) -> list[ContextRecord]:
        # Benchmarked against raw executemany: rows are built in one lean pass before the
        # lock is taken, so the write transaction holds only the inserts.
        rows: dict[str, list[tuple[Any, ...]]] = {kind: [] for kind in CONTEXT_KINDS}
        order: dict[str, list[int]] = {kind: [] for kind in CONTEXT_KINDS}
        split = codec.split_fields
        for i, rec in enumerate(records):
            kind_rows = rows.get(rec.kind)
            if kind_rows is None:
                codec.check_kind(rec.kind)  # raises ValueError with the list of kinds
            assert kind_rows is not None
            columns, attributes = split(rec.kind, rec.fields)
            kind_rows.append((rec.service, epoch(rec.ts), *columns, attributes))
            order[rec.kind].append(i)
        ids: list[int] = [0] * len(records)
        with self._write() as conn:
            for kind, kind_rows in rows.items():
                if not kind_rows:
                    continue
                conn.executemany(_CTX_INSERT[kind], kind_rows)
                # The write lock is ours for the whole transaction and AUTOINCREMENT hands
                # out max+1 per row, so the batch got the consecutive ids ending here.
                last = conn.execute("SELECT last_insert_rowid()").fetchone()[0]
                for rowid, i in enumerate(order[kind], start=last - len(kind_rows) + 1):
                    ids[i] = rowid
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
        # ORDER BY ts DESC, id DESC is the index order read backwards (an index ends
        # with the rowid), so no sort step: tests/store/test_sqlite.py checks the plan.
        where = (
            "service = ? AND ts >= ? AND ts <= ?" if service is not None else "ts >= ? AND ts <= ?"
        )
        args: list[Any] = [service] if service is not None else []
        args += [epoch(start), epoch(end), -1 if limit is None else limit]
        sql = (
            f"SELECT id, service, ts, {_CTX_COLS[kind]}, attributes FROM {kind} "
            f"WHERE {where} ORDER BY ts DESC, id DESC LIMIT ?"
        )
        with self._read() as conn:
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
        sql = f"SELECT id, service, ts, {_CTX_COLS[kind]}, attributes FROM {kind} WHERE id = ?"
        with self._read() as conn:
            row = conn.execute(sql, (rid,)).fetchone()
        return None if row is None else self._record(kind, row)

    def prune_context(self, before: datetime) -> int:
        cutoff, total = epoch(before), 0
        for kind in CONTEXT_KINDS:
            while True:  # chunks, each its own short transaction, so alerts are not held up
                with self._write() as conn:
                    n = conn.execute(
                        f"DELETE FROM {kind} WHERE id IN "
                        f"(SELECT id FROM {kind} WHERE ts < ? ORDER BY ts LIMIT ?)",
                        (cutoff, PRUNE_CHUNK),
                    ).rowcount
                total += n
                if n < PRUNE_CHUNK:
                    break
        return total

    def context_counts(self) -> dict[str, int]:
        with self._read(snapshot=True) as conn:
            return self._context_counts(conn)

    @staticmethod
    def _context_counts(conn: sqlite3.Connection) -> dict[str, int]:
        return {k: conn.execute(f"SELECT COUNT(*) FROM {k}").fetchone()[0] for k in CONTEXT_KINDS}

    def oldest_context_ts(self) -> datetime | None:
        with self._read(snapshot=True) as conn:
            oldest = [conn.execute(f"SELECT MIN(ts) FROM {k}").fetchone()[0] for k in CONTEXT_KINDS]
        present = [ts for ts in oldest if ts is not None]
        return from_epoch(min(present)) if present else None

    # --- alerts and incidents ---------------------------------------------
    def _plan(
        self,
        conn: sqlite3.Connection,
        plan: PlanDeliveries | None,
        outcome: AlertOutcome,
        now: datetime,
    ) -> None:
        """Run `plan` inside the caller's write transaction and store its deliveries, so
        they commit (or roll back) together with the change that caused them. `plan` holds
        the write lock while it runs: it may read the store but must not write to it."""
        deliveries = planned(plan, outcome)
        if deliveries:
            assert outcome.incident is not None  # planned() refuses deliveries without one
            outbox.insert(conn, outcome.incident.id, deliveries, epoch(now))

    def get_incident(self, incident_id: str) -> Incident | None:
        with self._read() as conn:
            return incidents.get(conn, incident_id)

    def find_repeat(self, fingerprint: str, starts_at: datetime) -> Incident | None:
        with self._read() as conn:
            return incidents.find_repeat(conn, fingerprint, starts_at)

    def open_incidents(
        self,
        *,
        service: str | None = None,
        fingerprint: str | None = None,
        since: datetime | None = None,
    ) -> list[Incident]:
        """Open incidents, newest first; `since` filters on opened_at (inclusive)."""
        filters = {"status": "open", "service": service, "fingerprint": fingerprint}
        with self._read() as conn:
            return incidents.select(conn, filters, since, -1)

    def list_incidents(
        self,
        *,
        limit: int = 50,
        status: str | None = None,
        service: str | None = None,
        team: str | None = None,
        since: datetime | None = None,
    ) -> list[Incident]:
        """Newest first by opened_at; `since` filters opened_at >= since."""
        filters = {"status": status, "service": service, "team": team}
        with self._read() as conn:
            return incidents.select(conn, filters, since, limit)

    def record_firing(
        self,
        draft: IncidentDraft,
        *,
        now: datetime,
        renotify_after: timedelta,
        plan: PlanDeliveries | None = None,
    ) -> AlertOutcome:
        """Repeat, else attach, else open (see `Store.record_firing`), in one transaction.

        - repeat: (fingerprint, startsAt) already recorded; repeat_count += 1, notify=False.
        - attached: to draft.duplicate_of if still open, else to the open incident of the
          same fingerprint; notify when renotify_after has passed since last_notified_at.
        - opened: a new incident with id draft.id, opened_at = now (startsAt stays in
          incident.alert), notify=True.
        The incident in the outcome is as it is after the change.
        """
        with self._write() as conn:
            outcome = incidents.record_firing(conn, draft, now, renotify_after)
            self._plan(conn, plan, outcome, now)
        return outcome

    def record_resolved(
        self, alert: Alert, *, now: datetime, plan: PlanDeliveries | None = None
    ) -> AlertOutcome:
        """Mark the alert resolved; resolve its incident when nothing of it still fires.

        The alert rows resolved are those of `alert.fingerprint` still firing with
        starts_at <= alert.starts_at (Alertmanager has one active alert per fingerprint,
        so an older row still firing missed its own resolution; a newer one is a later
        episode). Their ends_at is alert.ends_at, or `now` when missing.

        Outcome kinds:
        - resolved: the incident had no firing alert left and was resolved (notify=True),
          resolved_at = ends_at, resolution = {"auto": True, "note": "resolved by
          Alertmanager", "at": ...}.
        - ignored, with the incident: the alert was marked resolved but other alerts of the
          incident (grouped / attached ones) still fire, so it stays open (notify=False);
          or the resolution was already recorded (Alertmanager resends it).
        - ignored, incident None: a fingerprint never seen firing.
        In the rare case the rows belong to several incidents, each is settled and `plan`
        runs once per incident; the outcome returned is that of the newest row's incident.
        """
        with self._write() as conn:
            outcomes = incidents.record_resolved(conn, alert, now)
            for outcome in outcomes:
                self._plan(conn, plan, outcome, now)
        return outcomes[0]

    def resolve_incident(
        self,
        incident_id: str,
        *,
        at: datetime,
        note: str | None = None,
        auto: bool = False,
        plan: PlanDeliveries | None = None,
    ) -> AlertOutcome:
        """Resolve now; its still-firing alerts are marked resolved at `at` too, so a later
        Alertmanager resolution for them is `ignored`."""
        with self._write() as conn:
            outcome = incidents.resolve(conn, incident_id, at, note, auto)
            self._plan(conn, plan, outcome, at)
        return outcome

    def set_narration(self, incident_id: str, narration: dict[str, Any]) -> None:
        """Replace the narration. Raises KeyError for an unknown incident."""
        with self._write() as conn:
            found = incidents.set_narration(conn, incident_id, narration)
        if not found:
            raise KeyError(incident_id)

    def stats(self) -> dict[str, Any]:
        with self._read(snapshot=True) as conn:
            return {
                **incidents.counts(conn),
                "context": self._context_counts(conn),
                "outbox": outbox.counts(conn),
            }

    # --- delivery outbox ---------------------------------------------------
    def claim_deliveries(
        self, *, now: datetime, limit: int, lease: timedelta, worker: str
    ) -> list[Delivery]:
        """Claim the due head of each (incident, sink) queue (see `Store.claim_deliveries`).

        The head is the lowest-id delivery that is pending or sending; dead ones are
        skipped, so a message that exhausted its retries does not block the incident's
        later ones (they still go out in order; the dead one waits in `dead_deliveries`).
        """
        with self._write() as conn:
            return outbox.claim(conn, now, limit, lease, worker)

    def finish_delivery(
        self,
        delivery_id: int,
        *,
        ok: bool,
        now: datetime,
        error: str | None = None,
        retry_at: datetime | None = None,
    ) -> None:
        """ok -> delivered; else pending again at retry_at, or dead without one.

        A delivery already delivered or dead stays so (a late finish from a worker whose
        lease expired must not resurrect it). Raises KeyError for an unknown id.
        """
        with self._write() as conn:
            outbox.finish(conn, delivery_id, ok, now, error, retry_at)

    def dead_deliveries(self, limit: int = 50) -> list[Delivery]:
        """Dead letters, newest first."""
        with self._read() as conn:
            return outbox.dead(conn, limit)
