"""Two real server processes on one PostgreSQL schema: what running replicas promises.

`python -m engine serve --db <dsn>?schema=<scratch>` twice, on two free loopback ports,
behind no load balancer: the tests spread requests over both themselves. A stand-in HTTP
sink (a generic `webhook` sink in each replica's --config) records what reaches it; the
replicas' configs differ only in an `X-Replica` header, so the sink knows who sent what.

Needs INCIDENT_PILOT_TEST_POSTGRES_DSN (skips without it). The schema is made by the
servers (both migrating at once) and dropped at the end.
"""

from __future__ import annotations

import json
import os
import secrets
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

import httpx
import pytest

from engine.server.run import prune_interval
from engine.testing import ServerProcess

DSN_ENV = "INCIDENT_PILOT_TEST_POSTGRES_DSN"
DSN = os.environ.get(DSN_ENV)

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.e2e,
    pytest.mark.slow,
    pytest.mark.skipif(
        not DSN, reason=f"set {DSN_ENV} to a scratch PostgreSQL database to run the replica tests"
    ),
]

RETENTION_SECONDS = 20
PRUNE_EVERY = prune_interval(timedelta(seconds=RETENTION_SECONDS))  # how often each prunes
LEASE = "3s"  # short, so the kill test is quick; the sink timeout must stay below it
SECRET_ENV = "IP_TEST_HOOK_SECRET"


# --- helpers ------------------------------------------------------------------------


def with_schema(dsn: str, schema: str) -> str:
    parts = urlsplit(dsn)
    query = [(k, v) for k, v in parse_qsl(parts.query) if k != "schema"] + [("schema", schema)]
    return urlunsplit(parts._replace(query=urlencode(query, quote_via=quote)))


def iso(ts: datetime) -> str:
    return ts.astimezone(UTC).isoformat().replace("+00:00", "Z")


def wait_for(check: Callable[[], Any], timeout: float, what: str, every: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(every)


def alert_body(fingerprint: str, starts_at: datetime) -> dict:
    """One firing alert; its own service, so the shipped incident.duplicate_open rule
    (same service + alertname) does not attach it to another test's incident."""
    service = f"svc-{fingerprint}"
    return {
        "version": "4",
        "status": "firing",
        "receiver": "incident-pilot",
        "groupLabels": {"alertname": "HighErrorRate"},
        "commonLabels": {},
        "commonAnnotations": {},
        "externalURL": "http://alertmanager.example:9093",
        "alerts": [
            {
                "status": "firing",
                "fingerprint": fingerprint,
                "labels": {
                    "alertname": "HighErrorRate",
                    "service": service,
                    "severity": "critical",
                    "instance": fingerprint,
                },
                "annotations": {"summary": f"5xx above 5% ({fingerprint})"},
                "startsAt": iso(starts_at),
                "endsAt": "0001-01-01T00:00:00Z",
                "generatorURL": "http://prometheus.example:9090/graph",
            }
        ],
    }


def new_fingerprint() -> str:
    return secrets.token_hex(8)


# --- the stand-in sink ------------------------------------------------------------------


@dataclass
class Hit:
    replica: str
    delivery: str  # X-Incident-Pilot-Delivery: stable across retries
    event: str
    incident: str
    answered: bool = False


@dataclass
class Sink:
    port: int
    hits: list[Hit] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    hold: set[str] = field(default_factory=set)  # replicas whose requests get no answer
    release: threading.Event = field(default_factory=threading.Event)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def for_incident(self, incident: str) -> list[Hit]:
        with self.lock:
            return [h for h in self.hits if h.incident == incident]

    def snapshot(self) -> list[Hit]:
        with self.lock:
            return list(self.hits)


def start_sink() -> tuple[Sink, ThreadingHTTPServer]:
    sink = Sink(port=0)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            hit = Hit(
                replica=self.headers.get("X-Replica", "?"),
                delivery=self.headers.get("X-Incident-Pilot-Delivery", ""),
                event=body.get("event", ""),
                incident=(body.get("incident") or {}).get("id", ""),
            )
            with sink.lock:
                sink.hits.append(hit)
                held = hit.replica in sink.hold
            if held:
                sink.release.wait(15)  # the sender is killed meanwhile: nobody reads this
                return
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")
            with sink.lock:
                hit.answered = True

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    sink.port = server.server_address[1]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return sink, server


# --- the replicas -----------------------------------------------------------------------


@dataclass
class Replica:
    name: str
    server: ServerProcess

    @property
    def base(self) -> str:
        return self.server.url

    def log_text(self) -> str:
        return self.server.stdout_text() + self.server.stderr_text()

    def errors(self) -> list[str]:
        bad = ("Traceback", "level=error", "pruning context failed", "internal error")
        return [line for line in self.log_text().splitlines() if any(b in line for b in bad)]


def write_config(path: Path, sink: Sink, replica: str) -> None:
    path.write_text(
        f"""
delivery:
  lease: {LEASE}
  poll_interval: 200ms
  base_delay: 200ms
  max_delay: 1s
  workers: 4
sinks:
  hook:
    type: webhook
    url: {sink.url}
    secret_env: {SECRET_ENV}
    timeout: 2s
    headers: {{X-Replica: {replica}}}
routes:
  default:
    - sink: hook
"""
    )


def launch_replica(name: str, url: str, config: Path, tmp: Path) -> Replica:
    """`serve` on the shared schema, launched without waiting (see the `cluster` fixture)."""
    server = ServerProcess(
        tmp / f"replica-{name}",
        "--quiet",
        "--retention",
        f"{RETENTION_SECONDS}s",
        "--config",
        str(config),
        "--log-level",
        "warning",
        db=url,
        env={SECRET_ENV: "stand-in-secret"},
        startup_timeout=30,
    )
    return Replica(name, server.launch())


@dataclass
class Cluster:
    a: Replica
    b: Replica
    sink: Sink
    url: str  # the store URL, with the schema

    @property
    def replicas(self) -> tuple[Replica, Replica]:
        return self.a, self.b

    def sql(self, query: str, args: tuple = ()) -> list[tuple]:
        import psycopg

        from engine.store.postgres import parse_url

        with psycopg.connect(parse_url(self.url)[0], autocommit=True) as conn:
            return conn.execute(query, args).fetchall()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    assert DSN is not None
    schema = f"ip_test_{os.getpid()}_r{secrets.token_hex(4)}"
    url = with_schema(DSN, schema)
    tmp = tmp_path_factory.mktemp("replicas")
    sink, server = start_sink()
    replicas: list[Replica] = []
    try:
        for name in ("a", "b"):  # started together: both migrate the fresh schema at once
            write_config(tmp / f"config-{name}.yaml", sink, name)
            replicas.append(launch_replica(name, url, tmp / f"config-{name}.yaml", tmp))
        for r in replicas:
            r.server.wait_ready()
        yield Cluster(replicas[0], replicas[1], sink, url)
    finally:
        for r in replicas:
            r.server.close()
        sink.release.set()
        server.shutdown()
        import psycopg

        with psycopg.connect(DSN, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


# --- tests ------------------------------------------------------------------------------


def test_both_replicas_migrated_one_schema_once(cluster: Cluster) -> None:
    from engine.store.migrations import MIGRATION_NAMES

    rows = cluster.sql("SELECT version, name FROM schema_migrations ORDER BY version")
    assert rows == list(enumerate(MIGRATION_NAMES, start=1))


def test_200_copies_across_replicas_make_one_incident(cluster: Cluster) -> None:
    """Alertmanager HA pairs send every notification to every replica; retries add more.
    200 copies of one firing, from 20 client threads split over both replicas: one
    incident, 199 repeats, and exactly one page at the sink."""
    fp, starts = new_fingerprint(), datetime.now(UTC) - timedelta(minutes=1)
    body = alert_body(fp, starts)

    def send(n: int) -> list[str]:
        outcomes = []
        with httpx.Client(timeout=30) as client:
            for i in range(10):
                replica = cluster.replicas[(n + i) % 2]
                resp = client.post(replica.base + "/alerts", json=body)
                assert resp.status_code == 200, resp.text
                (result,) = resp.json()["results"]
                outcomes.append((result["outcome"], result["incident"]))
        return outcomes

    with ThreadPoolExecutor(20) as pool:
        results = [o for chunk in pool.map(send, range(20)) for o in chunk]
    assert Counter(kind for kind, _ in results) == {"opened": 1, "repeat": 199}
    (incident_id,) = {iid for _, iid in results}
    for replica in cluster.replicas:
        inc = httpx.get(f"{replica.base}/api/incidents/{incident_id}", timeout=10).json()
        assert (inc["id"], inc["repeat_count"], inc["status"]) == (incident_id, 199, "open")
        listed = httpx.get(f"{replica.base}/api/incidents?status=open", timeout=10).json()
        assert [i["id"] for i in listed["incidents"]].count(incident_id) == 1
    # Exactly one page: one trigger delivery, sent once, by one replica.
    wait_for(lambda: cluster.sink.for_incident(incident_id), 10, "the page to reach the sink")
    time.sleep(1.0)  # both workers poll every 200 ms: a second copy would show up by now
    hits = cluster.sink.for_incident(incident_id)
    assert [(h.event, h.answered) for h in hits] == [("trigger", True)], hits
    rows = cluster.sql(
        "SELECT event, status, attempts FROM deliveries WHERE incident_id = %s", (incident_id,)
    )
    assert rows == [("trigger", "delivered", 1)]
    assert cluster.a.errors() == [] and cluster.b.errors() == []


def test_retention_pruning_while_both_replicas_ingest(cluster: Cluster) -> None:
    """Both replicas prune every 10 s (the short --retention) while both take context
    batches mixing records older than the retention with fresh ones: no request fails,
    old records go, every fresh one stays."""
    tag = secrets.token_hex(4)
    assert PRUNE_EVERY <= 10, "the pruning interval grew: this test would take too long"
    stop_at = time.monotonic() + PRUNE_EVERY + 1.5  # covers one prune of each replica
    fresh_ids: list[str] = []
    stored_old = 0
    lock = threading.Lock()
    failures: list[str] = []

    def ingest(n: int) -> None:
        nonlocal stored_old
        with httpx.Client(timeout=30) as client:
            i = 0
            while time.monotonic() < stop_at:
                now = datetime.now(UTC)
                batch = []
                for j in range(40):
                    old = j % 2 == 0
                    ts = now - timedelta(hours=2) if old else now
                    batch.append(
                        {
                            "service": f"svc-{tag}",
                            "message": f"{'old' if old else 'new'} {n}-{i}-{j}",
                            "ts": iso(ts),
                        }
                    )
                replica = cluster.replicas[(n + i) % 2]
                resp = client.post(replica.base + "/context/logs", json=batch)
                i += 1
                if resp.status_code != 200:
                    failures.append(f"{resp.status_code} {resp.text[:200]}")
                    continue
                ids = resp.json()["ids"]
                with lock:
                    fresh_ids.extend(ids[1::2])
                    stored_old += len(ids[0::2])
                time.sleep(0.02)

    threads = [threading.Thread(target=ingest, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == []
    assert fresh_ids and stored_old
    svc = f"svc-{tag}"
    (fresh_left,) = cluster.sql(
        "SELECT COUNT(*) FROM logs WHERE service = %s AND message LIKE 'new %%'", (svc,)
    )[0]
    (old_left,) = cluster.sql(
        "SELECT COUNT(*) FROM logs WHERE service = %s AND message LIKE 'old %%'", (svc,)
    )[0]
    assert fresh_left == len(fresh_ids)  # nothing fresh was pruned
    assert old_left < stored_old, "no pruning happened while ingesting"
    # A fresh record is served by either replica.
    for replica in cluster.replicas:
        resp = httpx.get(f"{replica.base}/api/context/logs/{fresh_ids[0]}", timeout=10)
        assert resp.status_code == 200
    assert cluster.a.errors() == [] and cluster.b.errors() == []


def test_killed_replica_leaves_its_deliveries_to_the_other(cluster: Cluster) -> None:
    """Replica a is SIGKILLed while the sink holds its sends unanswered: its claimed
    deliveries stay 'sending' until their lease (3 s) expires, then replica b sends them.
    Every incident's page arrives, answered by b. (Runs last: it kills replica a.)"""
    cluster.sink.hold.add("a")
    starts = datetime.now(UTC) - timedelta(minutes=1)
    fps = [new_fingerprint() for _ in range(8)]
    incidents = []
    with httpx.Client(timeout=30) as client:
        for fp in fps:  # all to replica a: it is woken at once and claims first
            resp = client.post(cluster.a.base + "/alerts", json=alert_body(fp, starts))
            assert resp.status_code == 200
            incidents.append(resp.json()["results"][0]["incident"])
    wait_for(
        lambda: [
            h for h in cluster.sink.snapshot() if h.replica == "a" and h.incident in incidents
        ],
        10,
        f"replica a to start sending (sink saw {[(h.replica, h.event) for h in cluster.sink.snapshot()][-12:]})",
    )
    cluster.a.server.kill()  # SIGKILL: no shutdown, no finish_delivery for what it holds
    mine = set(incidents)
    held = {
        h.delivery
        for h in cluster.sink.snapshot()
        if h.replica == "a" and h.incident in mine and not h.answered
    }
    assert held, "replica a held nothing when it was killed"
    cluster.sink.release.set()

    def all_delivered() -> bool:
        rows = cluster.sql(
            "SELECT status FROM deliveries WHERE incident_id = ANY(%s)", (incidents,)
        )
        return len(rows) == len(incidents) and all(s == "delivered" for (s,) in rows)

    try:
        wait_for(all_delivered, 20, "replica b to deliver everything", every=0.2)
    except AssertionError:
        rows = cluster.sql(
            "SELECT id, incident_id, status, attempts, worker, lease_until, last_error"
            " FROM deliveries WHERE incident_id = ANY(%s) ORDER BY id",
            (incidents,),
        )
        raise AssertionError(
            f"not all delivered: {rows}\nsink: {cluster.sink.snapshot()}\n"
            f"b: {cluster.b.log_text()[-3000:]}"
        ) from None
    hits = [h for h in cluster.sink.snapshot() if h.incident in mine]
    answered_by_b = {h.incident for h in hits if h.replica == "b" and h.answered}
    assert answered_by_b == set(incidents)
    # What a held when it died was sent again by b, under the same delivery id.
    assert held <= {h.delivery for h in hits if h.replica == "b" and h.answered}
    rows = cluster.sql(
        "SELECT MAX(attempts) FROM deliveries WHERE incident_id = ANY(%s)", (incidents,)
    )
    assert rows[0][0] >= 2  # at least one delivery was claimed again after a's lease
    assert cluster.b.errors() == []
