"""A dependency cascade pages once, whatever the order its alerts arrive in.

One root (`payments`) and 10 dependents (each lists payments in tables/dependencies)
alert within a minute. With the shipped `dependency.upstream_failing` rule, on SQLite
and PostgreSQL, sequentially in several orders and concurrently from threads on two
stores: one open incident (the root's), one trigger per sink, 10 symptoms listed. A
dependent that alerts first holds its page; the root merges its incident when it opens.
"""

from __future__ import annotations

import os
import random
import threading
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from engine.delivery.config import load_config
from engine.delivery.routing import Router, make_plan
from engine.model import Alert
from engine.pipeline import Pipeline
from engine.rules.ruleset import RuleSet
from engine.rules.tables import with_test_tables
from engine.store import Store, open_store
from engine.store.base import PlanDeliveries

from . import pg

DEPENDENTS = 10
T0 = datetime(2026, 3, 1, 12, tzinfo=UTC)


def cascade_rules(shipped: RuleSet, prefix: str) -> RuleSet:
    graph = {f"{prefix}dep-{i}": [f"{prefix}payments"] for i in range(DEPENDENTS)}
    return replace(shipped, tables=with_test_tables(shipped.tables, {"dependencies": graph}, "t"))


def root_alert(prefix: str, at: datetime) -> Alert:
    labels = {"alertname": "PaymentsDown", "service": f"{prefix}payments"}
    return Alert(f"{prefix}root", "firing", labels, {}, at)


def dependent_alert(prefix: str, i: int, at: datetime) -> Alert:
    labels = {"alertname": "HighErrorRate", "service": f"{prefix}dep-{i}"}
    return Alert(f"{prefix}dep-{i}", "firing", labels, {}, at)


@pytest.fixture(scope="module")
def plan(tmp_path_factory: pytest.TempPathFactory) -> PlanDeliveries:
    """The real routing plan, with a pager (resolves) and stdout."""
    path = tmp_path_factory.mktemp("cfg") / "config.yaml"
    path.write_text(
        "sinks:\n  pd: {type: pagerduty, url: 'http://127.0.0.1:9', routing_key_env: PD_KEY}\n"
        "routes:\n  default: [{sink: stdout}, {sink: pd}]\n",
        "utf-8",
    )
    config, problems = load_config(path, {"PD_KEY": "k" * 32})
    assert config is not None, problems
    return make_plan(Router(config), {"stdout": True, "pd": True}, "http://127.0.0.1:9099")


def deliveries(store: Store, prefix: str) -> list[tuple[str, str, str, str]]:
    """(incident service, sink, event, status) of every delivery of this round."""
    with store.dialect.read() as conn:  # type: ignore[attr-defined]
        rows = conn.execute(
            "SELECT i.service, d.sink, d.event, d.status FROM deliveries d"
            " JOIN incidents i ON i.id = d.incident_id ORDER BY d.id"
        ).fetchall()
    return [tuple(r) for r in rows if r[0].startswith(prefix)]


def check_one_page(store: Store, prefix: str) -> None:
    incidents = [i for i in store.list_incidents(limit=None) if i.service.startswith(prefix)]
    open_ = [i for i in incidents if i.status == "open"]
    assert [i.service for i in open_] == [f"{prefix}payments"], [
        (i.service, i.status) for i in incidents
    ]
    root = open_[0]
    assert sorted(s["service"] for s in root.symptoms) == sorted(
        f"{prefix}dep-{i}" for i in range(DEPENDENTS)
    )
    for s in root.symptoms:
        assert s["via"] == [f"tables/dependencies/{s['service']}"]
        assert s["rule"] == "dependency.upstream_failing"
    assert root.attached_count == DEPENDENTS
    triggers = [
        (svc, sink) for svc, sink, event, _ in deliveries(store, prefix) if event == "trigger"
    ]
    assert sorted(triggers) == [(f"{prefix}payments", "pd"), (f"{prefix}payments", "stdout")]
    for merged in incidents:
        if merged.status == "resolved":  # a dependent that opened before the root did
            assert merged.resolution is not None
            assert merged.resolution["merged_into"] == root.id
            assert any(s["merged_from"] == merged.id for s in root.symptoms)


def run_in_order(store: Store, shipped: RuleSet, plan: PlanDeliveries, order: list[int]) -> str:
    """Send the cascade one alert at a time; -1 is the root. Returns the round's prefix."""
    prefix = "o" + "".join(str(i % 10) for i in order[:4]) + f"{len(order)}-"
    ruleset = cascade_rules(shipped, prefix)
    for step, who in enumerate(order):
        at = T0 + timedelta(seconds=5 * step)  # 11 alerts within a minute
        alert = root_alert(prefix, at) if who < 0 else dependent_alert(prefix, who, at)
        Pipeline(store, lambda: ruleset, plan=plan, clock=lambda at=at: at).handle(alert)
    return prefix


ORDERS: dict[str, list[int]] = {
    "root-first": [-1, *range(DEPENDENTS)],
    "root-last": [*range(DEPENDENTS), -1],
    "root-in-the-middle": [0, 1, 2, 3, 4, -1, 5, 6, 7, 8, 9],
    "shuffled": random.Random(11).sample([-1, *range(DEPENDENTS)], DEPENDENTS + 1),
}


@pytest.mark.parametrize("order", list(ORDERS), ids=list(ORDERS))
def test_any_arrival_order_pages_once(store: Store, shipped_rules, plan, order: str) -> None:
    prefix = run_in_order(store, shipped_rules, plan, ORDERS[order])
    check_one_page(store, prefix)


def test_a_dependent_holds_its_page_for_the_window_after(store: Store, shipped_rules, plan):
    prefix = "hold-"
    ruleset = cascade_rules(shipped_rules, prefix)
    Pipeline(store, lambda: ruleset, plan=plan, clock=lambda: T0).handle(
        dependent_alert(prefix, 0, T0)
    )
    # Not due before the rule's window.after (1m): the root has that long to alert.
    assert (
        store.claim_deliveries(
            now=T0 + timedelta(seconds=59), limit=10, lease=timedelta(minutes=1), worker="w"
        )
        == []
    )
    due = store.claim_deliveries(
        now=T0 + timedelta(seconds=61), limit=10, lease=timedelta(minutes=1), worker="w"
    )
    assert sorted(d.sink for d in due) == ["pd", "stdout"]


def test_a_page_already_sent_is_resolved_by_the_merge(store: Store, shipped_rules, plan):
    """A dependent that paged at once (the table did not list it yet: it was added, and
    the rules reloaded, since) is still merged when its root opens within the window,
    and its page is resolved on each sink."""
    prefix = "sent-"
    ruleset = cascade_rules(shipped_rules, prefix)
    Pipeline(store, lambda: shipped_rules, plan=plan, clock=lambda: T0).handle(
        dependent_alert(prefix, 0, T0)
    )
    soon = T0 + timedelta(seconds=1)
    sent = store.claim_deliveries(now=soon, limit=10, lease=timedelta(minutes=1), worker="w")
    assert sorted(d.sink for d in sent) == ["pd", "stdout"]  # nothing held it
    for d in sent:
        store.finish_delivery(d.id, ok=True, now=soon)
    later = T0 + timedelta(seconds=20)
    Pipeline(store, lambda: ruleset, plan=plan, clock=lambda: later).handle(
        root_alert(prefix, later)
    )
    rows = deliveries(store, prefix)
    dep = f"{prefix}dep-0"
    assert sorted((svc, sink, event) for svc, sink, event, _ in rows if svc == dep) == [
        (dep, "pd", "resolve"),
        (dep, "pd", "trigger"),
        (dep, "stdout", "resolve"),
        (dep, "stdout", "trigger"),
    ]
    merged = next(i for i in store.list_incidents(limit=None) if i.service == dep)
    assert merged.status == "resolved"
    assert "merged into" in merged.resolution["note"]


def test_a_dependent_outside_the_window_is_not_merged(store: Store, shipped_rules, plan):
    prefix = "late-"
    ruleset = cascade_rules(shipped_rules, prefix)
    Pipeline(store, lambda: ruleset, plan=plan, clock=lambda: T0).handle(
        dependent_alert(prefix, 0, T0)
    )
    later = T0 + timedelta(minutes=5)  # longer than window.after before the root alerts
    Pipeline(store, lambda: ruleset, plan=plan, clock=lambda: later).handle(
        root_alert(prefix, later)
    )
    services = sorted(
        i.service
        for i in store.list_incidents(limit=None, status="open")
        if i.service.startswith(prefix)
    )
    assert services == [f"{prefix}dep-0", f"{prefix}payments"]


# --- concurrently, two stores (two processes' worth of connections) ---------------------


def race(stores: list[Store], shipped: RuleSet, plan: PlanDeliveries, round_: int) -> str:
    prefix = f"race{round_}-"
    ruleset = cascade_rules(shipped, prefix)
    alerts = [root_alert(prefix, T0)] + [dependent_alert(prefix, i, T0) for i in range(DEPENDENTS)]
    random.Random(round_).shuffle(alerts)
    barrier = threading.Barrier(len(alerts))
    errors: list[BaseException] = []

    def work(n: int) -> None:
        pipeline = Pipeline(stores[n % 2], lambda: ruleset, plan=plan, clock=lambda: T0)
        barrier.wait()
        try:
            pipeline.handle(alerts[n])
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(len(alerts))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    return prefix


def race_rounds(make: Callable[[], Store], shipped: RuleSet, plan: PlanDeliveries) -> None:
    stores = [make(), make()]
    try:
        for round_ in range(5):
            prefix = race(stores, shipped, plan, round_)
            check_one_page(stores[0], prefix)
    finally:
        for s in stores:
            s.close()


def test_concurrent_cascade_sqlite(shipped_rules, plan, tmp_path: Path) -> None:
    path = str(tmp_path / "cascade.db")
    race_rounds(lambda: open_store(path), shipped_rules, plan)


@pytest.fixture
def pg_url() -> Iterator[str]:
    dsn = os.environ.get(pg.POSTGRES_DSN_ENV)
    if not dsn:
        pytest.skip(pg.SKIP_REASON)
    yield pg.with_schema(dsn, pg.SCHEMAS.fresh("cascade"))


@pytest.mark.postgres
def test_concurrent_cascade_postgres(shipped_rules, plan, pg_url: str) -> None:
    race_rounds(lambda: open_store(pg_url), shipped_rules, plan)


def test_a_pull_answer_does_not_cut_the_hold_down_short(store: Store, shipped_rules, plan):
    """Pull rules release a new incident's held page when they answer (add_findings), but
    a dependent's page stays held until its cascade hold-down is over."""
    prefix = "pull-"
    ruleset = cascade_rules(shipped_rules, prefix)
    result = Pipeline(store, lambda: ruleset, plan=plan, clock=lambda: T0).handle(
        dependent_alert(prefix, 0, T0)
    )
    assert result.outcome.incident is not None
    soon = T0 + timedelta(seconds=2)
    store.add_findings(result.outcome.incident.id, [], now=soon)
    lease = timedelta(minutes=1)
    assert store.claim_deliveries(now=soon, limit=10, lease=lease, worker="w") == []
    due = store.claim_deliveries(now=T0 + timedelta(seconds=60), limit=10, lease=lease, worker="w")
    assert sorted(d.sink for d in due) == ["pd", "stdout"]
