"""Pull answers (what a prometheus / loki rule asked and got): functions over a
connection inside the store's transaction (engine.store.sql owns the transactions)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from engine.store import codec
from engine.store.base import NewPull, Pull
from engine.store.codec import epoch, from_epoch
from engine.store.dialect import Conn

COLUMNS = "id, source, url, query, start_at, end_at, step, link, answer, created_at"
ID_RANGE = range(1, 2**63)


def decode(row: Sequence[Any]) -> Pull:
    pid, source, url, query, start, end, step, link, answer, created = row
    return Pull(
        source=source,
        url=url,
        query=query,
        start=from_epoch(start),
        end=from_epoch(end),
        step=step,
        link=link,
        answer=codec.loads(answer) or {},
        id=str(pid),
        created_at=from_epoch(created),
    )


def insert(conn: Conn, pull: NewPull, now: datetime) -> Pull:
    row = conn.execute(
        "INSERT INTO pulls (source, url, query, start_at, end_at, step, link, answer,"
        f" created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING {COLUMNS}",
        (
            pull.source,
            pull.url,
            pull.query,
            epoch(pull.start),
            epoch(pull.end),
            pull.step,
            pull.link,
            codec.dumps(pull.answer),
            epoch(now),
        ),
    ).fetchone()
    return decode(row)


def get(conn: Conn, pull_id: str) -> Pull | None:
    try:
        pid = int(pull_id)
    except (TypeError, ValueError):
        return None
    if pid not in ID_RANGE:
        return None
    row = conn.execute(f"SELECT {COLUMNS} FROM pulls WHERE id = ?", (pid,)).fetchone()
    return None if row is None else decode(row)
