"""PostgreSQL specifics: URL parsing, migrations under concurrent starts, query plans,
multi-store (multi-replica) dedup and outbox claiming, batch ingest speed.

The behaviour shared with SQLite is in test_contract.py; these need
INCIDENT_PILOT_TEST_POSTGRES_DSN (they skip without it), except the URL tests.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from datetime import timedelta

import pytest

from engine.store import NewContext, NewDelivery, open_store
from engine.store.base import AlertOutcome
from engine.store.migrations import MIGRATION_NAMES, apply_migrations

from . import pg
from .helpers import MIN, RENOTIFY, T0, make_alert, make_draft

postgres = pytest.mark.postgres
needs_dsn = pytest.mark.skipif(pg.base_dsn() is None, reason=pg.SKIP_REASON)


@pytest.fixture
def schema_url() -> str:
    """A URL naming a brand-new schema (nothing created yet), dropped at the end of the run."""
    return pg.with_schema(pg.require_dsn(), pg.SCHEMAS.fresh("t"))


@pytest.fixture
def pair(schema_url: str) -> Iterator[tuple]:
    """Two stores (two pools), like two replicas, on one fresh schema."""
    a, b = open_store(schema_url), open_store(schema_url)
    try:
        yield a, b
    finally:
        a.close()
        b.close()


def _conn(store):
    return store.dialect.pool.connection()


# --- URL handling (no server needed) -------------------------------------------------


def test_parse_url_strips_our_parameters() -> None:
    from engine.store.postgres import parse_url

    conninfo, schema, pool = parse_url(
        "postgresql://u:pw@db.example:6432/incidents?sslmode=require&schema=ip_a&pool_size=4"
    )
    assert (schema, pool) == ("ip_a", 4)
    from psycopg.conninfo import conninfo_to_dict

    params = conninfo_to_dict(conninfo)
    assert params["options"] == "-c search_path=ip_a"
    assert (params["host"], params["port"], params["dbname"]) == ("db.example", "6432", "incidents")
    assert params["sslmode"] == "require" and "schema" not in params
    assert params["application_name"] == "incident-pilot"
    # Options already in the URL are kept; no schema -> search_path untouched.
    conninfo, schema, pool = parse_url("postgres://h/db?options=-c%20work_mem%3D8MB&schema=s1")
    assert conninfo_to_dict(conninfo)["options"] == "-c work_mem=8MB -c search_path=s1"
    conninfo, schema, pool = parse_url("postgresql://h/db")
    assert (schema, pool) == (None, None) and "options" not in conninfo_to_dict(conninfo)


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://h/db?schema=1abc",
        "postgresql://h/db?schema=a;drop",
        "postgresql://h/db?schema=",
        "postgresql://h/db?pool_size=0",
        "postgresql://h/db?pool_size=many",
    ],
)
def test_parse_url_rejects_bad_values(url: str) -> None:
    from engine.store.postgres import parse_url

    with pytest.raises(ValueError):
        parse_url(url)


def test_unreachable_server_is_a_plain_error() -> None:
    with pytest.raises(ValueError, match=r"cannot connect to postgresql://u:\*\*\*@127\.0\.0\.1:1"):
        open_store("postgresql://u:secret@127.0.0.1:1/db")


@postgres
@needs_dsn
def test_both_engines_get_the_same_tables_columns_and_indexes(pair, tmp_path) -> None:
    """One DDL text per migration: the words that differ are filled in per engine, and
    what comes out has the same shape on both."""
    import sqlite3

    store, _ = pair
    lite_path = str(tmp_path / "shape.db")
    open_store(lite_path).close()
    lite = sqlite3.connect(lite_path)
    tables = [r[0] for r in lite.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
    lite_shape = {
        t: [r[1] for r in lite.execute(f"PRAGMA table_info({t})")]
        for t in tables
        if not t.startswith("sqlite_")
    }
    lite_indexes = {
        r[0]
        for r in lite.execute("SELECT name FROM sqlite_master WHERE type = 'index'")
        if not r[0].startswith("sqlite_")
    }
    lite.close()
    with _conn(store) as conn:
        pg_shape = {
            t: [
                r[0]
                for r in conn.execute(
                    "SELECT column_name FROM information_schema.columns"
                    " WHERE table_schema = %s AND table_name = %s ORDER BY ordinal_position",
                    (store.schema, t),
                )
            ]
            for t in lite_shape
        }
        pg_indexes = {
            r[0]
            for r in conn.execute(
                "SELECT indexname FROM pg_indexes WHERE schemaname = %s", (store.schema,)
            )
            if not r[0].endswith("_pkey") and not r[0].endswith("_key")
        }
    assert set(lite_shape) >= {"deploys", "logs", "traces", "incidents", "alerts", "deliveries"}
    assert pg_shape == lite_shape
    assert pg_indexes == lite_indexes


# --- migrations ------------------------------------------------------------------


@postgres
@needs_dsn
def test_concurrent_starts_on_a_fresh_schema_migrate_once(schema_url: str) -> None:
    n = 4
    barrier = threading.Barrier(n)
    stores, failures = [], []

    def start() -> None:
        barrier.wait()
        try:
            stores.append(open_store(schema_url))
        except Exception as exc:  # pragma: no cover - the assertion below reports it
            failures.append(exc)

    threads = [threading.Thread(target=start) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    try:
        assert failures == [] and len(stores) == n
        with _conn(stores[0]) as conn:
            rows = conn.execute("SELECT version, name FROM schema_migrations ORDER BY 1").fetchall()
            assert rows == list(enumerate(MIGRATION_NAMES, start=1))
        # Every store works on the shared schema.
        stores[1].record_firing(make_draft(), now=T0, renotify_after=RENOTIFY)
        assert stores[2].stats()["incidents"]["open"] == 1
    finally:
        for s in stores:
            s.close()
    # Opening again applies nothing.
    with open_store(schema_url) as again:
        assert apply_migrations(again.dialect) == []


def test_reset_for_tests_refuses_a_shared_schema() -> None:
    from engine.store.postgres import PostgresDialect

    dialect = PostgresDialect.__new__(PostgresDialect)  # no connection needed for the guard
    dialect.schema = None
    with pytest.raises(RuntimeError, match="scratch"):
        dialect.reset(["incidents"])


# --- indexes -----------------------------------------------------------------


@postgres
@needs_dsn
@pytest.mark.parametrize("kind", ["deploys", "logs", "traces"])
def test_query_context_uses_the_indexes(pair, kind: str) -> None:
    from engine.store.sql import context_query_sql

    store, _ = pair
    store.add_context([NewContext(kind, f"s{i % 50}", T0 - i * MIN, {}) for i in range(2000)])
    start, end = T0.timestamp() - 600 * 60, T0.timestamp()
    shapes = {
        f"{kind}_service_ts": (
            context_query_sql(kind, with_service=True).replace("?", "%s"),
            ("s1", start, end, 5),
        ),
        f"{kind}_ts": (
            context_query_sql(kind, with_service=False).replace("?", "%s"),
            (start, end, None),
        ),
    }
    with _conn(store) as conn, conn.transaction():
        conn.execute("ANALYZE " + kind)
        # A 2000-row table is cheaper to scan: forbid that, as it would be on a big one.
        conn.execute("SET LOCAL enable_seqscan = off")
        for index, (sql, args) in shapes.items():
            plan = "\n".join(r[0] for r in conn.execute("EXPLAIN " + sql, args))
            assert f"using {index} on {kind}" in plan or f"Index Scan on {index}" in plan, plan
            assert "Seq Scan" not in plan, plan
        # And the index order is the answer's order: read backwards, no sort step needed.
        conn.execute("SET LOCAL enable_bitmapscan = off")
        conn.execute("SET LOCAL enable_sort = off")
        for index, (sql, args) in shapes.items():
            plan = "\n".join(r[0] for r in conn.execute("EXPLAIN " + sql, args))
            assert f"Index Scan Backward using {index} on {kind}" in plan, plan
            assert "Sort" not in plan and "Filter" not in plan, plan


# --- several stores on one schema (replicas) --------------------------------------


@postgres
@needs_dsn
def test_identical_firings_across_stores_open_one_incident(pair) -> None:
    n_threads, per_thread = 16, 10
    barrier = threading.Barrier(n_threads)
    kinds: list[str] = []
    lock = threading.Lock()

    def worker(n: int) -> None:
        store = pair[n % 2]
        barrier.wait()
        for i in range(per_thread):
            out = store.record_firing(make_draft(id=f"t{n}-{i}"), now=T0, renotify_after=RENOTIFY)
            with lock:
                kinds.append(out.kind)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    total = n_threads * per_thread
    assert Counter(kinds) == {"opened": 1, "repeat": total - 1}
    (inc,) = pair[0].list_incidents()
    assert inc.repeat_count == total - 1
    assert pair[1].stats()["alerts"]["total"] == 1


@postgres
@needs_dsn
def test_new_firings_of_one_fingerprint_across_stores_share_one_incident(pair) -> None:
    n = 24
    barrier = threading.Barrier(n)
    kinds: list[str] = []

    def worker(i: int) -> None:
        barrier.wait()
        draft = make_draft(make_alert(starts_at=T0 + i * timedelta(seconds=1)), id=f"x{i}")
        kinds.append(pair[i % 2].record_firing(draft, now=T0, renotify_after=RENOTIFY).kind)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert Counter(kinds) == {"opened": 1, "attached": n - 1}
    (inc,) = pair[1].list_incidents(status="open", limit=None, fingerprint="fp-a")
    assert inc.attached_count == n - 1
    assert pair[0].stats()["alerts"]["firing"] == n
    # Every alert row points at the incident that was opened (deferred FK honoured).
    with _conn(pair[0]) as conn:
        assert conn.execute("SELECT DISTINCT incident_id FROM alerts").fetchall() == [(inc.id,)]


@postgres
@needs_dsn
def test_firings_and_resolutions_racing_keep_one_open_incident(pair) -> None:
    """Manual resolves, Alertmanager resolutions and new firings of few fingerprints at
    once: lock-order conflicts are retried, never surface, never break the invariants."""
    fps = [f"fp-{i}" for i in range(3)]
    errors: list[BaseException] = []
    starts = itertools.count(1)
    lock = threading.Lock()

    def worker(w: int) -> None:
        store = pair[w % 2]
        try:
            for i in range(25):
                fp = fps[(w + i) % len(fps)]
                with lock:
                    s = next(starts)
                at = T0 + s * timedelta(seconds=1)
                if i % 5 == 4:
                    for inc in store.list_incidents(status="open", limit=None, fingerprint=fp):
                        store.resolve_incident(inc.id, at=at, note="by hand")
                elif i % 5 == 3:
                    store.record_resolved(
                        make_alert(fp, starts_at=at, status="resolved", ends_at=at), now=at
                    )
                else:
                    store.record_firing(
                        make_draft(make_alert(fp, starts_at=at)), now=at, renotify_after=RENOTIFY
                    )
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(w,)) for w in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with _conn(pair[0]) as conn:
        per_fp = conn.execute(
            "SELECT fingerprint, COUNT(*) FROM incidents WHERE status = 'open' GROUP BY 1"
        ).fetchall()
        assert all(count == 1 for _, count in per_fp)
        orphans = conn.execute(
            "SELECT COUNT(*) FROM alerts a LEFT JOIN incidents i ON i.id = a.incident_id"
            " WHERE i.id IS NULL"
        ).fetchone()[0]
        assert orphans == 0


def _plan(events: list[str]):
    def plan(outcome: AlertOutcome) -> list[NewDelivery]:
        if outcome.kind != "opened":
            return []
        return [NewDelivery("pager", e, {"seq": n}) for n, e in enumerate(events)]

    return plan


@postgres
@needs_dsn
def test_outbox_claims_across_stores_exactly_once_in_order(pair) -> None:
    """Two stores (two pools), many threads each claiming and finishing: every delivery
    is claimed exactly once, and an incident's next delivery is only claimed once the
    previous one was finished, in id order."""
    a, b = pair
    incidents, per_incident = 30, 5
    events = [f"e{n}" for n in range(per_incident)]
    for i in range(incidents):
        draft = make_draft(make_alert(f"fp-{i}"))
        (a if i % 2 else b).record_firing(
            draft, now=T0, renotify_after=RENOTIFY, plan=_plan(events)
        )
    total = incidents * per_incident
    assert a.stats()["outbox"]["pending"] == total

    lock = threading.Lock()
    claimed: list[int] = []
    finishing: set[int] = set()  # added before finish_delivery is called
    order: dict[str, list[int]] = defaultdict(list)
    out_of_order: list[tuple[int, int]] = []
    previous: dict[int, int] = {}  # delivery id -> the id before it in its incident
    errors: list[BaseException] = []

    def worker(w: int) -> None:
        store = pair[w % 2]
        try:
            idle = 0
            while idle < 50:
                got = store.claim_deliveries(
                    now=T0 + MIN, limit=4, lease=timedelta(hours=1), worker=f"w{w}"
                )
                if not got:
                    idle += 1
                    time.sleep(0.002)
                    continue
                idle = 0
                with lock:
                    for d in got:
                        claimed.append(d.id)
                        order[d.incident_id].append(d.id)
                        before = previous.get(d.id)
                        if before is not None and before not in finishing:
                            out_of_order.append((before, d.id))
                for d in got:
                    with lock:
                        finishing.add(d.id)
                    store.finish_delivery(d.id, ok=True, now=T0 + MIN)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    with _conn(a) as conn:
        rows = conn.execute("SELECT id, incident_id FROM deliveries ORDER BY incident_id, id")
        last: dict[str, int] = {}
        for did, iid in rows:
            if iid in last:
                previous[did] = last[iid]
            last[iid] = did
    threads = [threading.Thread(target=worker, args=(w,)) for w in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    counts = Counter(claimed)
    assert len(counts) == total and set(counts.values()) == {1}, "a delivery claimed twice"
    assert out_of_order == []
    assert all(ids == sorted(ids) for ids in order.values())
    assert all(len(ids) == per_incident for ids in order.values())
    assert b.stats()["outbox"] == {"pending": 0, "sending": 0, "delivered": total, "dead": 0}


@postgres
@needs_dsn
def test_concurrent_prunes_share_the_work(pair, monkeypatch) -> None:
    a, b = pair
    a.add_context([NewContext("logs", "s", T0 - i * timedelta(seconds=1), {}) for i in range(3000)])
    from engine.store import retention

    monkeypatch.setattr(retention, "CHUNK", 100)  # many small chunks: the pruners interleave
    monkeypatch.setattr(retention, "MAX_CHUNK", 100)
    results: list[int] = []
    threads = [
        threading.Thread(target=lambda s=s: results.append(s.prune_context(T0))) for s in (a, b)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(results) == 2999  # all but the record at T0 itself; none deleted twice
    assert a.context_counts()["logs"] == 1


@postgres
@needs_dsn
def test_a_lost_race_is_retried_and_plan_runs_again(pair, monkeypatch) -> None:
    from psycopg import errors

    from engine.store import firing as postgres_incidents

    store, _ = pair
    real, calls = postgres_incidents.record_firing, []

    def flaky(conn, *args):
        out = real(conn, *args)  # the incident is written, then the transaction fails
        calls.append(out.kind)
        if len(calls) == 1:
            raise errors.SerializationFailure("could not serialize access (test)")
        return out

    monkeypatch.setattr(postgres_incidents, "record_firing", flaky)
    planned: list[str] = []

    def plan(outcome: AlertOutcome) -> list[NewDelivery]:
        planned.append(outcome.kind)
        return [NewDelivery("pager", "trigger")]

    out = store.record_firing(make_draft(), now=T0, renotify_after=RENOTIFY, plan=plan)
    assert out.kind == "opened" and calls == ["opened", "opened"]
    assert planned == ["opened"]  # the first plan() never ran: the failure came before it
    s = store.stats()
    assert (s["incidents"]["total"], s["outbox"]["pending"]) == (1, 1)  # first try rolled back


@postgres
@needs_dsn
def test_plan_reads_inside_the_transaction_with_a_pool_of_one(schema_url: str) -> None:
    """plan() may read the store: it uses the transaction's connection (and sees the
    uncommitted incident), so even a pool of one connection cannot deadlock."""
    seen = []
    with open_store(schema_url.replace("?", "?pool_size=1&", 1)) as store:
        assert store.pool_size == 1

        def plan(outcome: AlertOutcome) -> list[NewDelivery]:
            seen.append(store.get_incident(outcome.incident.id))
            seen.append(len(store.list_incidents(status="open", limit=None)))
            return []

        out = store.record_firing(make_draft(), now=T0, renotify_after=RENOTIFY, plan=plan)
    assert seen == [out.incident, 1]


# --- speed -----------------------------------------------------------------------


@postgres
@needs_dsn
def test_batch_ingest_of_10k_records(pair, record_property) -> None:
    store, _ = pair
    batch = [
        NewContext(
            ("deploys", "logs", "traces")[i % 3],
            f"svc-{i % 20}",
            T0 - i * timedelta(seconds=1),
            {"level": "ERROR", "message": f"m{i}"}
            if i % 3 == 1
            else {"commit": f"c{i}", "author": "ana"}
            if i % 3 == 0
            else {"trace_id": f"t{i}", "duration_ms": float(i)},
        )
        for i in range(10_000)
    ]
    store.add_context(batch[:10])  # warm the pool
    t = time.perf_counter()
    out = store.add_context(batch)
    elapsed = time.perf_counter() - t
    record_property("ingest_10k_seconds", round(elapsed, 3))
    print(f"\nadd_context: 10,000 records in {elapsed * 1000:.0f} ms")
    assert len({(r.kind, r.id) for r in out}) == 10_000
    assert store.get_context(out[-1].kind, out[-1].id) == out[-1]
    assert sum(store.context_counts().values()) == 10_010
    assert elapsed < 10, f"10k records took {elapsed:.1f}s"
