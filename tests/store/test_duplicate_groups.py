"""One open incident per duplicate group however its alerts race (no-loss issue item 3).

Alerts with one service and alertname but different fingerprints (a `pod` label each)
are one group for the shipped `incident.duplicate_open` rule. The rules run before the
write transaction, so without the in-transaction re-check, threads (or replicas) that
evaluate at the same moment each open an incident and page.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from engine.model import Alert
from engine.pipeline import Pipeline
from engine.rules.grouping import duplicate_groups
from engine.rules.ruleset import RuleSet
from engine.store import NewDelivery, Store, open_store
from engine.store.base import AlertOutcome

from . import pg

ALERTS, FINGERPRINTS, THREADS = 500, 50, 16


def _alerts(round_: int) -> list[Alert]:
    start = datetime(2026, 3, 1, 12, tzinfo=UTC) + timedelta(hours=round_)
    return [
        Alert(
            fingerprint=f"r{round_}-pod-{i % FINGERPRINTS:02d}",
            status="firing",
            labels={
                "alertname": "HighErrorRate",
                "service": "checkout-api",
                "pod": f"p{i % FINGERPRINTS}",
            },
            annotations={},
            starts_at=start + timedelta(seconds=i // FINGERPRINTS),
        )
        for i in range(ALERTS)
    ]


def _page_plan(pages: list[str]) -> Callable[[AlertOutcome], list[NewDelivery]]:
    lock = threading.Lock()

    def plan(outcome: AlertOutcome) -> list[NewDelivery]:
        if outcome.kind != "opened":
            return []
        with lock:
            pages.append(outcome.incident.id if outcome.incident else "")
        return [NewDelivery("pager", "trigger")]

    return plan


def _race(stores: list[Store], ruleset: RuleSet, round_: int) -> None:
    alerts = _alerts(round_)
    barrier = threading.Barrier(THREADS)
    errors: list[BaseException] = []

    def work(worker: int) -> None:
        store = stores[worker % len(stores)]  # half the threads on each "replica"
        pipeline = Pipeline(store, lambda: ruleset, plan=plan)
        barrier.wait()
        try:
            for alert in alerts[worker::THREADS]:
                pipeline.handle(alert)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    pages: list[str] = []
    plan = _page_plan(pages)
    threads = [threading.Thread(target=work, args=(w,)) for w in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    fingerprints = {a.fingerprint for a in alerts}
    incidents = [
        i
        for i in stores[0].list_incidents(limit=None, service="checkout-api")
        if i.fingerprint in fingerprints
    ]
    assert len(incidents) == 1, [i.fingerprint for i in incidents]
    assert incidents[0].attached_count == ALERTS - 1
    assert stores[0].stats()["outbox"]["pending"] >= 1
    # The page is stored once: only the committed opening's plan counts.
    deliveries = stores[0].claim_deliveries(
        now=datetime.now(UTC), limit=1000, lease=timedelta(minutes=5), worker="test"
    )
    assert [d.incident_id for d in deliveries] == [incidents[0].id]
    for d in deliveries:
        stores[0].finish_delivery(d.id, ok=True, now=datetime.now(UTC))
    # Close it, so the next round's alerts make a group of their own.
    stores[0].resolve_incident(incidents[0].id, at=datetime.now(UTC))


def test_the_shipped_duplicate_rule_names_its_group(shipped_rules: RuleSet) -> None:
    alert = _alerts(0)[0]
    assert duplicate_groups(shipped_rules, alert.as_scope()) == (
        {"fingerprint": alert.fingerprint},
        {"service": "checkout-api", "alertname": "HighErrorRate"},
    )


def test_sqlite_two_stores_on_one_file(shipped_rules: RuleSet, tmp_path: Path) -> None:
    path = str(tmp_path / "race.db")
    stores = [open_store(path), open_store(path)]  # two processes' worth of connections
    try:
        for round_ in range(5):
            _race(stores, shipped_rules, round_)
    finally:
        for s in stores:
            s.close()


@pytest.mark.postgres
@pytest.mark.skipif(not os.environ.get(pg.POSTGRES_DSN_ENV), reason=pg.SKIP_REASON)
def test_postgres_two_replicas(shipped_rules: RuleSet) -> None:
    url = pg.with_schema(os.environ[pg.POSTGRES_DSN_ENV], pg.SCHEMAS.fresh("dup"))
    stores = [open_store(url), open_store(url)]  # two pools, like two replicas
    try:
        for round_ in range(5):
            _race(stores, shipped_rules, round_)
    finally:
        for s in stores:
            s.close()
