"""Kept counts (engine.store.tallies): stats() reads them instead of counting rows, so they
must equal the real counts after every kind of change, on every backend."""

from __future__ import annotations

import contextlib
import random
from datetime import timedelta
from typing import Any

from engine.model import CONTEXT_KINDS
from engine.store import NewContext, NewDelivery, RetryRefused, Store, open_store
from engine.store.base import AlertOutcome
from engine.store.migrations import MIGRATIONS, apply_migrations
from engine.store.sqlite import SQLiteDialect

from .helpers import MIN, RENOTIFY, T0, make_alert, make_draft

LEASE = timedelta(seconds=30)


def counted(store: Any) -> dict[str, Any]:
    """stats() as a full count of the tables would give it."""
    with store.dialect.read() as conn:

        def one(sql: str) -> int:
            return int(conn.execute(sql).fetchone()[0] or 0)

        alerts = {
            s: one(f"SELECT COUNT(*) FROM alerts WHERE status = '{s}'")
            for s in ("firing", "resolved")
        }
        inc = {
            s: one(f"SELECT COUNT(*) FROM incidents WHERE status = '{s}'")
            for s in ("open", "resolved")
        }
        return {
            "alerts": {**alerts, "total": sum(alerts.values())},
            "incidents": {
                **inc,
                "total": sum(inc.values()),
                "repeats": one("SELECT SUM(repeat_count) FROM incidents"),
                "attached": one("SELECT SUM(attached_count) FROM incidents"),
            },
            "context": {k: one(f"SELECT COUNT(*) FROM {k}") for k in CONTEXT_KINDS},
            "outbox": {
                s: one(f"SELECT COUNT(*) FROM deliveries WHERE status = '{s}'")
                for s in ("pending", "sending", "delivered", "dead")
            },
        }  # fmt: skip


def plan(outcome: AlertOutcome) -> list[NewDelivery]:
    if not outcome.notify or outcome.incident is None:
        return []
    return [NewDelivery(s, "trigger", {"i": outcome.incident.id}) for s in ("pager", "chat")]


def test_kept_counts_equal_the_real_counts_through_every_kind_of_change(store: Store) -> None:
    rng = random.Random(7)
    now = T0
    for step in range(300):
        now += timedelta(seconds=7)
        op = rng.choice(("fire", "fire", "repeat", "resolve", "context", "deliver", "prune"))
        fp = f"fp-{rng.randrange(25)}"
        if op == "fire":  # opens, attaches (new startsAt) or repeats
            starts = T0 + rng.randrange(3) * MIN
            draft = make_draft(make_alert(fp, starts_at=starts))
            store.record_firing(draft, now=now, renotify_after=RENOTIFY, plan=plan)
        elif op == "repeat":
            draft = make_draft(make_alert(fp))
            store.record_firing(draft, now=now, renotify_after=RENOTIFY, plan=plan)
        elif op == "resolve":
            alert = make_alert(fp, status="resolved", ends_at=now)
            store.record_resolved(alert, now=now, plan=plan)
        elif op == "context":
            kind = rng.choice(CONTEXT_KINDS)
            ts = now - rng.randrange(120) * MIN
            store.add_context([NewContext(kind, "svc", ts, {}) for _ in range(rng.randrange(1, 6))])
        elif op == "deliver":
            for d in store.claim_deliveries(
                now=now, limit=rng.randrange(1, 5), lease=LEASE, worker="w"
            ):
                fate = rng.random()
                if fate < 0.6:
                    store.finish_delivery(d.id, ok=True, now=now)
                elif fate < 0.8:
                    store.finish_delivery(d.id, ok=False, now=now, error="503", retry_at=now)
                else:
                    store.finish_delivery(d.id, ok=False, now=now, error="400")
                    if rng.random() < 0.5:
                        with contextlib.suppress(RetryRefused):  # its incident resolved
                            store.retry_delivery(d.id, now=now)
        elif op == "prune":
            store.prune_context(now - 60 * MIN)
            store.prune_incidents(now - 10 * MIN)
        if step % 25 == 0:
            assert store.stats() == counted(store), f"after step {step} ({op})"
    assert store.stats() == counted(store)
    # the mix really exercised every kind of change the counts must follow
    s = store.stats()
    assert (
        s["incidents"]["resolved"] > 0 and s["outbox"]["delivered"] > 0 and s["outbox"]["dead"] > 0
    )


def test_a_database_from_before_the_tallies_gets_them_seeded(tmp_path) -> None:
    path = str(tmp_path / "old.db")
    before = [m.name for m in MIGRATIONS].index("0008_tallies")
    dialect = SQLiteDialect(path)
    apply_migrations(dialect, MIGRATIONS[:before])  # the schema as an older release left it
    dialect.close()
    # Fill it the way that release did (no tallies table yet).
    older = SQLiteDialect(path)
    older.write(
        lambda c: c.executemany(
            "INSERT INTO logs (service, ts, level, message) VALUES ('s', ?, 'ERROR', 'x')",
            [(float(i),) for i in range(40)],
        )
    )
    older.close()
    store = open_store(path)  # applies 0008_tallies: seeded from the rows as they are
    assert store.stats()["context"]["logs"] == 40
    assert store.stats() == counted(store)
    store.close()
