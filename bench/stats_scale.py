"""/api/stats and /metrics with a million incidents (python -m bench, section 6).

A store is filled with N incidents (all but 1,000 resolved), each with its alert, straight
through SQLite (the store's own schema, its triggers keeping the counts), then a server
answers /api/stats and /metrics 50 times each, one request at a time. Both read kept
counts (engine/store/tallies.py), not the tables: target p99 <= 5 ms.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from bench.http import Client
from engine.store.sqlite import SQLiteStore
from engine.testing import ServerProcess

OPEN = 1_000
REQUESTS = 50
_INCIDENT = (
    "INSERT INTO incidents (id, fingerprint, status, title, service, alertname, team, severity,"
    " opened_at, last_seen, resolved_at, alert, findings) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)"
)
_ALERT = (
    "INSERT INTO alerts (fingerprint, starts_at, incident_id, status, ends_at, received_at)"
    " VALUES (?,?,?,?,?,?)"
)


def build(path: Path, n: int, t0: float, batch: int = 20_000) -> float:
    """`n` incidents and their alerts in the store file at `path`; seconds it took."""
    started = time.perf_counter()
    SQLiteStore(str(path)).close()  # the schema, the tallies and their triggers
    conn = sqlite3.connect(str(path), isolation_level=None)
    conn.execute("PRAGMA synchronous = NORMAL")
    alert = '{"labels":{"alertname":"HighErrorRate"},"annotations":{}}'
    for start in range(0, n, batch):
        conn.execute("BEGIN")
        incidents, alerts = [], []
        for i in range(start, min(start + batch, n)):
            opened = t0 - (n - i) * 30.0
            resolved = i < n - OPEN
            inc_id, fp = f"inc-{i:012x}", f"fp{i:014x}"
            incidents.append(
                (inc_id, fp, "resolved" if resolved else "open", f"HighErrorRate on svc-{i % 500}",
                 f"svc-{i % 500}", "HighErrorRate", "edge", 3, opened, opened,
                 opened + 600 if resolved else None, alert, "[]")
            )  # fmt: skip
            alerts.append(
                (fp, opened, inc_id, "resolved" if resolved else "firing",
                 opened + 600 if resolved else None, opened)
            )  # fmt: skip
        conn.executemany(_INCIDENT, incidents)
        conn.executemany(_ALERT, alerts)
        conn.execute("COMMIT")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    return time.perf_counter() - started


def stats_section(
    n: int,
    work: Path,
    t0: float,
    *,
    summarize: Callable[[Sequence[float]], dict[str, Any]],
    log: Callable[[str], None],
) -> dict[str, Any]:
    db = work / "stats.db"
    log(f"stats: building a store with {n:,} incidents")
    took = build(db, n, t0)
    out: dict[str, Any] = {"incidents": n, "open": OPEN, "build_seconds": round(took, 1)}
    with ServerProcess(work / "stats", "--quiet", db=str(db), startup_timeout=120) as srv:
        client = Client(srv.port)
        for path in ("/api/stats", "/metrics"):
            times = []
            for _ in range(REQUESTS):
                t = time.perf_counter()
                status, _body = client.request("GET", path)
                times.append(time.perf_counter() - t)
                if status != 200:
                    raise RuntimeError(f"GET {path} answered {status}")
            out[path] = summarize(times)
        client.close()
    for suffix in ("", "-wal", "-shm"):
        Path(str(db) + suffix).unlink(missing_ok=True)
    log(
        f"stats: p99 /api/stats {out['/api/stats']['p99_ms']} ms, /metrics {out['/metrics']['p99_ms']} ms"
    )
    return out
