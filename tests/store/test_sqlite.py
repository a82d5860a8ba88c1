"""SQLite specifics: query plans, concurrency, durability, migrations, open_store URLs."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path

import pytest

from engine.store import NewContext, NewDelivery, firing, incidents, open_store
from engine.store.migrations import (
    MIGRATION_NAMES,
    MIGRATIONS,
    MigrationError,
    apply_migrations,
    split_sql,
)
from engine.store.sqlite import SQLiteDialect, SQLiteStore

from .helpers import MIN, RENOTIFY, T0, make_alert, make_draft


@pytest.fixture
def db_path(tmp_path: Path) -> str:
    return str(tmp_path / "ip.db")


def _plan(store: SQLiteStore, sql: str, args: tuple) -> str:
    with store.dialect.read() as conn:
        return " | ".join(row[-1] for row in conn.execute("EXPLAIN QUERY PLAN " + sql, args))


@pytest.mark.parametrize("kind", ["deploys", "logs", "traces"])
def test_query_context_uses_the_indexes(db_path: str, kind: str) -> None:
    store = SQLiteStore(db_path)
    store.add_context([NewContext(kind, f"s{i % 5}", T0 - i * MIN, {}) for i in range(200)])
    # Capture the exact SQL query_context runs, then ask SQLite how it runs it.
    seen: list[tuple[str, tuple]] = []
    with store.dialect.read() as conn:
        conn.set_trace_callback(lambda s: seen.append(s))
    store.query_context(kind, start=T0 - 10 * MIN, end=T0, service="s1", limit=5)
    store.query_context(kind, start=T0 - 10 * MIN, end=T0)
    with store.dialect.read() as conn:
        conn.set_trace_callback(None)
    selects = [s for s in seen if s.lstrip().upper().startswith("SELECT")]
    assert len(selects) == 2
    with_service, without = (_plan(store, "SELECT" + s.split("SELECT", 1)[1], ()) for s in selects)
    assert f"USING INDEX {kind}_service_ts (service=? AND ts>? AND ts<?)" in with_service
    assert f"USING INDEX {kind}_ts (ts>? AND ts<?)" in without
    for plan in (with_service, without):
        assert "SCAN" not in plan and "TEMP B-TREE" not in plan, plan  # no full scan, no sort
    store.close()


def test_file_store_pragmas(db_path: str) -> None:
    store = SQLiteStore(db_path)
    with store.dialect.read() as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
        assert conn.execute("PRAGMA busy_timeout").fetchone()[0] >= 1000
        assert conn.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
    store.close()


def test_concurrent_identical_firings_open_once(db_path: str) -> None:
    store = SQLiteStore(db_path)
    barrier = threading.Barrier(8)
    kinds: list[str] = []

    def worker(n: int) -> None:
        barrier.wait()
        out = store.record_firing(make_draft(id=f"t{n}"), now=T0, renotify_after=RENOTIFY)
        kinds.append(out.kind)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert Counter(kinds) == {"opened": 1, "repeat": 7}
    (inc,) = store.list_incidents()
    assert inc.repeat_count == 7
    store.close()


def test_two_stores_on_one_file_still_open_one_incident(db_path: str) -> None:
    """Two SQLiteStore objects have separate locks and connections, like two processes:
    BEGIN IMMEDIATE (plus the partial unique index) still allows one open incident."""
    stores = [SQLiteStore(db_path), SQLiteStore(db_path)]
    barrier = threading.Barrier(8)
    kinds: list[str] = []

    def worker(n: int) -> None:
        barrier.wait()
        draft = make_draft(make_alert(starts_at=T0 + n * MIN), id=f"p{n}")
        kinds.append(stores[n % 2].record_firing(draft, now=T0, renotify_after=RENOTIFY).kind)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert Counter(kinds) == {"opened": 1, "attached": 7}
    assert len(stores[0].list_incidents(status="open", limit=None, fingerprint="fp-a")) == 1
    for s in stores:
        s.close()


def test_partial_unique_index_refuses_a_second_open_incident(db_path: str) -> None:
    store = SQLiteStore(db_path)
    inc = store.record_firing(make_draft(), now=T0, renotify_after=RENOTIFY).incident
    with pytest.raises(sqlite3.IntegrityError):
        store.dialect.write(
            lambda conn: conn.execute(
                "INSERT INTO incidents (id, fingerprint, status, title, severity, opened_at,"
                " last_seen, alert, findings) SELECT 'x', fingerprint, 'open', title, severity,"
                " opened_at, last_seen, alert, findings FROM incidents WHERE id = ?",
                (inc.id,),
            )
        )
    store.close()


def test_reopen_keeps_everything(db_path: str) -> None:
    store = SQLiteStore(db_path)
    recs = store.add_context([NewContext("logs", "api", T0, {"message": "x", "pod": "p"})])
    plan = lambda o: [NewDelivery("pager", "trigger", {"a": 1})]  # noqa: E731
    out = store.record_firing(make_draft(), now=T0, renotify_after=RENOTIFY, plan=plan)
    store.set_narration(out.incident.id, {"text": "hi"})
    before = store.stats()
    store.close()
    store.close()  # idempotent

    again = SQLiteStore(db_path)
    assert again.stats() == before
    assert again.get_context("logs", recs[0].id) == recs[0]
    assert again.get_incident(out.incident.id) == replace(out.incident, narration={"text": "hi"})
    (d,) = again.claim_deliveries(now=T0, limit=5, lease=MIN, worker="w")
    assert d.payload == {"a": 1}
    # New ids keep counting up: AUTOINCREMENT never hands out an old id again.
    (more,) = again.add_context([NewContext("logs", "api", T0, {})])
    assert int(more.id) > int(recs[0].id)
    again.close()


def test_closed_store_refuses_work(db_path: str) -> None:
    store = SQLiteStore(db_path)
    store.close()
    with pytest.raises(RuntimeError, match="closed"):
        store.add_context([NewContext("logs", "api", T0, {})])
    with pytest.raises(RuntimeError, match="closed"):
        store.stats()


def test_reads_from_many_threads_see_commits(db_path: str) -> None:
    store = SQLiteStore(db_path)
    errors: list[BaseException] = []

    def reader() -> None:
        try:
            for _ in range(20):
                store.query_context("logs", start=T0 - MIN, end=T0)
                store.stats()
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=reader) for _ in range(4)]
    for t in threads:
        t.start()
    for i in range(20):
        store.add_context([NewContext("logs", "api", T0, {"i": i})])
    for t in threads:
        t.join()
    assert errors == []
    got = {}

    def count() -> None:
        got["n"] = len(store.query_context("logs", start=T0, end=T0))

    t = threading.Thread(target=count)
    t.start()
    t.join()
    assert got["n"] == 20
    store.close()


class _Recording:
    """Stands in for a connection: keeps the (sql, args) it is given, answers nothing."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple]] = []

    def execute(self, sql: str, args=()) -> _Recording:
        self.calls.append((sql, tuple(args)))
        return self

    def __iter__(self):
        return iter(())

    def fetchone(self) -> None:
        return None


def test_the_duplicate_lookups_use_the_indexes(db_path: str) -> None:
    """incident.duplicate_open's query (open, and this fingerprint or this service and
    alertname) and the write transaction's group re-check each search two indexes, not
    every open incident."""
    store = SQLiteStore(db_path)
    for i in range(600):
        alert = make_alert(f"fp-{i}", service=f"s{i % 20}", alertname=f"a{i % 7}")
        store.record_firing(make_draft(alert), now=T0 + i * MIN, renotify_after=RENOTIFY)
    groups = [{"fingerprint": "fp-3"}, {"service": "s3", "alertname": "a3"}]
    rec = _Recording()
    filters = {"status": "open", "service": None, "team": None, "fingerprint": None}
    incidents.select(rec, filters, None, -1, groups)  # type: ignore[arg-type]
    incidents.select(rec, filters, T0, -1, groups)  # type: ignore[arg-type]
    firing._group_incident(store.dialect, rec, groups)  # type: ignore[arg-type]
    assert len(rec.calls) == 3
    plans = [_plan(store, sql, args) for sql, args in rec.calls]
    for plan in plans:
        assert "MULTI-INDEX OR" in plan, plan
        assert "USING INDEX incidents_one_open (fingerprint=?)" in plan, plan
        assert "SCAN" not in plan and "incidents_status_opened" not in plan, plan
    # With `since`, the planner may take (service, opened_at) for the second group instead.
    for plan in (plans[0], plans[2]):
        assert "INDEX incidents_open_service_alertname (service=? AND alertname=?)" in plan, plan
    # The same answer as the query without the index would give.
    found = store.list_incidents(limit=None, status="open", any_of=groups)
    assert sorted(i.fingerprint for i in found) == sorted(
        f"fp-{i}" for i in range(600) if i == 3 or (i % 20 == 3 and i % 7 == 3)
    )
    store.close()


# --- migrations --------------------------------------------------------------------


def test_migrations_are_recorded_and_reapplying_is_a_no_op(db_path: str) -> None:
    SQLiteStore(db_path).close()
    conn = sqlite3.connect(db_path, isolation_level=None)
    rows = conn.execute("SELECT version, name FROM schema_migrations ORDER BY version").fetchall()
    assert rows == list(enumerate(MIGRATION_NAMES, start=1))
    dialect = SQLiteDialect(db_path)
    assert apply_migrations(dialect) == []
    dialect.close()
    SQLiteStore(db_path).close()  # opening again applies nothing and does not fail
    assert conn.execute("SELECT COUNT(*) FROM schema_migrations").fetchone()[0] == len(
        MIGRATION_NAMES
    )
    conn.close()


def test_a_database_migrated_further_than_the_code_is_refused(db_path: str) -> None:
    SQLiteStore(db_path).close()
    dialect = SQLiteDialect(db_path)
    with pytest.raises(MigrationError, match="newer"):
        apply_migrations(dialect, MIGRATIONS[:-1])
    dialect.close()


def test_a_database_from_different_code_is_refused(db_path: str) -> None:
    SQLiteStore(db_path).close()
    conn = sqlite3.connect(db_path, isolation_level=None)
    conn.execute("INSERT INTO schema_migrations VALUES (99, '0099_future', 0)")
    conn.close()
    with pytest.raises(MigrationError, match="newer"):
        SQLiteStore(db_path)


def test_split_sql() -> None:
    assert split_sql("CREATE TABLE a (x TEXT DEFAULT ';');\n\nCREATE INDEX i ON a (x);\n") == [
        "CREATE TABLE a (x TEXT DEFAULT ';');",
        "CREATE INDEX i ON a (x);",
    ]


# --- open_store ------------------------------------------------------------------


@pytest.mark.parametrize("url", [":memory:", "sqlite://", "sqlite:///:memory:"])
def test_open_store_memory(url: str) -> None:
    store = open_store(url)
    assert isinstance(store, SQLiteStore) and store.path == ":memory:"
    store.close()


def test_open_store_paths_create_parent_dirs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    deep = tmp_path / "a" / "b" / "ip.db"
    store = open_store(str(deep))
    assert deep.exists()
    store.close()
    store = open_store(f"sqlite:///{tmp_path}/c/ip.db")  # sqlite:////abs/path
    assert (tmp_path / "c" / "ip.db").exists()
    store.close()
    monkeypatch.chdir(tmp_path)
    store = open_store("sqlite:///rel/ip.db")
    assert (tmp_path / "rel" / "ip.db").exists()
    store.close()


def test_open_store_rejects_unknown_schemes() -> None:
    with pytest.raises(ValueError, match="unknown store URL scheme 'mysql'"):
        open_store("mysql://db/ip")
    with pytest.raises(ValueError, match="empty"):
        open_store("  ")


def test_bursts_of_new_reader_threads_do_not_open_more_files(db_path: str) -> None:
    """Worker pools retire idle threads and start new ones for the next burst: readers
    come from a bounded pool, so open files stay flat burst after burst."""
    import os

    from engine.store.sqlite import MAX_READERS

    store = SQLiteStore(db_path)
    store.add_context([NewContext("logs", "s", T0, {"level": "ERROR", "message": "m"})])

    def burst() -> None:
        barrier = threading.Barrier(32)

        def read() -> None:
            barrier.wait()
            for _ in range(5):
                assert len(store.query_context("logs", start=T0 - MIN, end=T0)) == 1

        threads = [threading.Thread(target=read) for _ in range(32)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    def open_on_the_database() -> int:
        """This process's open files on the store (db, -wal, -shm): other tests' threads
        may open and close sockets meanwhile, so count only these."""
        fds = Path("/proc/self/fd")
        count = 0
        for fd in list(fds.iterdir()):
            try:
                target = os.readlink(fd)
            except OSError:
                continue  # closed meanwhile
            count += target.startswith(db_path)
        return count

    for _ in range(6):
        burst()  # 32 new threads every time: one connection each would be 192 by now
    # The writer and at most MAX_READERS readers, each with the database, -wal and -shm.
    assert open_on_the_database() <= 3 * (MAX_READERS + 1)
    assert len(store.dialect._readers) <= MAX_READERS
    store.close()


def test_the_wal_is_checkpointed_in_the_background_not_in_commits(db_path: str) -> None:
    from engine.store.sqlite_checkpoint import BACKSTOP_PAGES, INTERVAL

    store = SQLiteStore(db_path)
    # The writer checkpoints inside a commit only as a backstop, far past SQLite's default.
    pages = store.dialect._writer.execute("PRAGMA wal_autocheckpoint").fetchone()[0]
    assert pages == BACKSTOP_PAGES > 1_000
    # ~4 MB in a few commits: below the backstop, so no commit checkpoints. Data reaches
    # the database file only through a checkpoint: the background thread's.
    before = Path(db_path).stat().st_size
    text = "x" * 2_000
    for _ in range(5):
        store.add_context([NewContext("logs", f"s{i}", T0, {"message": text}) for i in range(400)])
    deadline = time.monotonic() + 20 * INTERVAL + 5
    while Path(db_path).stat().st_size < before + 3_000_000 and time.monotonic() < deadline:
        time.sleep(INTERVAL)
    assert Path(db_path).stat().st_size >= before + 3_000_000, "the WAL was not checkpointed"
    store.close()
