"""SIGTERM under load: in-flight requests finish, and whatever was acknowledged survives."""

from __future__ import annotations

import signal
import sqlite3
import threading
import time
from pathlib import Path

import httpx

from tests.ops.helpers import alert, bearer, ops_server

WORKERS = 8
PER_WORKER = 60


def _load(url: str, worker: int, acked: list, stop: threading.Event) -> None:
    with httpx.Client(base_url=url, headers=bearer("ingest"), timeout=10) as client:
        for i in range(PER_WORKER):
            if stop.is_set():
                return
            key = f"w{worker}-{i}"
            try:
                if i % 2:
                    r = client.post("/alerts", json=alert(f"Load-{key}", service=f"svc-{key}"))
                    if r.status_code == 200:
                        acked.append(("alert", key, r.json()["results"][0]["incident"]))
                else:
                    r = client.post("/context/logs", json={"service": "load", "message": key})
                    if r.status_code == 200:
                        acked.append(("log", key, r.json()["ids"][0]))
            except httpx.HTTPError:
                return  # the server stopped accepting: this request was not acknowledged


def test_sigterm_mid_load_keeps_every_acknowledged_write(tmp_path: Path) -> None:
    db = tmp_path / "shutdown.db"
    server = ops_server(tmp_path / "first", db=db).start()
    acked: list[tuple[str, str, str]] = []
    stop = threading.Event()
    threads = [
        threading.Thread(target=_load, args=(server.url, w, acked, stop)) for w in range(WORKERS)
    ]
    try:
        for t in threads:
            t.start()
        deadline = time.monotonic() + 10
        while len(acked) < 40 and time.monotonic() < deadline:
            time.sleep(0.01)
        server.send_signal(signal.SIGTERM)
        # uvicorn re-raises the signal once shut down: the exit status is "killed by SIGTERM"
        assert server.wait(30) in (0, -signal.SIGTERM), server.stderr_text()
    finally:
        stop.set()
        for t in threads:
            t.join(15)
        server.stop()
    assert len(acked) >= 40
    assert "Application shutdown complete" in server.stderr_text()
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"

    again = ops_server(tmp_path / "again", db=db).start()
    try:
        with httpx.Client(base_url=again.url, headers=bearer("read"), timeout=10) as client:
            for kind, key, ident in acked:
                if kind == "alert":
                    r = client.get(f"/api/incidents/{ident}")
                    assert r.status_code == 200 and r.json()["alertname"] == f"Load-{key}"
                else:
                    r = client.get(f"/api/context/logs/{ident}")
                    assert r.status_code == 200 and r.json()["message"] == key
            stats = client.get("/api/stats").json()
        assert stats["incidents"]["total"] >= sum(1 for a in acked if a[0] == "alert")
    finally:
        again.stop()
