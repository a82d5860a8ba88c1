"""The incident list's severity filter, text search and cursor paging, and the outbox and
alert listings the pages read: on every backend (the `store` fixture)."""

from __future__ import annotations

import sqlite3

from engine.model import Severity
from engine.store import Store, open_store

from .helpers import MIN, RENOTIFY, T0, make_alert, make_draft


def _open(store: Store, fp: str, n: int, severity: Severity = Severity.HIGH, **labels: str) -> str:
    draft = make_draft(make_alert(fp, **labels), severity=severity)
    out = store.record_firing(draft, now=T0 + n * MIN, renotify_after=RENOTIFY)
    assert out.incident is not None
    return out.incident.id


def test_severity_filter_takes_any_of_several(store: Store) -> None:
    low = _open(store, "fp-1", 0, Severity.LOW)
    high = _open(store, "fp-2", 1, Severity.HIGH)
    crit = _open(store, "fp-3", 2, Severity.CRITICAL)
    ids = [i.id for i in store.list_incidents(severities=[Severity.HIGH, Severity.CRITICAL])]
    assert ids == [crit, high]
    assert [i.id for i in store.list_incidents(severities=[Severity.LOW])] == [low]


def test_text_search_matches_word_prefixes_of_title_team_and_labels(store: Store) -> None:
    gateway = _open(store, "fp-1", 0, service="api-gateway", region="eu-west-1")
    checkout = _open(store, "fp-2", 1, service="checkout", region="us-east-1")

    def found(q: str) -> list[str]:
        return [i.id for i in store.list_incidents(q=q)]

    assert found("gateway") == [gateway]
    assert found("API gate") == [gateway]  # every word must match (AND), case-insensitive
    assert found("api-gateway") == [gateway]  # split the same way as the terms
    assert found("east") == [checkout]  # a label value
    assert found("higherror") == [checkout, gateway]  # the alertname, a prefix
    assert found("payments") == [checkout, gateway]  # the team
    assert found(gateway) == [gateway]  # the incident id
    assert found("gateway checkout") == []
    assert found("%") == found("") == [checkout, gateway]  # no words: no text filter
    assert found("x' OR 1=1 --") == []  # words, not SQL
    # Combined with the other filters.
    assert [i.id for i in store.list_incidents(q="api", status="resolved")] == []


def test_cursor_pages_through_everything_once_newest_first(store: Store) -> None:
    # Pairs opened at the same instant: the id breaks the tie, and a page boundary falls
    # between two incidents of one timestamp.
    ids = []
    for n in range(7):
        ids.append(_open(store, f"fp-{n}", n // 2))
    expected = [i.id for i in store.list_incidents(limit=None)]
    assert sorted(expected) == sorted(ids)
    seen: list[str] = []
    before = None
    while True:
        page = store.list_incidents(limit=3, before=before)
        seen += [i.id for i in page]
        if len(page) < 3:
            break
        before = (page[-1].opened_at, page[-1].id)
    assert seen == expected


def test_incident_alerts_lists_the_first_and_attached_ones(store: Store) -> None:
    iid = _open(store, "fp-a", 0)
    again = make_draft(make_alert("fp-a", starts_at=T0 + 5 * MIN, pod="api-7"))
    store.record_firing(again, now=T0 + 5 * MIN, renotify_after=RENOTIFY)
    store.record_resolved(
        make_alert("fp-a", starts_at=T0, status="resolved", ends_at=T0 + 2 * MIN), now=T0
    )
    alerts = store.incident_alerts(iid)
    assert [(a.fingerprint, a.starts_at, a.status, a.ends_at) for a in alerts] == [
        ("fp-a", T0, "resolved", T0 + 2 * MIN),
        ("fp-a", T0 + 5 * MIN, "firing", None),
    ]
    assert alerts[0].labels == {"alertname": "HighErrorRate", "service": "checkout-api"}
    assert alerts[1].labels == {**alerts[0].labels, "pod": "api-7"}
    assert alerts[1].generator_url == "http://prometheus:9090/graph?g0.expr=x&g0.tab=1"
    assert store.incident_alerts("inc-none") == []


def test_incidents_stored_before_the_term_index_are_indexed_on_open(tmp_path) -> None:
    path = str(tmp_path / "old.db")
    with open_store(path) as store:  # type: ignore[attr-defined]
        iid = _open(store, "fp-old", 0, service="legacy-billing")
    # As a database of the previous version: no term rows, no record of the migration.
    with sqlite3.connect(path) as conn:
        conn.execute("DROP TABLE incident_terms")
        conn.execute("DELETE FROM schema_migrations WHERE name = '0010_incident_terms'")
    with open_store(path) as store:  # type: ignore[attr-defined]
        assert [i.id for i in store.list_incidents(q="legacy")] == [iid]


def test_context_column_reads_one_typed_column_newest_first(store: Store) -> None:
    from engine.store.base import NewContext

    stored = store.add_context(
        [
            NewContext("logs", "api", T0 + n * MIN, {"level": level, "message": f"m{n}"})
            for n, level in enumerate(["ERROR", "INFO", "ERROR"])
        ]
        + [NewContext("logs", "other", T0, {"level": "ERROR", "message": "x"})]
    )
    got = store.context_column("logs", "level", start=T0, end=T0 + 5 * MIN, service="api")
    assert got == [
        ((T0 + 2 * MIN).timestamp(), stored[2].id, "ERROR"),
        ((T0 + MIN).timestamp(), stored[1].id, "INFO"),
        (T0.timestamp(), stored[0].id, "ERROR"),
    ]
    assert len(store.context_column("logs", "level", start=T0, end=T0, limit=5)) == 2
    import pytest

    with pytest.raises(ValueError):
        store.context_column("logs", "attributes", start=T0, end=T0)


def test_pruning_a_resolved_incident_takes_its_search_words(store: Store) -> None:
    old = _open(store, "fp-old", 0, service="billing")
    store.resolve_incident(old, at=T0 + MIN)
    kept = _open(store, "fp-new", 5, service="billing")
    store.prune_incidents(T0 + 2 * MIN)
    assert store.get_incident(old) is None
    assert [i.id for i in store.list_incidents(q="billing")] == [kept]
