"""Durability: whatever the server acknowledged survives `kill -9`; retention prunes old
context. Real server processes on loopback, one SQLite file reused across restarts."""

from __future__ import annotations

import itertools
import threading
import time
from datetime import timedelta
from typing import Any

import httpx
import pytest

from engine.testing import ServerProcess, make_alert
from engine.timeutil import format_ts, utcnow

pytestmark = pytest.mark.e2e

WRITERS = 6
KILL_AFTER_ACKS = 300  # acknowledged requests before the SIGKILL
MAX_WAIT = 20.0


class Writer(threading.Thread):
    """Posts context batches and alerts until the server goes away; keeps what was acked."""

    def __init__(self, url: str, n: int, stop: threading.Event, acks: itertools.count) -> None:
        super().__init__(daemon=True)
        self.url, self.n, self.stop, self.acks = url, n, stop, acks
        self.records: list[tuple[str, str, dict[str, Any]]] = []  # (kind, id, body sent)
        self.alerts: list[tuple[dict[str, Any], dict[str, Any]]] = []  # (alert sent, result)
        self.unexpected: list[str] = []

    def run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=5.0) as client:
            for i in itertools.count():
                if self.stop.is_set():
                    return
                try:
                    self.step(client, i)
                except httpx.TransportError:
                    return  # the server was killed mid-request: that request was not acked
                next(self.acks)

    def step(self, client: httpx.Client, i: int) -> None:
        if i % 4 == 3:
            alert = make_alert(
                service=f"dur-{self.n}-{i}", starts_at=utcnow() - timedelta(seconds=30)
            )
            r = client.post("/alerts", json=alert)
            if r.status_code != 200:
                self.unexpected.append(r.text)
                return
            self.alerts.append((alert, r.json()["results"][0]))
            return
        kind = ("deploys", "logs", "traces")[i % 3]
        batch = [self.record(kind, i, j) for j in range(1 + i % 5)]
        r = client.post(f"/context/{kind}", json=batch)
        if r.status_code != 200:
            self.unexpected.append(r.text)
            return
        ids = r.json()["ids"]
        assert len(ids) == len(batch)
        self.records.extend((kind, rid, rec) for rid, rec in zip(ids, batch, strict=True))

    def record(self, kind: str, i: int, j: int) -> dict[str, Any]:
        service = f"dur-{self.n}"
        tag = f"{self.n}-{i}-{j}"
        if kind == "deploys":
            return {"service": service, "commit": f"c{tag}", "author": "ana"}
        if kind == "logs":
            return {"service": service, "level": "ERROR", "message": f"boom {tag}"}
        return {"service": service, "trace_id": f"t{tag}", "duration_ms": i + j}


def test_acknowledged_writes_survive_kill_9(tmp_path) -> None:
    srv = ServerProcess(tmp_path, "--quiet")
    writers: list[Writer] = []
    try:
        srv.start()
        stop, acks = threading.Event(), itertools.count()
        writers = [Writer(srv.url, n, stop, acks) for n in range(WRITERS)]
        for w in writers:
            w.start()
        deadline = time.monotonic() + MAX_WAIT
        while sum(len(w.records) + len(w.alerts) for w in writers) < KILL_AFTER_ACKS:
            assert time.monotonic() < deadline, "the writers made too little progress"
            assert all(w.is_alive() for w in writers), [w.unexpected for w in writers]
            time.sleep(0.01)
        srv.kill()  # SIGKILL while the writers are mid-stream
        stop.set()
        for w in writers:
            w.join(timeout=10)
            assert not w.is_alive()
        assert [u for w in writers for u in w.unexpected] == []

        srv.start()  # same database file
        records = [r for w in writers for r in w.records]
        alerts = [a for w in writers for a in w.alerts]
        assert records and alerts
        with srv.client() as api:
            for kind, rid, sent in records:
                r = api.get(f"/api/context/{kind}/{rid}")
                assert r.status_code == 200, f"acknowledged {kind} {rid} lost after kill -9"
                got = r.json()
                assert {k: got[k] for k in sent} == sent, (kind, rid)
            for _alert, result in alerts:
                r = api.get(f"/api/incidents/{result['incident']}")
                assert r.status_code == 200, f"acknowledged incident {result['incident']} lost"
                assert r.json()["fingerprint"] == result["fingerprint"]
            # The alerts themselves are durable too: re-sending one is a repeat.
            alert, result = alerts[0]
            again = api.post("/alerts", json=alert).json()["results"][0]
            assert (again["outcome"], again["incident"]) == ("repeat", result["incident"])
            stats = api.get("/api/stats").json()
            assert sum(stats["context"].values()) >= len(records)
            assert stats["incidents"]["total"] >= len(alerts)
    finally:
        stop_all = [w for w in writers if w.is_alive()]
        srv.close()
        for w in stop_all:
            w.join(timeout=10)


def test_retention_prunes_old_context_and_keeps_incidents(tmp_path) -> None:
    now = utcnow()
    old = format_ts(now - timedelta(hours=2))  # older than the retention, not in the future
    recent = format_ts(now - timedelta(minutes=20))
    with ServerProcess(tmp_path, "--retention", "1h", "--quiet") as srv:
        with srv.client() as api:
            old_ids = {
                "deploys": api.post(
                    "/context/deploys",
                    json={"service": "ret", "commit": "c1", "author": "a", "when": old},
                ).json()["ids"],
                "logs": api.post(
                    "/context/logs", json=[{"service": "ret", "message": "m", "ts": old}] * 3
                ).json()["ids"],
                "traces": api.post(
                    "/context/traces",
                    json={"service": "ret", "trace_id": "t", "duration_ms": 5, "ts": old},
                ).json()["ids"],
            }
            keep = api.post(
                "/context/logs",
                json=[
                    {"service": "ret", "message": "new", "ts": recent},
                    {"service": "ret", "message": "now"},
                ],
            ).json()["ids"]
            incident = api.post("/alerts", json=make_alert(service="ret")).json()["results"][0]
            for kind, ids in old_ids.items():
                for rid in ids:  # accepted and stored until the pruner runs
                    assert api.get(f"/api/context/{kind}/{rid}").status_code == 200
        srv.restart()  # the pruner runs at start-up, then every max(10s, retention/20)
        with srv.client() as api:
            deadline = time.monotonic() + 10
            while api.get("/api/stats").json()["context"] != {"deploys": 0, "logs": 2, "traces": 0}:
                assert time.monotonic() < deadline, api.get("/api/stats").json()["context"]
                time.sleep(0.05)
            for kind, ids in old_ids.items():
                for rid in ids:
                    r = api.get(f"/api/context/{kind}/{rid}")
                    assert r.status_code == 404 and "retention" in r.json()["error"]
            for rid in keep:
                assert api.get(f"/api/context/logs/{rid}").status_code == 200
            inc = api.get(f"/api/incidents/{incident['incident']}")
            assert inc.status_code == 200, "incidents are not pruned with the context"


def test_each_write_survives_a_kill_9_right_after_its_answer(tmp_path) -> None:
    """Deterministic: the server is killed the moment each 2xx arrives, then started again
    on the same file, and everything acknowledged so far must be there. A commit made
    after the answer (even 50 ms after) is lost every time, not when a race happens to
    fall that way."""
    srv = ServerProcess(tmp_path, "--quiet")
    records: list[tuple[str, str, dict[str, Any]]] = []  # (kind, id, body sent)
    incidents: dict[str, dict[str, Any]] = {}  # id -> fields it must have
    firing = make_alert(service="kill-a", starts_at=utcnow() - timedelta(minutes=1))
    other = make_alert(service="kill-b", starts_at=utcnow() - timedelta(minutes=1))
    resolved = {**firing, "status": "resolved", "endsAt": format_ts(utcnow())}

    def context(kind: str, body: list[dict[str, Any]]):
        def after(answer: dict[str, Any]) -> None:
            records.extend((kind, rid, b) for rid, b in zip(answer["ids"], body, strict=True))

        return f"/context/{kind}", body, after

    def alert(body: dict[str, Any], status: str):
        def after(answer: dict[str, Any]) -> None:
            result = answer["results"][0]
            incidents[result["incident"]] = {"fingerprint": result["fingerprint"], "status": status}

        return "/alerts", body, after

    writes = [
        context(
            "logs", [{"service": "kill", "level": "ERROR", "message": f"m{i}"} for i in range(3)]
        ),
        context("deploys", [{"service": "kill", "commit": "c0ffee1", "author": "ana"}]),
        context("traces", [{"service": "kill", "trace_id": "t1", "duration_ms": 1234}]),
        alert(firing, "open"),  # opens an incident
        alert(other, "open"),
        alert(resolved, "resolved"),  # resolves the first
    ]

    def check_everything_acknowledged(api: httpx.Client) -> None:
        for kind, rid, sent in records:
            got = api.get(f"/api/context/{kind}/{rid}")
            assert got.status_code == 200, f"acknowledged {kind} {rid} lost by kill -9"
            assert {k: got.json()[k] for k in sent} == sent
        for iid, fields in incidents.items():
            got = api.get(f"/api/incidents/{iid}")
            assert got.status_code == 200, f"acknowledged incident {iid} lost by kill -9"
            assert {k: got.json()[k] for k in fields} == fields, iid

    try:
        # Each round: start on the same file, check all acknowledged so far, write, kill.
        for path, body, after in [*writes, ("resolve", None, None), ("", None, None)]:
            srv.start()
            with srv.client() as api:
                check_everything_acknowledged(api)
                if not path:
                    break
                if path == "resolve":  # by hand, with a note: the second incident
                    [iid] = [i for i, f in incidents.items() if f["status"] == "open"]
                    r = api.post(f"/api/incidents/{iid}/resolve", json={"note": "by hand"})
                    srv.kill()  # the moment the answer is in
                    assert r.status_code == 200, r.text
                    incidents[iid] = {**incidents[iid], "status": "resolved"}
                else:
                    r = api.post(path, json=body)
                    srv.kill()
                    assert r.status_code == 200, r.text
                    after(r.json())
        assert len(records) == 5 and len(incidents) == 2
    finally:
        srv.close()
