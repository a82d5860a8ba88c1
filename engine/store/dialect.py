"""What SQLite and PostgreSQL really do differently, behind one small interface.

The store's logic (engine.store.sql, .incidents, .outbox, .migrations) is written once,
in SQL with `?` placeholders that runs unchanged on both engines. A `Dialect` owns the
rest: how connections are held, how a write transaction starts and is retried, how a
batch of rows goes in fast, how rows are locked, and how a list parameter is spelt.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from typing import Any, Protocol, TypeVar

T = TypeVar("T")


class Cursor(Protocol):
    """What the store reads from a statement: sqlite3's and psycopg's cursors both fit."""

    @property
    def rowcount(self) -> int: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...

    def __iter__(self) -> Iterator[Any]: ...


class Conn(Protocol):
    """A connection inside a transaction, taking `?` placeholders."""

    def execute(self, sql: str, params: Any = ..., /) -> Cursor: ...

    def executemany(self, sql: str, rows: Any, /) -> Any: ...


class Dialect(Protocol):
    name: str
    # True when one connection makes every write (SQLite): the server then hands context
    # writes to one dedicated thread instead of the worker pool.
    single_writer: bool
    # The value of LIMIT that means "no limit".
    unlimited: int | None
    # Appended to a SELECT to lock its rows for this transaction ("" where a write
    # transaction already excludes every other writer).
    for_update: str
    # Appended to a SELECT of rows to delete or claim, so two processes share the work.
    skip_locked: str

    def write(self, work: Callable[[Conn], T]) -> T:
        """Run work(conn) in one write transaction and commit; retried from the start on
        the errors concurrent writers can cause, so `work` must only touch the database.
        A write (or read) made from inside `work` runs in the same transaction."""
        ...

    def read(self, *, snapshot: bool = False) -> AbstractContextManager[Conn]:
        """A connection for reading; `snapshot`: several statements see one state."""
        ...

    def in_list(self, column: str, values: Sequence[Any]) -> tuple[str, list[Any]]:
        """`column` is one of `values`: the SQL and its parameters."""
        ...

    def lock_keys(self, conn: Conn, keys: Sequence[str]) -> None:
        """Hold a lock on each of `keys` (in the order given) until the transaction ends;
        a no-op where a write transaction already excludes every other writer."""
        ...

    def defer_foreign_keys(self, conn: Conn) -> None:
        """Check foreign keys at commit for the rest of this transaction."""
        ...

    def insert_context(self, conn: Conn, kind: str, rows: Sequence[list[Any]]) -> list[int]:
        """Insert rows (service, ts, typed columns..., attributes) of one context kind and
        return their new ids, in order: the bulk path of add_context."""
        ...

    def claim_deliveries(
        self, conn: Conn, t_now: float, limit: int, lease_until: float, worker: str
    ) -> list[Any]:
        """Mark the due head of each (incident, sink) queue 'sending' (attempts + 1, the
        lease and the worker set) and return the rows, in engine.store.outbox.COLUMNS."""
        ...

    def migration(self) -> AbstractContextManager[Conn]:
        """A transaction that only one process at a time runs migrations in."""
        ...

    def run_script(self, conn: Conn, sql: str) -> None:
        """Run several DDL statements inside the current transaction."""
        ...

    def reset(self, tables: Sequence[str]) -> None:
        """Empty `tables` and restart their ids (tests only)."""
        ...

    def close(self) -> None: ...
