"""Pull rules' store methods, on every backend: findings appended after the incident was
stored release its held first deliveries; pull answers are stored and read back."""

from __future__ import annotations

from datetime import timedelta

from engine.store import Store
from engine.store.base import NewDelivery, NewPull

from .helpers import T0, make_draft, make_finding
from .test_contract import fire


def test_add_findings_appends_and_releases_held_deliveries(store: Store) -> None:
    def plan(outcome):
        return [NewDelivery("stdout", "trigger", {"n": 1}, delay=2.0)]

    inc = fire(store, make_draft(), plan=plan).incident
    assert inc is not None
    lease = timedelta(seconds=30)
    assert store.claim_deliveries(now=T0, limit=5, lease=lease, worker="w") == []  # held
    before = len(inc.findings)
    extra = make_finding("prometheus.error_ratio")
    updated = store.add_findings(inc.id, [extra], now=T0 + timedelta(seconds=0.5))
    assert updated is not None
    assert len(updated.findings) == before + 1
    assert updated.findings[-1].rule_id == "prometheus.error_ratio"
    got = store.get_incident(inc.id)
    assert got is not None and got.findings == updated.findings
    claimed = store.claim_deliveries(
        now=T0 + timedelta(seconds=0.5), limit=5, lease=lease, worker="w"
    )
    assert [d.event for d in claimed] == ["trigger"]
    assert store.add_findings("inc-nope", [extra], now=T0) is None


def test_held_delivery_becomes_due_by_itself(store: Store) -> None:
    fire(store, make_draft(), plan=lambda o: [NewDelivery("stdout", "trigger", delay=2.0)])
    lease = timedelta(seconds=30)
    assert (
        store.claim_deliveries(now=T0 + timedelta(seconds=1), limit=5, lease=lease, worker="w")
        == []
    )
    assert (
        len(store.claim_deliveries(now=T0 + timedelta(seconds=2), limit=5, lease=lease, worker="w"))
        == 1
    )


def test_pulls_round_trip(store: Store) -> None:
    new = NewPull(
        source="prometheus",
        url="http://127.0.0.1:9090/api/v1/query",
        query='up{service="a\\"b"}',
        start=T0,
        end=T0 + timedelta(minutes=1),
        step=15.0,
        link="http://127.0.0.1:9090/graph?g0.expr=up",
        answer={"resultType": "vector", "result": [{"metric": {"a": "b"}, "value": [1, "2"]}]},
    )
    pull = store.add_pull(new, now=T0)
    assert pull.id and pull.path == f"pulls/{pull.id}"
    got = store.get_pull(pull.id)
    assert got is not None
    assert (got.query, got.start, got.end, got.step, got.answer) == (
        new.query, new.start, new.end, 15.0, new.answer,
    )  # fmt: skip
    assert store.get_pull("999999") is None
    assert store.get_pull("x") is None
    assert store.get_pull(str(2**70)) is None


def test_retention_prunes_pull_answers_by_when_they_were_stored(store: Store) -> None:
    """`pulls` grows with every pull rule's answer: the retention pruner removes the ones
    stored before the cutoff (their evidence paths then answer 404, like pruned context),
    and keeps the rest. prune_context counts only context records."""

    def pull(query: str) -> NewPull:
        return NewPull(
            source="loki",
            url="http://127.0.0.1:3100/loki/api/v1/query_range",
            query=query,
            start=T0 - timedelta(hours=30),  # the range asked for does not decide
            end=T0 - timedelta(hours=29),
            step=None,
            link=None,
            answer={"resultType": "streams", "result": []},
        )

    old = [
        store.add_pull(pull(f"old {i}"), now=T0 - timedelta(hours=25, minutes=i)) for i in range(3)
    ]
    recent = store.add_pull(pull("recent"), now=T0 - timedelta(hours=1))
    cutoff = T0 - timedelta(hours=24)
    assert store.prune_context(cutoff) == 0  # no context records
    assert [store.get_pull(p.id) for p in old] == [None, None, None]
    kept = store.get_pull(recent.id)
    assert kept is not None and kept.query == "recent"
    store.prune_context(T0)
    assert store.get_pull(recent.id) is None
