"""Stores: `open_store(url)` picks the backend from the URL.

- ":memory:", "sqlite://", "sqlite:///:memory:" -> SQLite in memory (throwaway)
- a filesystem path, or "sqlite:///relative/path.db", "sqlite:////absolute/path.db"
  (SQLAlchemy's spelling) -> SQLite file, parent directories created
- "postgresql://..." or "postgres://..." -> PostgreSQL (engine.store.postgres)
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from engine.store.base import (
    AlertOutcome,
    Delivery,
    IncidentDraft,
    NewContext,
    NewDelivery,
    PlanDeliveries,
    RetryRefused,
    Store,
)

__all__ = [
    "BACKENDS",
    "AlertOutcome",
    "Delivery",
    "IncidentDraft",
    "NewContext",
    "NewDelivery",
    "PlanDeliveries",
    "RetryRefused",
    "Store",
    "open_store",
]


def _open_sqlite(url: str) -> Store:
    from engine.store.sqlite import SQLiteStore

    path = url.removeprefix("sqlite:///") if url.startswith("sqlite:///") else url
    if url == "sqlite://" or path in ("", ":memory:"):
        return SQLiteStore(":memory:")
    Path(path).expanduser().parent.mkdir(parents=True, exist_ok=True)
    return SQLiteStore(str(Path(path).expanduser()))


def _open_postgres(url: str) -> Store:
    # Imported here: a SQLite user's process never loads psycopg.
    from engine.store.postgres import PostgresStore

    return PostgresStore(url)


# scheme -> opener. A filesystem path has no scheme and goes to SQLite.
BACKENDS: dict[str, Callable[[str], Store]] = {
    "sqlite": _open_sqlite,
    "postgresql": _open_postgres,
    "postgres": _open_postgres,
}


def open_store(url: str) -> Store:
    """Open (and migrate) the store `url` names. Raises ValueError for an unknown scheme."""
    if not isinstance(url, str) or not url.strip():
        raise ValueError("store URL is empty (use a file path, ':memory:' or postgresql://...)")
    url = url.strip()
    scheme, sep, _ = url.partition("://")
    if not sep:
        return _open_sqlite(url)
    opener = BACKENDS.get(scheme.lower())
    if opener is None:
        raise ValueError(
            f"unknown store URL scheme {scheme!r} in {url!r} "
            f"(supported: {', '.join(sorted(BACKENDS))}, or a plain file path)"
        )
    return opener(url)
