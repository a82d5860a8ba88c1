"""The outbox as the deliveries API reads and changes it, on every backend: listing by
status, incident and sink; re-sending a dead letter; the backlog's age."""

from __future__ import annotations

from datetime import timedelta

import pytest

from engine.store import NewDelivery, RetryRefused, Store
from engine.store.base import AlertOutcome

from .helpers import MIN, RENOTIFY, T0, make_alert, make_draft

SEC = timedelta(seconds=1)
LEASE = timedelta(seconds=30)


def plan(*pairs: tuple[str, str]):
    def make(outcome: AlertOutcome) -> list[NewDelivery]:
        if not outcome.notify:
            return []
        return [NewDelivery(sink, event, {"i": outcome.incident.id}) for sink, event in pairs]

    return make


def fire(store: Store, fingerprint: str, now=T0, pairs=(("pager", "trigger"),)):
    draft = make_draft(make_alert(fingerprint))
    return store.record_firing(draft, now=now, renotify_after=RENOTIFY, plan=plan(*pairs))


def kill(store: Store, now=T0) -> list[int]:
    """Claim everything due and make it dead; the ids, oldest first."""
    claimed = store.claim_deliveries(now=now, limit=50, lease=LEASE, worker="w")
    for d in claimed:
        store.finish_delivery(d.id, ok=False, now=now, error="HTTP 400 nope")
    return [d.id for d in claimed]


def test_list_by_status_incident_and_sink(store: Store) -> None:
    a = fire(store, "fp-a", pairs=(("pager", "trigger"), ("chat", "trigger"))).incident
    b = fire(store, "fp-b", now=T0 + SEC).incident
    claimed = store.claim_deliveries(now=T0 + SEC, limit=50, lease=LEASE, worker="w")
    by_key = {(d.incident_id, d.sink): d for d in claimed}
    store.finish_delivery(by_key[(a.id, "pager")].id, ok=True, now=T0 + SEC)
    store.finish_delivery(by_key[(a.id, "chat")].id, ok=False, now=T0 + SEC, error="x")
    everything = ("pending", "sending", "delivered", "dead")
    listed = store.list_deliveries(statuses=everything)
    assert [d.id for d in listed] == sorted((d.id for d in claimed), reverse=True)
    assert [d.sink for d in store.list_deliveries(statuses=["dead"])] == ["chat"]
    assert [d.status for d in store.list_deliveries(statuses=["delivered"])] == ["delivered"]
    assert [d.incident_id for d in store.list_deliveries(statuses=["sending"])] == [b.id]
    assert {d.sink for d in store.list_deliveries(statuses=everything, incident=a.id)} == {
        "pager",
        "chat",
    }
    assert [d.incident_id for d in store.list_deliveries(statuses=everything, sink="pager")] == [
        b.id,
        a.id,
    ]
    newest = listed[0].id
    assert [d.id for d in store.list_deliveries(statuses=everything, before=newest)] == [
        d.id for d in listed[1:]
    ]
    assert len(store.list_deliveries(statuses=everything, limit=1)) == 1
    assert store.list_deliveries(statuses=everything, incident="nope") == []
    assert store.get_delivery(newest) == listed[0]
    assert store.get_delivery(10**12) is None


def test_a_dead_letter_is_queued_again_with_a_fresh_window(store: Store) -> None:
    inc = fire(store, "fp-a").incident
    (dead_id,) = kill(store)
    later = T0 + 90 * MIN
    again = store.retry_delivery(dead_id, now=later)
    assert again is not None
    assert (again.status, again.attempts, again.last_error) == ("pending", 0, None)
    assert again.created_at == later and again.next_attempt_at == later
    assert store.claim_deliveries(now=later - SEC, limit=5, lease=LEASE, worker="w") == []
    (claimed,) = store.claim_deliveries(now=later, limit=5, lease=LEASE, worker="w")
    assert (claimed.id, claimed.attempts, claimed.incident_id) == (dead_id, 1, inc.id)
    with pytest.raises(RetryRefused, match="sending"):
        store.retry_delivery(dead_id, now=later)  # only a dead letter
    store.finish_delivery(dead_id, ok=True, now=later)
    with pytest.raises(RetryRefused, match="delivered"):
        store.retry_delivery(dead_id, now=later)
    assert store.retry_delivery(10**12, now=later) is None


def test_a_dead_page_for_a_resolved_incident_is_not_resent(store: Store) -> None:
    inc = fire(store, "fp-a").incident
    (trigger,) = kill(store)
    store.resolve_incident(inc.id, at=T0 + MIN, plan=plan(("pager", "resolve")))
    (resolve,) = kill(store, now=T0 + MIN)
    with pytest.raises(RetryRefused, match="resolved"):
        store.retry_delivery(trigger, now=T0 + 2 * MIN)
    assert store.get_delivery(trigger).status == "dead"  # unchanged
    assert store.retry_delivery(resolve, now=T0 + 2 * MIN).status == "pending"


def test_oldest_pending_delivery(store: Store) -> None:
    assert store.oldest_pending_delivery() is None
    fire(store, "fp-a")
    fire(store, "fp-b", now=T0 + MIN)
    assert store.oldest_pending_delivery() == T0
    (first, _) = store.claim_deliveries(now=T0 + MIN, limit=5, lease=LEASE, worker="w")
    assert store.oldest_pending_delivery() == T0  # sending is still pending delivery
    store.finish_delivery(first.id, ok=True, now=T0 + MIN)
    assert store.oldest_pending_delivery() == T0 + MIN
