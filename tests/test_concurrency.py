"""Concurrency: 60 clients at once against a real server, posting alerts and context;
every count exact, no errors, no id handed out twice."""

from __future__ import annotations

import json
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import httpx
import pytest

from engine.alerts import fingerprint
from engine.testing import ServerProcess, make_alert
from engine.timeutil import format_ts, utcnow

pytestmark = pytest.mark.e2e

CLIENTS = 60
BATCH = 5  # records per context batch


def test_sixty_concurrent_clients(tmp_path) -> None:
    shared_start = format_ts(utcnow() - timedelta(minutes=1))
    shared = make_alert(service="shared-svc", starts_at=shared_start)  # every client sends it
    shared_fp = fingerprint(shared["labels"])
    barrier = threading.Barrier(CLIENTS, timeout=30)

    def client(n: int) -> dict[str, Any]:
        out: dict[str, Any] = {"ids": [], "results": [], "errors": []}
        with httpx.Client(base_url=srv.url, timeout=30.0) as c:
            barrier.wait()  # start together
            requests = [
                ("/context/deploys", {"service": f"svc-{n}", "commit": f"c{n}", "author": "a"}),
                (
                    "/context/logs",
                    [{"service": f"svc-{n}", "message": f"m{n}-{i}"} for i in range(BATCH)],
                ),
                ("/alerts", make_alert(service=f"svc-{n}", starts_at=shared_start)),
                (
                    "/context/traces",
                    [
                        {"service": f"svc-{n}", "trace_id": f"t{n}-{i}", "duration_ms": i}
                        for i in range(BATCH)
                    ],
                ),
                ("/alerts", shared),
                ("/alerts", make_alert(service=f"svc-{n}", starts_at=shared_start)),  # a retry
            ]
            for path, body in requests:
                r = c.post(path, json=body)
                if r.status_code != 200:
                    out["errors"].append((path, r.status_code, r.text))
                elif path == "/alerts":
                    out["results"].extend(r.json()["results"])
                else:
                    kind = path.rsplit("/", 1)[1]
                    out["ids"].extend((kind, i) for i in r.json()["ids"])
        return out

    with ServerProcess(tmp_path, "--format", "json") as srv:
        with ThreadPoolExecutor(CLIENTS) as pool:
            outs = list(pool.map(client, range(CLIENTS)))
        errors = [e for o in outs for e in o["errors"]]
        assert errors == []

        ids = [i for o in outs for i in o["ids"]]
        assert len(ids) == len(set(ids)), "an id was handed out twice"
        per_kind = Counter(kind for kind, _ in ids)
        assert per_kind == {"deploys": CLIENTS, "logs": CLIENTS * BATCH, "traces": CLIENTS * BATCH}

        results = [r for o in outs for r in o["results"]]
        outcomes = Counter(r["outcome"] for r in results)
        # own alert: opened then repeat; the shared one: opened once, repeated by the rest
        assert outcomes == {"opened": CLIENTS + 1, "repeat": 2 * CLIENTS - 1}, outcomes
        shared_ids = {r["incident"] for r in results if r["fingerprint"] == shared_fp}
        assert len(shared_ids) == 1

        with srv.client() as api:
            stats = api.get("/api/stats").json()
            assert stats["context"] == dict(per_kind)
            assert stats["incidents"] == {
                "open": CLIENTS + 1,
                "resolved": 0,
                "total": CLIENTS + 1,
                "repeats": 2 * CLIENTS - 1,
                "attached": 0,
            }
            assert stats["alerts"] == {"firing": CLIENTS + 1, "resolved": 0, "total": CLIENTS + 1}
            [shared_id] = shared_ids
            assert api.get(f"/api/incidents/{shared_id}").json()["repeat_count"] == CLIENTS - 1
            listed = api.get("/api/incidents?limit=1000").json()
            assert listed["count"] == CLIENTS + 1
            for kind, rid in ids[:: max(1, len(ids) // 50)]:
                assert api.get(f"/api/context/{kind}/{rid}").status_code == 200

        # stdout: one JSON line per opened incident, none for repeats, none interleaved
        text = srv.wait_for_stdout('"event": "opened"', count=CLIENTS + 1)
        events = [json.loads(line) for line in text.splitlines() if line.strip()]
        assert Counter(e["event"] for e in events) == {"opened": CLIENTS + 1}
        assert len({e["incident"]["id"] for e in events}) == CLIENTS + 1
