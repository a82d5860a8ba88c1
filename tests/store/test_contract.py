"""The Store contract: every backend must pass all of these (see conftest.BACKENDS)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from engine.model import Severity
from engine.store import NewContext, NewDelivery, Store
from engine.store.base import AlertOutcome

from .helpers import MIN, RENOTIFY, T0, make_alert, make_draft

SEC = timedelta(seconds=1)

# --- context -----------------------------------------------------------------


def ctx(kind: str, minutes_ago: float, service: str = "checkout-api", **fields) -> NewContext:
    return NewContext(kind, service, T0 - minutes_ago * MIN, fields)


def test_add_context_round_trips_fields_exactly(store: Store) -> None:
    new = [
        ctx("deploys", 5, commit="abc123", author="ana", pr=42, tags=["canary"]),
        ctx("logs", 4, level="error", message="boom", pod="p-1"),
        ctx("traces", 3, trace_id="t1", duration_ms=1200),  # int stays int
        ctx("traces", 2, trace_id="t2", duration_ms=12.5),
        ctx("deploys", 1, commit=1234567, author=None),  # YAML int commit, explicit None
        ctx("logs", 0, nested={"a": [1, {"b": None}]}, message="only message"),
        ctx("deploys", 0),  # no fields at all
    ]
    out = store.add_context(new)
    assert [r.kind for r in out] == [n.kind for n in new]
    assert len({(r.kind, r.id) for r in out}) == len(new)
    for rec, n in zip(out, new, strict=True):
        assert isinstance(rec.id, str)
        assert (rec.service, rec.ts, rec.fields) == (n.service, n.ts, n.fields)
        got = store.get_context(rec.kind, rec.id)
        assert got == rec
        assert type(got.fields.get("duration_ms", 0)) is type(n.fields.get("duration_ms", 0))
        assert got.path == f"context/{rec.kind}/{rec.id}"


def test_append_context_stores_what_add_context_stores(store: Store) -> None:
    """The collector receivers' count-only insert: the same rows, read back exactly, with
    records sharing one attributes dict (a Loki stream's labels) and records that do not."""
    shared = {"env": "prod", "pod": "p\u00e9-1"}
    new = [
        ctx("logs", 4, level="WARN", message="a", attributes=shared),
        ctx("logs", 3, level="ERROR", message="b", attributes=shared),
        ctx("logs", 3, level="ERROR", message="c", attributes={**shared, "trace_id": "t"}),
        ctx("traces", 2, trace_id="t1", duration_ms=12.5, span_id="s", status="ok"),
        ctx("traces", 2, trace_id="t2", duration_ms=7),  # int: kept exactly in attributes
        ctx("deploys", 1, commit="abc", author="ana"),
    ]
    assert store.append_context(new) == len(new)
    assert store.append_context([]) == 0
    stored = [
        r
        for kind in ("deploys", "logs", "traces")
        for r in store.query_context(kind, start=T0 - 10 * MIN, end=T0)
    ]
    assert sorted((r.kind, r.service, r.ts, repr(r.fields)) for r in stored) == sorted(
        (n.kind, n.service, n.ts, repr(n.fields)) for n in new
    )
    with pytest.raises(ValueError, match="unknown context kind"):
        store.append_context([ctx("metrics", 1)])


def test_add_context_empty_and_unknown_kind(store: Store) -> None:
    assert store.add_context([]) == []
    with pytest.raises(ValueError, match="unknown context kind"):
        store.add_context([ctx("metrics", 1)])
    with pytest.raises(ValueError):
        store.query_context("metrics", start=T0 - MIN, end=T0)
    assert store.context_counts() == {"deploys": 0, "logs": 0, "traces": 0}


def test_get_context_missing(store: Store) -> None:
    (rec,) = store.add_context([ctx("logs", 1, message="x")])
    assert store.get_context("logs", "999999") is None
    assert store.get_context("logs", "not-a-number") is None
    assert store.get_context("deploys", rec.id) is None
    # Past SQL's 64-bit ids: no such record, on every backend (not an overflow error).
    for far in (2**63, -(2**63) - 1, 10**30):
        assert store.get_context("logs", str(far)) is None


def test_query_context_window_is_inclusive_and_newest_first(store: Store) -> None:
    store.add_context([ctx("logs", m, message=f"m{m}") for m in range(10)])
    got = store.query_context("logs", start=T0 - 6 * MIN, end=T0 - 2 * MIN)
    assert [r.fields["message"] for r in got] == ["m2", "m3", "m4", "m5", "m6"]
    assert store.query_context("logs", start=T0 - 2 * MIN, end=T0 - 2 * MIN)[0].ts == T0 - 2 * MIN
    assert store.query_context("logs", start=T0 + SEC, end=T0 + MIN) == []


def test_query_context_service_filter_and_limit(store: Store) -> None:
    store.add_context(
        [
            ctx("deploys", m, service="checkout-api" if m % 2 else "cart", commit=f"c{m}")
            for m in range(8)
        ]
    )
    got = store.query_context("deploys", start=T0 - 10 * MIN, end=T0, service="checkout-api")
    assert [r.fields["commit"] for r in got] == ["c1", "c3", "c5", "c7"]
    assert all(r.service == "checkout-api" for r in got)
    assert [
        r.fields["commit"]
        for r in store.query_context("deploys", start=T0 - 10 * MIN, end=T0, limit=3)
    ] == [
        "c0",
        "c1",
        "c2",
    ]
    assert store.query_context("deploys", start=T0 - 10 * MIN, end=T0, service="nope") == []
    assert (
        len(store.query_context("deploys", start=T0 - 10 * MIN, end=T0, service="cart", limit=2))
        == 2
    )


def test_query_context_same_ts_newest_id_first(store: Store) -> None:
    recs = store.add_context([ctx("logs", 1, message=str(i)) for i in range(3)])
    got = store.query_context("logs", start=T0 - MIN, end=T0 - MIN)
    assert [r.id for r in got] == [r.id for r in reversed(recs)]


def test_prune_counts_and_oldest(store: Store) -> None:
    assert store.oldest_context_ts() is None
    store.add_context(
        [
            ctx("deploys", 60, commit="old"),
            ctx("logs", 30),
            ctx("logs", 10),
            ctx("traces", 5),
            ctx("traces", 45),
        ]
    )
    assert store.context_counts() == {"deploys": 1, "logs": 2, "traces": 2}
    assert store.oldest_context_ts() == T0 - 60 * MIN
    assert store.prune_context(T0 - 30 * MIN) == 2  # strictly older: the 30-minute log stays
    assert store.context_counts() == {"deploys": 0, "logs": 2, "traces": 1}
    assert store.oldest_context_ts() == T0 - 30 * MIN
    assert store.prune_context(T0 - 30 * MIN) == 0
    assert store.prune_context(T0 + MIN) == 3
    assert store.oldest_context_ts() is None


# --- firing: open / repeat / attach ---------------------------------------------


def fire(store: Store, draft, now=T0, renotify=RENOTIFY, plan=None) -> AlertOutcome:
    return store.record_firing(draft, now=now, renotify_after=renotify, plan=plan)


def test_open_round_trips_the_incident(store: Store) -> None:
    draft = make_draft(narration={"text": "deploy went bad", "model": "none"})
    out = fire(store, draft, now=T0 + MIN)
    assert (out.kind, out.notify) == ("opened", True)
    inc = out.incident
    assert inc is not None and inc.id == draft.id
    assert store.get_incident(draft.id) == inc
    assert (inc.status, inc.fingerprint, inc.title, inc.team) == (
        "open",
        "fp-a",
        draft.title,
        "payments",
    )
    assert (inc.service, inc.alertname, inc.severity) == (
        "checkout-api",
        "HighErrorRate",
        Severity.CRITICAL,
    )
    assert inc.opened_at == inc.last_seen == inc.last_notified_at == T0 + MIN  # now, not startsAt
    assert inc.alert == draft.alert and inc.alert.starts_at == T0
    assert inc.findings == draft.findings
    assert inc.narration == {"text": "deploy went bad", "model": "none"}
    assert (inc.repeat_count, inc.attached_count, inc.resolved_at, inc.resolution) == (
        0,
        0,
        None,
        None,
    )
    assert store.get_incident("nope") is None


def test_same_firing_again_is_a_repeat(store: Store) -> None:
    first = fire(store, make_draft())
    assert store.find_repeat("fp-a", T0) == first.incident
    assert store.find_repeat("fp-a", T0 + SEC) is None
    assert store.find_repeat("fp-b", T0) is None
    out = fire(store, make_draft(), now=T0 + 5 * MIN)
    assert (out.kind, out.notify) == ("repeat", False)
    assert out.incident.id == first.incident.id
    assert (out.incident.repeat_count, out.incident.last_seen) == (1, T0 + 5 * MIN)
    assert out.incident.last_notified_at == T0
    fire(store, make_draft(), now=T0 + 6 * MIN)
    assert store.get_incident(first.incident.id).repeat_count == 2
    assert len(store.list_incidents()) == 1


def test_new_firing_same_fingerprint_attaches_with_renotify_interval(store: Store) -> None:
    first = fire(store, make_draft()).incident
    out = fire(store, make_draft(make_alert(starts_at=T0 + MIN)), now=T0 + MIN)
    assert (out.kind, out.notify, out.incident.id) == ("attached", False, first.id)
    assert (out.incident.attached_count, out.incident.last_seen) == (1, T0 + MIN)
    assert out.incident.last_notified_at == T0
    # Exactly renotify_after since the last notification: notify again, and restart the clock.
    out = fire(store, make_draft(make_alert(starts_at=T0 + 2 * MIN)), now=T0 + RENOTIFY)
    assert (out.kind, out.notify) == ("attached", True)
    assert out.incident.last_notified_at == T0 + RENOTIFY
    out = fire(store, make_draft(make_alert(starts_at=T0 + 3 * MIN)), now=T0 + RENOTIFY + MIN)
    assert (out.kind, out.notify, out.incident.attached_count) == ("attached", False, 3)
    assert len(store.list_incidents(status="open", limit=None, fingerprint="fp-a")) == 1


def test_duplicate_of_attaches_to_that_open_incident(store: Store) -> None:
    a = fire(store, make_draft(make_alert("fp-a"))).incident
    out = fire(store, make_draft(make_alert("fp-b"), duplicate_of=a.id), now=T0 + MIN)
    assert (out.kind, out.incident.id, out.incident.attached_count) == ("attached", a.id, 1)
    assert (
        store.list_incidents(status="open", limit=None, fingerprint="fp-b") == []
    )  # fp-b has no incident of its own
    assert store.find_repeat("fp-b", T0).id == a.id


def test_duplicate_of_a_closed_or_unknown_incident_opens(store: Store) -> None:
    a = fire(store, make_draft(make_alert("fp-a"))).incident
    store.resolve_incident(a.id, at=T0 + MIN)
    out = fire(store, make_draft(make_alert("fp-b"), duplicate_of=a.id), now=T0 + 2 * MIN)
    assert out.kind == "opened" and out.incident.id != a.id
    out = fire(store, make_draft(make_alert("fp-c"), duplicate_of="no-such"), now=T0 + 2 * MIN)
    assert out.kind == "opened"


def test_one_open_incident_per_fingerprint(store: Store) -> None:
    a = fire(store, make_draft()).incident
    # A different draft id for the same fingerprint still joins the open incident.
    out = fire(store, make_draft(make_alert(starts_at=T0 + MIN), id="other"), now=T0 + MIN)
    assert out.kind == "attached" and store.get_incident("other") is None
    store.resolve_incident(a.id, at=T0 + 2 * MIN)
    b = fire(store, make_draft(make_alert(starts_at=T0 + 3 * MIN)), now=T0 + 3 * MIN)
    assert b.kind == "opened" and b.incident.id != a.id
    assert [i.id for i in store.list_incidents(status="open", limit=None, fingerprint="fp-a")] == [
        b.incident.id
    ]
    assert {i.id for i in store.list_incidents()} == {a.id, b.incident.id}


# --- resolution ----------------------------------------------------------------


def test_resolved_alert_resolves_its_incident(store: Store) -> None:
    inc = fire(store, make_draft()).incident
    resolved = make_alert(status="resolved", ends_at=T0 + 4 * MIN)
    out = store.record_resolved(resolved, now=T0 + 5 * MIN)
    assert (out.kind, out.notify, out.incident.id) == ("resolved", True, inc.id)
    assert (out.incident.status, out.incident.resolved_at) == ("resolved", T0 + 4 * MIN)
    assert out.incident.resolution == {
        "auto": True,
        "note": "resolved by Alertmanager",
        "at": "2026-01-31T12:04:00.123Z",
    }
    assert store.get_incident(inc.id) == out.incident
    assert store.stats()["alerts"] == {"firing": 0, "resolved": 1, "total": 1}
    # Alertmanager resends the resolution: nothing more happens.
    again = store.record_resolved(resolved, now=T0 + 6 * MIN)
    assert (again.kind, again.notify, again.incident.id) == ("ignored", False, inc.id)
    assert store.get_incident(inc.id).resolved_at == T0 + 4 * MIN


def test_resolved_without_end_uses_now(store: Store) -> None:
    fire(store, make_draft())
    out = store.record_resolved(make_alert(status="resolved"), now=T0 + 7 * MIN)
    assert out.kind == "resolved" and out.incident.resolved_at == T0 + 7 * MIN


def test_resolved_unknown_fingerprint_is_ignored(store: Store) -> None:
    out = store.record_resolved(make_alert("never-seen", status="resolved", ends_at=T0), now=T0)
    assert out == AlertOutcome("ignored", None, False)


def test_resolved_for_an_older_alert_than_the_firing_one_is_ignored(store: Store) -> None:
    inc = fire(store, make_draft(make_alert(starts_at=T0))).incident
    out = store.record_resolved(
        make_alert(starts_at=T0 - 10 * MIN, status="resolved", ends_at=T0), now=T0
    )
    assert out.kind == "ignored" and out.incident.id == inc.id and out.incident.status == "open"


def test_grouped_incident_stays_open_until_every_alert_resolved(store: Store) -> None:
    a = fire(store, make_draft(make_alert("fp-a", pod="a"))).incident
    fire(store, make_draft(make_alert("fp-b", pod="b"), duplicate_of=a.id), now=T0 + SEC)
    out = store.record_resolved(
        make_alert("fp-a", status="resolved", ends_at=T0 + MIN), now=T0 + MIN
    )
    assert (out.kind, out.notify, out.incident.id, out.incident.status) == (
        "ignored",
        False,
        a.id,
        "open",
    )
    assert store.stats()["alerts"] == {"firing": 1, "resolved": 1, "total": 2}
    out = store.record_resolved(
        make_alert("fp-b", status="resolved", ends_at=T0 + 2 * MIN), now=T0 + 3 * MIN
    )
    assert (out.kind, out.notify, out.incident.id, out.incident.status) == (
        "resolved",
        True,
        a.id,
        "resolved",
    )
    assert out.incident.resolved_at == T0 + 2 * MIN


def test_manual_resolve(store: Store) -> None:
    inc = fire(store, make_draft()).incident
    fire(store, make_draft(make_alert("fp-b"), duplicate_of=inc.id))
    out = store.resolve_incident(inc.id, at=T0 + 9 * MIN, note="rolled back")
    assert (out.kind, out.notify, out.incident.status) == ("resolved", True, "resolved")
    assert out.incident.resolved_at == T0 + 9 * MIN
    assert out.incident.resolution == {
        "auto": False,
        "note": "rolled back",
        "at": "2026-01-31T12:09:00.123Z",
    }
    assert store.stats()["alerts"]["firing"] == 0  # its alerts were closed with it
    again = store.resolve_incident(inc.id, at=T0 + 10 * MIN)
    assert (again.kind, again.notify, again.incident) == ("ignored", False, out.incident)
    assert store.resolve_incident("nope", at=T0) == AlertOutcome("ignored", None, False)
    # The late Alertmanager resolution finds nothing firing.
    late = store.record_resolved(
        make_alert(status="resolved", ends_at=T0 + 11 * MIN), now=T0 + 11 * MIN
    )
    assert late.kind == "ignored" and late.incident.resolved_at == T0 + 9 * MIN


def test_auto_resolve_flag(store: Store) -> None:
    inc = fire(store, make_draft()).incident
    out = store.resolve_incident(inc.id, at=T0 + MIN, auto=True)
    assert out.incident.resolution["auto"] is True and out.incident.resolution["note"] is None


# --- listing, narration, stats ----------------------------------------------------


def _populate(store: Store) -> list[str]:
    ids = []
    specs = [
        ("fp-1", "checkout-api", "payments"),
        ("fp-2", "cart", "web"),
        ("fp-3", "checkout-api", "web"),
    ]
    for n, (fp, service, team) in enumerate(specs):
        draft = make_draft(make_alert(fp, service=service), team=team)
        ids.append(fire(store, draft, now=T0 + n * MIN).incident.id)
    store.resolve_incident(ids[1], at=T0 + 10 * MIN)
    return ids


def test_list_incidents_filters_newest_first(store: Store) -> None:
    i1, i2, i3 = _populate(store)

    def ids(**kw) -> list[str]:
        return [i.id for i in store.list_incidents(**kw)]

    assert ids() == [i3, i2, i1]
    assert ids(limit=2) == [i3, i2]
    assert ids(status="open") == [i3, i1]
    assert ids(status="resolved") == [i2]
    assert ids(service="checkout-api") == [i3, i1]
    assert ids(team="web") == [i3, i2]
    assert ids(team="web", status="open") == [i3]
    assert ids(since=T0 + MIN) == [i3, i2]  # inclusive
    assert ids(service="nope") == []


def test_open_incidents_filters(store: Store) -> None:
    i1, _, i3 = _populate(store)
    assert [i.id for i in store.list_incidents(status="open", limit=None)] == [i3, i1]
    assert [
        i.id
        for i in store.list_incidents(
            status="open", limit=None, service="checkout-api", since=T0 + MIN
        )
    ] == [i3]
    assert [i.id for i in store.list_incidents(status="open", limit=None, fingerprint="fp-1")] == [
        i1
    ]
    assert store.list_incidents(status="open", limit=None, fingerprint="fp-2") == []


def test_list_incidents_any_of_is_a_disjunction_of_conjunctions(store: Store) -> None:
    i1, i2, i3 = _populate(store)
    # A fourth, alertname different: the AND inside a map must hold entirely.
    draft = make_draft(make_alert("fp-4", alertname="HighLatency"), team="payments")
    i4 = fire(store, draft, now=T0 + 20 * MIN).incident.id

    def ids(*maps: dict[str, str], **kw) -> list[str]:
        return [i.id for i in store.list_incidents(limit=None, any_of=maps, **kw)]

    assert ids() == [i4, i3, i2, i1]  # empty: no filter
    assert ids({"fingerprint": "fp-2"}) == [i2]
    assert ids({"fingerprint": "fp-2"}, {"fingerprint": "fp-3"}) == [i3, i2]
    assert ids({"service": "checkout-api", "alertname": "HighErrorRate"}) == [i3, i1]
    assert ids({"service": "checkout-api", "alertname": "HighLatency"}) == [i4]
    assert ids({"service": "checkout-api", "alertname": "nope"}) == []
    assert ids({"fingerprint": "fp-2"}, {"team": "payments", "alertname": "HighErrorRate"}) == [
        i2,
        i1,
    ]
    # ANDed with the other filters; an incident matching two maps is listed once.
    assert ids({"fingerprint": "fp-1"}, {"service": "checkout-api"}, status="open") == [
        i4,
        i3,
        i1,
    ]
    assert ids({"fingerprint": "fp-2"}, {"service": "cart"}, status="open") == []
    assert ids({"service": "checkout-api"}, since=T0 + 2 * MIN) == [i4, i3]
    assert ids({"service": "checkout-api"}, fingerprint="fp-3") == [i3]
    newest = store.list_incidents(limit=2, any_of=[{"service": "checkout-api"}])
    assert [i.id for i in newest] == [i4, i3]


def test_list_incidents_any_of_values_are_parameters(store: Store) -> None:
    i1 = fire(store, make_draft(make_alert("fp-'q", service="o'hara"))).incident.id
    assert [
        i.id for i in store.list_incidents(any_of=[{"service": "o'hara", "fingerprint": "fp-'q"}])
    ] == [i1]
    assert store.list_incidents(any_of=[{"service": "x' OR '1'='1"}]) == []


@pytest.mark.parametrize(
    "maps",
    [
        [{"status": "open"}],  # a column outside the allowed set
        [{"fingerprint": "fp-1"}, {"title": "x"}],
        [{"service = service OR 1": "x"}],
        [{}],  # matches everything: say so with no any_of instead
    ],
)
def test_list_incidents_any_of_rejects_other_columns(store: Store, maps) -> None:
    _populate(store)
    with pytest.raises(ValueError, match="any_of"):
        store.list_incidents(any_of=maps)


def test_set_narration(store: Store) -> None:
    inc = fire(store, make_draft()).incident
    store.set_narration(inc.id, {"text": "it was the deploy", "tokens": 12})
    assert store.get_incident(inc.id).narration == {"text": "it was the deploy", "tokens": 12}
    with pytest.raises(KeyError):
        store.set_narration("nope", {})


def test_stats(store: Store) -> None:
    empty = store.stats()
    assert empty == {
        "alerts": {"firing": 0, "resolved": 0, "total": 0},
        "incidents": {"open": 0, "resolved": 0, "total": 0, "repeats": 0, "attached": 0},
        "context": {"deploys": 0, "logs": 0, "traces": 0},
        "outbox": {"pending": 0, "sending": 0, "delivered": 0, "dead": 0},
    }
    _populate(store)
    fire(store, make_draft(make_alert("fp-1", service="checkout-api")))  # repeat
    fire(store, make_draft(make_alert("fp-1", starts_at=T0 + MIN)))  # attached
    store.add_context([ctx("logs", 1), ctx("logs", 2), ctx("traces", 1)])
    s = store.stats()
    assert s["alerts"] == {"firing": 3, "resolved": 1, "total": 4}
    assert s["incidents"] == {"open": 2, "resolved": 1, "total": 3, "repeats": 1, "attached": 1}
    assert s["context"] == {"deploys": 0, "logs": 2, "traces": 1}


# --- outbox ------------------------------------------------------------------------


def plan_for(*events: str):
    """A plan() sending `events` to sink "pager" for the outcomes that notify."""

    def plan(outcome: AlertOutcome) -> list[NewDelivery]:
        if not outcome.notify:
            return []
        return [
            NewDelivery("pager", e, {"kind": outcome.kind, "incident": outcome.incident.id})
            for e in events
        ]

    return plan


LEASE = timedelta(seconds=30)


def claim(store: Store, now=T0, limit=10, worker="w1"):
    return store.claim_deliveries(now=now, limit=limit, lease=LEASE, worker=worker)


def test_plan_deliveries_are_stored_with_the_incident(store: Store) -> None:
    seen: list[AlertOutcome] = []

    def plan(outcome: AlertOutcome) -> list[NewDelivery]:
        seen.append(outcome)
        return [NewDelivery("pager", "trigger", {"id": outcome.incident.id, "n": [1, 2]})]

    out = fire(store, make_draft(), plan=plan)
    assert seen == [out]
    (d,) = claim(store)
    assert (d.incident_id, d.sink, d.event, d.payload) == (
        out.incident.id,
        "pager",
        "trigger",
        {"id": out.incident.id, "n": [1, 2]},
    )
    assert (d.attempts, d.status, d.created_at, d.next_attempt_at, d.last_error) == (
        1,
        "sending",
        T0,
        T0,
        None,
    )


def test_plan_failure_rolls_back_the_change(store: Store) -> None:
    def plan(outcome: AlertOutcome) -> list[NewDelivery]:
        raise RuntimeError("template broke")

    draft = make_draft()
    with pytest.raises(RuntimeError):
        fire(store, draft, plan=plan)
    assert store.get_incident(draft.id) is None
    assert store.find_repeat("fp-a", T0) is None
    assert store.stats()["alerts"]["total"] == 0
    inc = fire(store, draft).incident
    with pytest.raises(RuntimeError):
        store.resolve_incident(inc.id, at=T0 + MIN, plan=plan)
    assert store.get_incident(inc.id).status == "open"
    with pytest.raises(RuntimeError):
        store.record_resolved(
            make_alert(status="resolved", ends_at=T0 + MIN), now=T0 + MIN, plan=plan
        )
    assert store.get_incident(inc.id).status == "open"
    assert store.stats()["outbox"]["pending"] == 0


def test_plan_runs_for_resolutions(store: Store) -> None:
    inc = fire(store, make_draft(), plan=plan_for("trigger")).incident
    fire(store, make_draft(), plan=plan_for("update"))  # repeat: no notify, no delivery
    store.record_resolved(
        make_alert(status="resolved", ends_at=T0 + MIN), now=T0 + MIN, plan=plan_for("resolve")
    )
    assert store.stats()["outbox"]["pending"] == 2
    first = claim(store, now=T0 + MIN)
    assert [(d.incident_id, d.event) for d in first] == [(inc.id, "trigger")]
    store.finish_delivery(first[0].id, ok=True, now=T0 + MIN)
    second = claim(store, now=T0 + MIN)
    assert [(d.event, d.payload["kind"]) for d in second] == [("resolve", "resolved")]
    store.resolve_incident(
        inc.id, at=T0 + 2 * MIN, plan=plan_for("resolve")
    )  # ignored: no delivery
    assert store.stats()["outbox"] == {"pending": 0, "sending": 1, "delivered": 1, "dead": 0}


def test_claim_keeps_order_per_incident(store: Store) -> None:
    a = fire(store, make_draft(make_alert("fp-a")), plan=plan_for("trigger", "update")).incident
    b = fire(store, make_draft(make_alert("fp-b")), plan=plan_for("trigger")).incident
    got = claim(store)
    assert [(d.incident_id, d.event) for d in got] == [(a.id, "trigger"), (b.id, "trigger")]
    assert claim(store, worker="w2") == []  # leased, and a's "update" waits for its "trigger"
    store.finish_delivery(got[0].id, ok=True, now=T0 + SEC)
    (nxt,) = claim(store, now=T0 + SEC, worker="w2")
    assert (nxt.incident_id, nxt.event) == (a.id, "update")
    assert store.stats()["outbox"] == {"pending": 0, "sending": 2, "delivered": 1, "dead": 0}


def test_a_failing_sink_does_not_hold_back_the_other_sinks(store: Store) -> None:
    def plan(outcome: AlertOutcome) -> list[NewDelivery]:
        if not outcome.notify:
            return []
        return [
            NewDelivery(sink, event, {"incident": outcome.incident.id})
            for sink in ("slack", "pager")
            for event in ("trigger", "update")
        ]

    fire(store, make_draft(), plan=plan)
    got = claim(store)
    assert [(d.sink, d.event) for d in got] == [("slack", "trigger"), ("pager", "trigger")]
    slack, pager = got
    # Slack keeps failing; the pager's next message still goes, in its own order.
    store.finish_delivery(slack.id, ok=False, now=T0 + SEC, error="HTTP 503", retry_at=T0 + MIN)
    store.finish_delivery(pager.id, ok=True, now=T0 + SEC)
    (nxt,) = claim(store, now=T0 + SEC)
    assert (nxt.sink, nxt.event) == ("pager", "update")
    # Slack's "update" waits for Slack's "trigger".
    store.finish_delivery(nxt.id, ok=True, now=T0 + 2 * SEC)
    assert claim(store, now=T0 + 2 * SEC) == []
    (again,) = claim(store, now=T0 + MIN)
    assert (again.id, again.sink, again.event) == (slack.id, "slack", "trigger")


def test_claim_limit(store: Store) -> None:
    for fp in ("fp-1", "fp-2", "fp-3"):
        fire(store, make_draft(make_alert(fp)), plan=plan_for("trigger"))
    assert len(claim(store, limit=2)) == 2
    assert len(claim(store, limit=2)) == 1


def test_expired_lease_is_claimed_again(store: Store) -> None:
    fire(store, make_draft(), plan=plan_for("trigger"))
    (d,) = claim(store, worker="w1")
    assert claim(store, now=T0 + LEASE - SEC, worker="w2") == []
    (again,) = claim(store, now=T0 + LEASE, worker="w2")
    assert (again.id, again.attempts, again.status) == (d.id, 2, "sending")


def test_failed_delivery_retries_at_retry_at(store: Store) -> None:
    fire(store, make_draft(), plan=plan_for("trigger", "update"))
    (d,) = claim(store)
    store.finish_delivery(d.id, ok=False, now=T0 + SEC, error="HTTP 502", retry_at=T0 + MIN)
    assert claim(store, now=T0 + MIN - SEC) == []  # not due, and it still blocks "update"
    (again,) = claim(store, now=T0 + MIN)
    assert (again.id, again.attempts, again.last_error, again.next_attempt_at) == (
        d.id,
        2,
        "HTTP 502",
        T0 + MIN,
    )


def test_dead_delivery_does_not_block_later_ones(store: Store) -> None:
    inc = fire(store, make_draft(), plan=plan_for("trigger", "update")).incident
    (d,) = claim(store)
    store.finish_delivery(d.id, ok=False, now=T0 + SEC, error="HTTP 400 bad payload")
    (dead,) = store.dead_deliveries()
    assert (dead.id, dead.status, dead.last_error, dead.incident_id) == (
        d.id,
        "dead",
        "HTTP 400 bad payload",
        inc.id,
    )
    (nxt,) = claim(store, now=T0 + SEC)
    assert nxt.event == "update"
    # A late finish from a worker whose lease expired does not resurrect a dead delivery.
    store.finish_delivery(d.id, ok=True, now=T0 + 2 * SEC)
    assert [x.id for x in store.dead_deliveries()] == [d.id]
    assert store.dead_deliveries(limit=0) == []
    with pytest.raises(KeyError):
        store.finish_delivery(10_000, ok=True, now=T0)


def test_plan_with_no_incident_cannot_store_deliveries(store: Store) -> None:
    def plan(outcome: AlertOutcome) -> list[NewDelivery]:
        return [NewDelivery("pager", "resolve")]

    with pytest.raises(ValueError, match="no incident"):
        store.record_resolved(make_alert("ghost", status="resolved"), now=T0, plan=plan)


# --- retention: resolved incidents and delivered outbox rows -----------------------


def test_prune_incidents_takes_old_resolved_ones_with_their_alerts_and_deliveries(
    store: Store,
) -> None:
    def plan(outcome: AlertOutcome) -> list[NewDelivery]:
        assert outcome.incident is not None
        return [NewDelivery("pager", "trigger", {"id": outcome.incident.id})]

    old = fire(store, make_draft(make_alert("fp-old")), plan=plan).incident
    recent = fire(store, make_draft(make_alert("fp-recent")), plan=plan).incident
    still_open = fire(store, make_draft(make_alert("fp-open")), plan=plan).incident
    held = fire(store, make_draft(make_alert("fp-held")), plan=plan).incident
    assert old and recent and still_open and held
    for d in claim(store, now=T0 + MIN, limit=10):
        if d.incident_id != held.id:  # held's trigger never reached its pager
            store.finish_delivery(d.id, ok=True, now=T0 + MIN)
    store.resolve_incident(old.id, at=T0 + 2 * MIN)
    store.resolve_incident(held.id, at=T0 + 2 * MIN)
    store.resolve_incident(recent.id, at=T0 + 20 * MIN)

    gone = store.prune_incidents(T0 + 10 * MIN)

    # old: resolved before the cutoff, its delivery done -> gone with alert and delivery;
    # recent: resolved after the cutoff; still_open: open; held: a delivery in flight.
    # still_open's delivered trigger is older than the cutoff: the row goes, the incident stays.
    assert gone == {"incidents": 1, "deliveries": 2}
    assert store.get_incident(old.id) is None
    assert store.find_repeat("fp-old", T0) is None
    for kept in (recent, still_open, held):
        assert store.get_incident(kept.id) is not None
    assert store.stats()["outbox"] == {"pending": 0, "sending": 1, "delivered": 0, "dead": 0}
    assert store.prune_incidents(T0 + 10 * MIN) == {"incidents": 0, "deliveries": 0}
    # A new firing of the pruned fingerprint opens a new incident, as for any new alert.
    again = fire(store, make_draft(make_alert("fp-old")), now=T0 + 30 * MIN)
    assert again.kind == "opened"


def test_prune_incidents_deletes_a_backlog_in_chunks(store: Store, monkeypatch) -> None:
    from engine.store import retention

    monkeypatch.setattr(retention, "INCIDENT_CHUNK", 7)  # many chunks, the last one short
    ids = [fire(store, make_draft(make_alert(f"fp-{i}"))).incident.id for i in range(40)]
    for i, inc_id in enumerate(ids):
        store.resolve_incident(inc_id, at=T0 + i * MIN)
    assert store.prune_incidents(T0 + 30 * MIN) == {"incidents": 30, "deliveries": 0}
    left = [i for i in ids if store.get_incident(i) is not None]
    assert left == ids[30:]  # the oldest resolutions went first, the rest stayed


def test_prune_context_also_takes_pull_answers_asked_before_the_cutoff(store: Store) -> None:
    from engine.store.base import NewPull

    def pull(q: str) -> NewPull:
        return NewPull("prometheus", "http://prom/api/v1/query", q, T0, T0, None, None, {})

    old = store.add_pull(pull("up"), now=T0 - 2 * MIN)
    new = store.add_pull(pull("rate(x[5m])"), now=T0)
    store.prune_context(T0 - MIN)
    assert store.get_pull(old.id) is None
    assert store.get_pull(new.id) is not None
