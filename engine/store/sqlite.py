"""The SQLite dialect: one file (WAL mode) or `:memory:` for throwaway runs.

Concurrency model. Every write goes through ONE writer connection, under a lock, inside
`BEGIN IMMEDIATE`: the lock orders this process's threads, and IMMEDIATE takes SQLite's
write lock up front so another process on the same file waits (busy_timeout) instead of
failing half way with SQLITE_BUSY on a read-then-write. So no row locks are needed, and
`FOR UPDATE` is spelt "". Reads use a small pool of reader connections (WAL lets them
run next to the writer and each sees the last commit); the pool is bounded, so bursts of
worker threads after a quiet gap never open more files. A read made inside a write (a
delivery plan reading the store) uses the writer, and sees the uncommitted change. An
in-memory database exists only inside its connection, so `:memory:` uses the writer
connection for everything, under the same (re-entrant) lock.

Durability. `journal_mode=WAL` with `synchronous=NORMAL`: a commit is in the WAL file
before the write method returns, so it survives the process crashing or being killed
(kill -9). Only a power loss / OS crash can lose the last transactions (never corrupt the
file); `synchronous=FULL` would close that at the price of an fsync per commit.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

from engine.store import codec
from engine.store.dialect import Conn
from engine.store.errors import sqlite_unavailable
from engine.store.migrations import split_sql
from engine.store.outbox import COLUMNS as DELIVERY_COLUMNS
from engine.store.sql import SQLStore
from engine.store.sqlite_checkpoint import BACKSTOP_PAGES, Checkpointer

BUSY_TIMEOUT_MS = 10_000
MAX_READERS = 8  # reader connections kept open; more concurrent readers wait for one

T = TypeVar("T")

_CTX_INSERT = {
    kind: f"INSERT INTO {kind} (service, ts, {', '.join(codec.column_names(kind))}, attributes) "
    f"VALUES (?, ?, {', '.join('?' * len(typed))}, ?)"
    for kind, typed in codec.TYPED_FIELDS.items()
}

# Each (incident, sink) pair is a queue; its head is its lowest-id pending/sending
# delivery. INDEXED BY: the partial index holds only undelivered rows, in (incident_id,
# sink, id) order, so the GROUP BY needs no sort (the planner, without ANALYZE statistics,
# would otherwise pick the status index and a temp b-tree). The writer lock makes the
# statement atomic against every other claimer.
_CLAIM = (
    "UPDATE deliveries SET status = 'sending', attempts = attempts + 1,"
    " lease_until = ?, worker = ? WHERE id IN ("
    " SELECT d.id FROM deliveries AS d JOIN ("
    "  SELECT MIN(id) AS id FROM deliveries INDEXED BY deliveries_queue"
    "  WHERE status IN ('pending', 'sending') GROUP BY incident_id, sink"
    " ) AS head ON head.id = d.id"
    " WHERE (d.status = 'pending' AND d.next_attempt_at <= ?)"
    "    OR (d.status = 'sending' AND d.lease_until <= ?)"
    " ORDER BY d.id LIMIT ?"
    f") RETURNING {DELIVERY_COLUMNS}"
)


class SQLiteDialect:
    name = "sqlite"
    single_writer = True
    unlimited: int | None = -1
    for_update = ""
    skip_locked = ""

    def __init__(self, path: str) -> None:
        self.path = path
        self._memory = path == ":memory:"
        self._lock = threading.RLock()  # re-entrant: a plan() may read the store
        self._writing = threading.local()  # .active: this thread is inside write()
        self._idle: list[sqlite3.Connection] = []  # reader connections not in use
        self._readers: list[sqlite3.Connection] = []  # every reader connection opened
        self._reader_free = threading.Condition(threading.Lock())
        self._closed = False
        self._writer = self._connect()
        self._checkpointer: Checkpointer | None = None
        if not self._memory:
            # Persistent in the file; every later connection gets WAL too.
            self._writer.execute("PRAGMA journal_mode = WAL")
            # Checkpoints run on their own thread, outside the write lock; the writer's own
            # automatic checkpoint stays only as a backstop (engine.store.sqlite_checkpoint).
            self._writer.execute(f"PRAGMA wal_autocheckpoint = {BACKSTOP_PAGES}")
            self._checkpointer = Checkpointer(path)

    def _connect(self) -> sqlite3.Connection:
        # isolation_level=None: we issue BEGIN/COMMIT ourselves; the sqlite3 module's
        # implicit transactions would start DEFERRED ones. check_same_thread=False:
        # readers move between the threads of the pool, one at a time.
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

    # --- transactions -------------------------------------------------------------
    def write(self, work: Callable[[Conn], T]) -> T:
        with self._lock:
            if self._closed:
                raise RuntimeError("store is closed")
            conn = self._writer
            if getattr(self._writing, "active", False):
                return work(conn)  # nested: the same transaction
            self._writing.active = True
            try:
                conn.execute("BEGIN IMMEDIATE")
                result = work(conn)
                conn.execute("COMMIT")
                return result
            except BaseException as exc:
                if conn.in_transaction:
                    with contextlib.suppress(sqlite3.Error):  # a failed commit may end it
                        conn.execute("ROLLBACK")
                unavailable = sqlite_unavailable(exc)
                if unavailable is not None:
                    raise unavailable from exc
                raise
            finally:
                self._writing.active = False

    @contextmanager
    def read(self, *, snapshot: bool = False) -> Iterator[Conn]:
        if self._memory or getattr(self._writing, "active", False):
            with self._lock:
                if self._closed:
                    raise RuntimeError("store is closed")
                yield self._writer
            return
        try:
            conn = self._take_reader()
        except sqlite3.Error as exc:  # a new reader could not open the file
            unavailable = sqlite_unavailable(exc)
            if unavailable is None:
                raise
            raise unavailable from exc
        try:
            if not snapshot:
                yield conn
                return
            conn.execute("BEGIN")
            try:
                yield conn
            finally:
                conn.execute("COMMIT")
        except sqlite3.Error as exc:
            unavailable = sqlite_unavailable(exc)
            if unavailable is not None:
                raise unavailable from exc
            raise
        finally:
            self._give_back(conn)

    def _take_reader(self) -> sqlite3.Connection:
        with self._reader_free:
            while True:
                if self._closed:
                    raise RuntimeError("store is closed")
                if self._idle:
                    return self._idle.pop()
                if len(self._readers) < MAX_READERS:
                    conn = self._connect()
                    self._readers.append(conn)
                    return conn
                self._reader_free.wait()

    def _give_back(self, conn: sqlite3.Connection) -> None:
        with self._reader_free:
            if self._closed:
                conn.close()
                return
            self._idle.append(conn)
            self._reader_free.notify()

    # --- what the SQL says differently -------------------------------------------
    def in_list(self, column: str, values: Sequence[Any]) -> tuple[str, list[Any]]:
        return f"{column} IN ({', '.join('?' * len(values))})", list(values)

    def lock_keys(self, conn: Conn, keys: Sequence[str]) -> None:
        pass  # BEGIN IMMEDIATE: this transaction is the only writer already

    def defer_foreign_keys(self, conn: Conn) -> None:
        conn.execute("PRAGMA defer_foreign_keys = ON")  # reset by SQLite at COMMIT

    def insert_context(self, conn: Conn, kind: str, rows: Sequence[list[Any]]) -> list[int]:
        conn.executemany(_CTX_INSERT[kind], rows)
        # The write lock is ours for the whole transaction and AUTOINCREMENT hands out
        # max+1 per row, so the batch got the consecutive ids ending here.
        last = conn.execute("SELECT last_insert_rowid()").fetchone()[0]
        return list(range(last - len(rows) + 1, last + 1))

    def claim_deliveries(
        self, conn: Conn, t_now: float, limit: int, lease_until: float, worker: str
    ) -> list[Any]:
        return conn.execute(_CLAIM, (lease_until, worker, t_now, t_now, limit)).fetchall()

    @contextmanager
    def migration(self) -> Iterator[Conn]:
        # BEGIN IMMEDIATE: two processes opening a fresh file at once take turns instead
        # of both creating tables.
        with self._lock:
            conn = self._writer
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise

    def run_script(self, conn: Conn, sql: str) -> None:
        for statement in split_sql(sql):
            conn.execute(statement)

    def reset(self, tables: Sequence[str]) -> None:
        def work(conn: Conn) -> None:
            for table in tables:
                conn.execute(f"DELETE FROM {table}")
            conn.execute("DELETE FROM sqlite_sequence")

        self.write(work)

    def close(self) -> None:
        if self._checkpointer is not None:
            self._checkpointer.close()
        with self._lock, self._reader_free:
            if self._closed:
                return
            self._closed = True
            for conn in self._idle:
                conn.close()
            self._idle.clear()
            self._writer.close()
            self._reader_free.notify_all()


class SQLiteStore(SQLStore):
    """`Store` on SQLite. `path` is a file (created if missing) or ":memory:"."""

    def __init__(self, path: str) -> None:
        self.path = path
        super().__init__(SQLiteDialect(path))
