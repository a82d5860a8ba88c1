"""`StoreUnavailable`: the store cannot commit (or answer) right now.

Each dialect turns its driver's errors of that kind into this one exception at the edge of
its transactions: a full disk, a read-only file or database, an I/O error, a lock held past
the busy timeout, a database that is gone or refuses connections. Nothing of the call was
committed, and the same call may succeed later without any change on our side, so the
server answers `503` with `Retry-After` (never `200`, never a generic `500`) and reports
itself not ready until a write succeeds again (engine.server.faults).
"""

from __future__ import annotations

import sqlite3


class StoreUnavailable(Exception):
    """`reason`: a short phrase for logs and /readyz ("disk full", "database unreachable");
    the driver's exception is the `__cause__`."""

    def __init__(self, reason: str, detail: str = "") -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason}: {detail}" if detail else reason)


# SQLite primary result codes (the low byte of the extended code) that a retry may get past.
_SQLITE_REASONS = {
    "SQLITE_FULL": "disk full",
    "SQLITE_READONLY": "read-only",
    "SQLITE_IOERR": "I/O error",
    "SQLITE_BUSY": "locked (busy timeout passed)",
    "SQLITE_LOCKED": "locked (busy timeout passed)",
    "SQLITE_CANTOPEN": "cannot open the database file",
    "SQLITE_PROTOCOL": "locked (WAL protocol)",
    "SQLITE_NOMEM": "out of memory",
}


def sqlite_unavailable(exc: BaseException) -> StoreUnavailable | None:
    """The StoreUnavailable for a sqlite3 error, or None when the error is something else
    (a constraint, a bug in our SQL: those stay what they are)."""
    if not isinstance(exc, sqlite3.OperationalError | sqlite3.DatabaseError):
        return None
    name = getattr(exc, "sqlite_errorname", "") or ""
    for prefix, reason in _SQLITE_REASONS.items():
        if name == prefix or name.startswith(prefix + "_"):
            return StoreUnavailable(reason, str(exc))
    return None
