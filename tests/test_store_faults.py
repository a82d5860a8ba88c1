"""A failed write is never acknowledged, and it says 503.

Real faults under a real server process: a full filesystem (a small tmpfs), a file-size
limit on the server process, SQLite's write lock held by another process past the busy
timeout, a throwaway PostgreSQL cluster stopped mid-run. Each run checks what an SRE
relies on: no 200 for a write that was not stored, 503 with Retry-After instead (so
Alertmanager and collectors retry), `/readyz` 503 during the fault and 200 after,
`/healthz` 200 throughout, the metrics, writes succeeding again without a restart, and
nothing stored before (or acknowledged during) the fault lost.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from engine.testing import ServerProcess, make_alert
from tests.faults import (
    ThrowawayPostgres,
    Unavailable,
    fill,
    limit_file_size,
    small_tmpfs,
    sqlite_write_lock,
)

PAD = "p" * 4000  # each write is a few pages, like a real alert with findings


@dataclass(repr=False)
class Ledger:
    """Every write the test made and what the server answered."""

    alerts: dict[str, str] = field(default_factory=dict)  # service -> incident, acknowledged
    logs: dict[str, str] = field(default_factory=dict)  # record id -> message, acknowledged
    refused_alerts: list[dict] = field(default_factory=list)
    refused_logs: list[dict] = field(default_factory=list)
    n: int = 0

    def __repr__(self) -> str:
        return (
            f"<{len(self.alerts)} alerts and {len(self.logs)} logs acknowledged, "
            f"{len(self.refused_alerts)} and {len(self.refused_logs)} refused>"
        )

    def alert(self, c: httpx.Client, tag: str) -> int:
        self.n += 1
        service = f"{tag}-{self.n}"
        body = make_alert(alertname="StoreFault", service=service, annotations={"pad": PAD})
        r = c.post("/alerts", json=body)
        if r.status_code == 200:
            [result] = r.json()["results"]
            assert result["outcome"] == "opened" and result["incident"], r.text
            self.alerts[service] = result["incident"]
        else:
            refused(r)
            self.refused_alerts.append(body)
        return r.status_code

    def log(self, c: httpx.Client, tag: str) -> int:
        self.n += 1
        body = {"service": tag, "level": "ERROR", "message": f"{tag} line {self.n} {PAD}"}
        r = c.post("/context/logs", json=body)
        if r.status_code == 200:
            assert r.json()["accepted"] == 1, r.text
            self.logs[r.json()["ids"][0]] = body["message"]
        else:
            refused(r)
            self.refused_logs.append(body)
        return r.status_code

    def write_until_refused(self, c: httpx.Client, tag: str, limit: int = 300) -> None:
        """Alerts and log records, alternately, until each has been refused twice."""
        for _ in range(limit):
            self.alert(c, tag)
            self.log(c, tag)
            assert c.get("/healthz").status_code == 200
            if len(self.refused_alerts) >= 2 and len(self.refused_logs) >= 2:
                return
        pytest.fail(f"{limit} writes of each kind and the store never refused: {self}")

    def check_stored(self, c: httpx.Client) -> None:
        """Every acknowledged write is there, as sent."""
        for service, incident in self.alerts.items():
            r = c.get(f"/api/incidents/{incident}")
            assert r.status_code == 200, (service, r.text)
            assert r.json()["service"] == service
        for record_id, message in self.logs.items():
            r = c.get(f"/api/context/logs/{record_id}")
            assert r.status_code == 200 and r.json()["message"] == message, r.text
        stats = c.get("/api/stats").json()
        assert stats["incidents"]["total"] == len(self.alerts), stats
        logs = sum(1 for m in self.logs.values() if " line " in m)
        assert stats["context"]["logs"] == logs, stats


def refused(r: httpx.Response) -> None:
    """A refusal is a 503 with Retry-After, never a 200, 500 or anything else."""
    assert r.status_code == 503, f"{r.status_code}: {r.text[:300]}"
    assert int(r.headers["Retry-After"]) > 0
    assert "retry" in r.text


def metric(c: httpx.Client, name: str) -> float:
    text = c.get("/metrics").text
    match = re.search(rf"^{re.escape(name)} (\S+)$", text, re.M)
    assert match, f"{name} not in /metrics"
    return float(match.group(1))


def wait_ready(c: httpx.Client, timeout: float = 30.0) -> httpx.Response:
    deadline = time.monotonic() + timeout
    while True:
        r = c.get("/readyz")
        if r.status_code == 200 or time.monotonic() > deadline:
            return r
        assert c.get("/healthz").status_code == 200
        time.sleep(0.2)


def fault_and_recover(
    srv: ServerProcess,
    make_fault: Callable[[], None],
    fix_fault: Callable[[], None],
    why: str,
    during: Callable[[httpx.Client], None] | None = None,
    ledger: Ledger | None = None,
) -> Ledger:
    """The whole story against `srv`: writes before, during and after the fault
    (`during`: more checks while it lasts; `ledger`: the writes of an earlier story on
    the same store)."""
    ledger = ledger or Ledger()
    with srv.client(timeout=60) as c:
        for _ in range(3):  # before the fault
            assert ledger.alert(c, "before") == 200 and ledger.log(c, "before") == 200
        assert c.get("/readyz").status_code == 200
        assert metric(c, "incident_pilot_store_ready") == 1

        make_fault()
        ledger.write_until_refused(c, "during")
        r = c.get("/readyz")
        assert r.status_code == 503 and r.json()["store"].startswith(why), r.text
        assert int(r.headers["Retry-After"]) > 0
        assert c.get("/healthz").status_code == 200
        assert metric(c, "incident_pilot_store_ready") == 0
        failures = 'incident_pilot_store_write_failures_total{operation="%s"}'
        assert metric(c, failures % "alerts") >= 2 and metric(c, failures % "context") >= 2
        if during is not None:
            during(c)

        fix_fault()  # no restart: the same process takes writes again
        r = wait_ready(c)
        assert r.status_code == 200, r.text
        assert metric(c, "incident_pilot_store_ready") == 1
        for body in ledger.refused_alerts:  # never half-stored: each opens its incident now
            r = c.post("/alerts", json=body)
            assert r.status_code == 200 and r.json()["results"][0]["outcome"] == "opened", r.text
            ledger.alerts[body["labels"]["service"]] = r.json()["results"][0]["incident"]
        for body in ledger.refused_logs:
            r = c.post("/context/logs", json=body)
            assert r.status_code == 200, r.text
            ledger.logs[r.json()["ids"][0]] = body["message"]
        ledger.refused_alerts.clear()
        ledger.refused_logs.clear()
        assert ledger.alert(c, "after") == 200 and ledger.log(c, "after") == 200
        ledger.check_stored(c)
        assert "the store cannot commit" in srv.stderr_text()
    return ledger


# --- SQLite ------------------------------------------------------------------------------


@pytest.fixture
def tmpfs() -> Iterator[Path]:
    """A small filesystem of its own (8 MiB tmpfs), unmounted after the test."""
    try:
        mount = small_tmpfs("8m")
        where = mount.__enter__()
    except Unavailable as exc:
        pytest.skip(f"{exc}; test_sqlite_past_its_file_size_limit covers a full store")
    try:
        yield where
    finally:
        mount.__exit__(None, None, None)


def test_sqlite_on_a_full_filesystem(tmp_path, tmpfs) -> None:
    filler: list[Path] = []
    db = str(tmpfs / "incident-pilot.db")
    tried: list[str] = []

    def resolutions_refused(c: httpx.Client) -> None:
        """A resolution (by hand, or Alertmanager's) is a write too: 503, nothing done."""
        incident = next(iter(ledger_of_srv.alerts.values()))
        refused(c.post(f"/api/incidents/{incident}/resolve", json={"note": "fixed"}))
        service = next(iter(ledger_of_srv.alerts))
        body = make_alert(alertname="StoreFault", service=service, status="resolved")
        refused(c.post("/alerts", json=body))
        tried.append(incident)

    ledger_of_srv = Ledger()
    with ServerProcess(tmp_path, "--quiet", db=db) as srv:
        ledger = fault_and_recover(
            srv,
            lambda: filler.append(fill(tmpfs)),
            lambda: os.remove(filler[0]),
            why="disk full",
            during=resolutions_refused,
            ledger=ledger_of_srv,
        )
        srv.restart()  # and it all survives a restart
        with srv.client() as c:
            ledger.check_stored(c)
            assert tried and all(
                c.get(f"/api/incidents/{i}").json()["status"] == "open" for i in tried
            )


def test_sqlite_past_its_file_size_limit(tmp_path) -> None:
    """RLIMIT_FSIZE on the running server: every write that would grow a file past the
    limit fails with EFBIG (works where mounting a filesystem is refused)."""
    db = str(tmp_path / "incident-pilot.db")
    with ServerProcess(tmp_path, "--quiet", db=db) as srv:
        assert srv.proc is not None
        pid = srv.proc.pid

        def limit() -> None:
            # Room for the server's log (a file in the same process) to go on growing;
            # the database and its WAL reach the limit within a few dozen writes.
            log = tmp_path / "stderr.txt"
            limit_file_size(pid, max(os.path.getsize(db), log.stat().st_size) + 512 * 1024)

        try:
            limit_file_size(pid, None)
        except Unavailable as exc:
            pytest.skip(str(exc))
        fault_and_recover(srv, limit, lambda: limit_file_size(pid, None), why="I/O error")


def test_sqlite_locked_by_another_process_past_the_busy_timeout(tmp_path) -> None:
    """Another process holds SQLite's write lock for longer than the busy timeout (10 s):
    the write that waited is refused with 503, the service is not ready until the lock
    is gone, then takes the same write."""
    db = str(tmp_path / "incident-pilot.db")
    with ServerProcess(tmp_path, "--quiet", db=db) as srv, srv.client(timeout=60) as c:
        ledger = Ledger()
        assert ledger.alert(c, "before") == 200
        with sqlite_write_lock(db):
            started = time.monotonic()
            assert ledger.alert(c, "during") == 503
            assert time.monotonic() - started >= 9  # it waited out the busy timeout first
            r = c.get("/readyz")
            assert r.status_code == 503 and r.json()["store"].startswith("locked"), r.text
            assert c.get("/healthz").status_code == 200
        assert wait_ready(c).status_code == 200
        [body] = ledger.refused_alerts
        r = c.post("/alerts", json=body)
        assert r.status_code == 200 and r.json()["results"][0]["outcome"] == "opened"
        ledger.alerts[body["labels"]["service"]] = r.json()["results"][0]["incident"]
        ledger.check_stored(c)


def test_collectors_get_503_in_their_own_protocol(tmp_path, tmpfs) -> None:
    """Loki push (plain text) and OTLP (google.rpc.Status) get their 503 with Retry-After
    too, counted under their own operation."""
    srv = ServerProcess(tmp_path, "--quiet", db=str(tmpfs / "ip.db"))
    with srv, srv.client() as c:
        filler = fill(tmpfs)
        Ledger().write_until_refused(c, "fill")  # until the store refuses
        now = str(time.time_ns())
        line = "ERROR upstream timeout " + PAD
        loki = {"streams": [{"stream": {"service": "api"}, "values": [[now, line]]}]}
        r = c.post("/loki/api/v1/push", json=loki)
        assert r.status_code == 503 and int(r.headers["Retry-After"]) > 0, r.text
        assert r.headers["content-type"].startswith("text/plain")
        otlp = {
            "resourceLogs": [
                {
                    "resource": {
                        "attributes": [{"key": "service.name", "value": {"stringValue": "api"}}]
                    },
                    "scopeLogs": [
                        {
                            "logRecords": [
                                {
                                    "timeUnixNano": now,
                                    "severityText": "ERROR",
                                    "body": {"stringValue": line},
                                }
                            ]
                        }
                    ],
                }
            ]
        }
        r = c.post("/v1/logs", json=otlp)
        assert r.status_code == 503 and int(r.headers["Retry-After"]) > 0, r.text
        assert r.json()["code"] == 14  # google.rpc.Code UNAVAILABLE
        failures = 'incident_pilot_store_write_failures_total{operation="%s"}'
        assert metric(c, failures % "loki") == 1 and metric(c, failures % "otlp") == 1
        os.remove(filler)
        assert wait_ready(c).status_code == 200
        assert c.post("/loki/api/v1/push", json=loki).status_code == 204
        assert c.post("/v1/logs", json=otlp).status_code == 200


# --- PostgreSQL --------------------------------------------------------------------------


def reads_refused(c: httpx.Client) -> None:
    """With the database gone, the API's reads are 503 too (never a 500), quickly."""
    started = time.monotonic()
    r = c.get("/api/incidents")
    refused(r)
    assert time.monotonic() - started < 5
    assert metric(c, 'incident_pilot_store_write_failures_total{operation="read"}') >= 1


def test_postgres_stopped_mid_run_and_started_again(tmp_path) -> None:
    """A throwaway cluster of our own (never the shared server), stopped with clients
    connected, then started again; then made read-only, and writable again."""
    try:
        pg = ThrowawayPostgres()
    except Unavailable as exc:
        pytest.skip(str(exc))
    try:
        pg.start()
        url = pg.url + "?schema=faults"
        with ServerProcess(tmp_path, "--quiet", db=url) as srv:
            ledger = fault_and_recover(
                srv, pg.stop, pg.start, why="database unreachable", during=reads_refused
            )
            fault_and_recover(
                srv,
                lambda: pg.read_only(True),
                lambda: pg.read_only(False),
                why="read-only",
                ledger=ledger,
            )
    except Unavailable as exc:
        pytest.skip(str(exc))
    finally:
        pg.close()
