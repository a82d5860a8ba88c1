"""POST /alerts: Alertmanager webhook v4 as really sent, idempotency, attach, resolve."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest

from engine.alerts import AlertLimits, PayloadError, fingerprint, parse_payload
from engine.pipeline import AlertResult
from engine.testing import make_alert, make_webhook, printed, ts
from engine.timeutil import format_ts, parse_ts, utcnow

AM = Path(__file__).resolve().parent / "fixtures" / "alertmanager"
AM_FILES = sorted(p.name for p in AM.glob("*.json"))


def post(api, body, status=200):
    r = api.post("/alerts", json=body)
    assert r.status_code == status, r.text
    return r.json()


def incident(api, incident_id):
    r = api.get(f"/api/incidents/{incident_id}")
    assert r.status_code == 200, r.text
    return r.json()


# --- fingerprints and parsing -------------------------------------------------------------


@pytest.mark.parametrize("name", AM_FILES)
def test_fixture_fingerprints_match_the_alertmanager_computation(name):
    body = json.loads((AM / name).read_text())
    for alert in body["alerts"]:
        assert fingerprint(alert["labels"]) == alert["fingerprint"], alert["labels"]


def test_fingerprint_is_computed_when_the_payload_has_none(api, am_fixture):
    body = am_fixture("firing")
    expected = body["alerts"][0].pop("fingerprint")
    out = post(api, body)
    assert out["results"][0]["fingerprint"] == expected
    assert incident(api, out["results"][0]["incident"])["fingerprint"] == expected


def test_fingerprint_does_not_depend_on_label_order():
    assert fingerprint({"b": "2", "a": "1"}) == fingerprint({"a": "1", "b": "2"})
    assert fingerprint({"a": "1"}) != fingerprint({"a": "1", "b": ""})


def test_unknown_keys_are_ignored_everywhere(api, am_fixture):
    body = am_fixture("firing")
    body["grafanaExtra"] = {"orgId": 1}
    body["alerts"][0]["valueString"] = "[ var='A' value=0.12 ]"
    body["alerts"][0]["silenceURL"] = "http://grafana/silence"
    out = post(api, body)
    assert out["received"] == 1 and out["results"][0]["outcome"] == "opened"


def test_a_bare_alert_and_a_list_of_alerts_are_accepted(api):
    bare = post(api, make_alert(service="svc-bare"))
    assert bare["received"] == 1 and bare["results"][0]["outcome"] == "opened"
    listed = post(api, [make_alert(service="svc-list-1"), make_alert(service="svc-list-2")])
    assert [r["outcome"] for r in listed["results"]] == ["opened", "opened"]


def test_prometheus_alert_with_millisecond_times_and_escaped_url(api, am_fixture):
    firing = post(api, am_fixture("prometheus-firing"))
    inc = incident(api, firing["results"][0]["incident"])
    assert inc["alert"]["startsAt"] == "2026-11-27T15:14:35.474Z"
    assert inc["alert"]["endsAt"] is None  # Go's zero time means "no end"
    assert "&g0.tab=1" in inc["alert"]["generatorURL"]
    resolved = post(api, am_fixture("prometheus-resolved"))
    assert resolved["results"][0]["outcome"] == "resolved"
    assert incident(api, inc["id"])["resolved_at"] == "2026-11-27T15:14:59.474Z"


def test_nine_fractional_digits_are_accepted(api, am_fixture):
    out = post(api, am_fixture("grouped-firing"))
    inc = incident(api, out["results"][0]["incident"])
    assert inc["alert"]["startsAt"] == "2026-11-27T15:12:27.885383Z"


def test_times_with_an_offset_come_back_in_utc(api):
    out = post(api, make_alert(service="tz", starts_at="2026-11-27T17:00:00+02:00"))
    assert incident(api, out["results"][0]["incident"])["alert"]["startsAt"] == (
        "2026-11-27T15:00:00Z"
    )


def test_missing_starts_at_is_the_received_time(api):
    before = utcnow()
    out = post(api, make_alert(service="no-start"))
    after = utcnow()
    starts = parse_ts(incident(api, out["results"][0]["incident"])["alert"]["startsAt"])
    assert before <= starts <= after


def test_far_future_starts_at_is_refused(api):
    r = api.post("/alerts", json=make_webhook(make_alert(starts_at="2099-01-01T00:00:00Z")))
    assert r.status_code == 400
    assert r.json()["field"] == "alerts[0].startsAt"
    assert "in the future" in r.json()["error"]
    assert api.get("/api/incidents").json()["count"] == 0


def test_a_little_clock_skew_is_allowed(api):
    soon = format_ts(utcnow() + timedelta(minutes=1))
    assert post(api, make_alert(service="skew", starts_at=soon))["results"][0]["outcome"] == (
        "opened"
    )


def test_parser_keeps_offline_callers_free_of_the_future_check():
    # replay and rule tests pick their own `now`: only the server sets max_future.
    now = parse_ts("2000-01-01T00:00:00Z")
    [alert] = parse_payload(make_alert(starts_at="2026-01-01T00:00:00Z"), now)
    assert alert.starts_at.year == 2026
    with pytest.raises(PayloadError) as err:
        parse_payload(
            make_alert(starts_at="2026-01-01T00:00:00Z"),
            now,
            AlertLimits(max_future=timedelta(minutes=5)),
        )
    assert err.value.field == "alert.startsAt"


def test_status_defaults_from_ends_at(api):
    fp = make_alert(service="implicit")
    start = utcnow() - timedelta(minutes=5)
    opened = post(api, {**fp, "startsAt": format_ts(start), "status": None})
    assert opened["results"][0]["status"] == "firing"
    body = {**fp, "startsAt": format_ts(start), "endsAt": ts(minutes=1)}
    del body["status"]
    assert post(api, body)["results"][0] == {
        **opened["results"][0],
        "status": "resolved",
        "outcome": "resolved",
    }


# --- resolution --------------------------------------------------------------------------


def test_firing_then_resolved_fixture_resolves_automatically_at_ends_at(api, am_fixture):
    firing = post(api, am_fixture("firing"))["results"][0]
    assert firing["outcome"] == "opened"
    resolved = post(api, am_fixture("resolved"))["results"][0]
    assert resolved == {**firing, "status": "resolved", "outcome": "resolved"}
    inc = incident(api, firing["incident"])
    assert inc["status"] == "resolved"
    assert inc["resolved_at"] == "2026-11-27T15:09:50Z"
    assert inc["resolution"]["auto"] is True
    assert inc["resolution"]["at"] == "2026-11-27T15:09:50Z"


def test_a_resent_resolution_is_ignored(api, am_fixture):
    post(api, am_fixture("firing"))
    post(api, am_fixture("resolved"))
    again = post(api, am_fixture("resolved"))["results"][0]
    assert again["outcome"] == "ignored"
    assert api.get("/api/stats").json()["incidents"]["resolved"] == 1


def test_resolution_of_an_unknown_alert_is_ignored(api, am_fixture):
    out = post(api, am_fixture("resolved"))["results"][0]
    assert out["outcome"] == "ignored" and out["incident"] is None
    assert api.get("/api/incidents").json()["count"] == 0


def test_grouped_fixtures_are_handled_alert_by_alert(api, am_fixture):
    first = post(api, am_fixture("grouped-firing"))
    assert [r["outcome"] for r in first["results"]] == ["opened", "attached"]
    incident_id = first["results"][0]["incident"]
    assert first["results"][1]["incident"] == incident_id  # pod b joined pod a's incident
    inc = incident(api, incident_id)
    assert inc["attached_count"] == 1 and inc["status"] == "open"
    assert not any(f["rule"] == "incident.duplicate_open" for f in inc["findings"])

    partial = post(api, am_fixture("grouped-partial-resolve"))
    assert [(r["status"], r["incident"]) for r in partial["results"]] == [
        ("resolved", incident_id),
        ("firing", incident_id),
    ]
    assert incident(api, incident_id)["status"] == "open", "pod b still fires"

    last = post(api, am_fixture("grouped-resolved"))["results"][0]
    assert last["outcome"] == "resolved"
    inc = incident(api, incident_id)
    assert inc["status"] == "resolved"
    assert inc["resolved_at"] == "2026-11-27T15:12:37Z"
    assert inc["resolution"]["auto"] is True
    assert api.get("/api/stats").json()["incidents"]["total"] == 1


# --- idempotency, attach, re-notify ------------------------------------------------------


def test_the_same_firing_twice_is_one_incident_with_a_repeat(api, am_fixture):
    first = post(api, am_fixture("firing"))["results"][0]
    before = incident(api, first["incident"])
    second = post(api, am_fixture("firing"))["results"][0]
    assert second["outcome"] == "repeat" and second["incident"] == first["incident"]
    after = incident(api, first["incident"])
    assert after["repeat_count"] == 1
    assert parse_ts(after["last_seen"]) > parse_ts(before["last_seen"])
    assert after["opened_at"] == before["opened_at"]
    assert api.get("/api/stats").json()["incidents"]["total"] == 1


def _listen(state):
    seen: list[AlertResult] = []
    state.listeners.append(seen.append)
    return seen


def test_a_new_firing_of_an_open_incident_is_attached_without_notifying(make_app):
    state, api = make_app()
    seen = _listen(state)
    start = utcnow() - timedelta(minutes=10)
    a = make_alert(service="checkout-api", pod="a", starts_at=start)
    b = make_alert(service="checkout-api", pod="b", starts_at=start + timedelta(minutes=2))
    opened = post(api, a)["results"][0]
    attached = post(api, b)["results"][0]
    assert attached["outcome"] == "attached"
    assert attached["incident"] == opened["incident"]
    assert attached["fingerprint"] != opened["fingerprint"]
    assert [r.outcome.notify for r in seen] == [True, False]
    # The same fingerprint firing again later (a new startsAt) is attached as well.
    again = post(api, {**a, "startsAt": format_ts(start + timedelta(minutes=5))})["results"][0]
    assert (again["outcome"], again["incident"]) == ("attached", opened["incident"])
    assert seen[-1].outcome.notify is False
    inc = incident(api, opened["incident"])
    assert inc["attached_count"] == 2
    dup = [f for f in inc["findings"] if f["rule"] == "incident.duplicate_open"]
    assert dup == [], "the opening alert had no open incident to duplicate"


def test_attached_alerts_notify_again_after_the_renotify_interval(make_app):
    state, api = make_app(renotify_after=timedelta(0))
    seen = _listen(state)
    post(api, make_alert(service="checkout-api", pod="a"))
    post(api, make_alert(service="checkout-api", pod="b"))
    assert [r.outcome.kind for r in seen] == ["opened", "attached"]
    assert [r.outcome.notify for r in seen] == [True, True]


def test_a_repeat_is_not_printed(make_app):
    state, api = make_app(report="json")
    alert = make_alert(service="checkout-api", pod="a", starts_at=ts(minutes=1))
    post(api, alert)
    post(api, alert)
    lines = [json.loads(x) for x in printed(state).splitlines()]
    assert [x["event"] for x in lines] == ["opened"]


def test_a_resolved_incident_does_not_swallow_a_new_firing(api, am_fixture):
    post(api, am_fixture("firing"))
    post(api, am_fixture("resolved"))
    body = am_fixture("firing")
    body["alerts"][0]["startsAt"] = ts(minutes=1)
    out = post(api, body)["results"][0]
    assert out["outcome"] == "opened"
    assert api.get("/api/incidents?status=open").json()["count"] == 1


# --- startsAt anchors the windows ----------------------------------------------------------


def test_starts_at_anchors_the_rule_windows(api):
    start = utcnow() - timedelta(hours=1)
    deploys = [
        {
            "service": "anchor-svc",
            "commit": "c0ffee1",
            "author": "ana",
            "when": format_ts(start - timedelta(minutes=3)),
        },
        {"service": "anchor-svc", "commit": "dead000", "author": "bo", "when": ts(minutes=1)},
    ]
    ids = api.post("/context/deploys", json=deploys).json()["ids"]
    out = post(api, make_alert(service="anchor-svc", starts_at=start))["results"][0]
    inc = incident(api, out["incident"])
    [finding] = [f for f in inc["findings"] if f["rule"] == "deploy.recent_correlated"]
    assert finding["severity"] == "high"
    assert "c0ffee1" in finding["summary"] and "3m" in finding["summary"]
    assert [e["path"] for e in finding["evidence"]] == [f"context/deploys/{ids[0]}"]
