"""Soft alert limits through a real server: one oversized field never costs a group its
alerts. The field is cut with a visible marker after the fingerprint is computed from the
original labels, counted in /metrics and logged at WARNING with the fingerprint; only a
body over the byte cap is refused (413). An envelope of any alert count is processed."""

from __future__ import annotations

import re
import time

import pytest

from engine.alerts import AlertLimits, Truncation, fingerprint, marker, parse_payload, truncate
from engine.testing import ServerProcess, make_alert, make_webhook
from engine.timeutil import utcnow


def metric(text: str, name: str) -> float:
    match = re.search(rf"^{re.escape(name)} (\S+)$", text, re.M)
    assert match, f"{name} not in /metrics"
    return float(match.group(1))


def test_a_group_with_a_10000_character_description_makes_both_incidents(
    tmp_path, am_fixture
) -> None:
    body = am_fixture("grouped-firing")  # captured from Alertmanager 0.25: pods a and b
    a, b = body["alerts"]
    # Grouped by service only, so the two alerts are two incidents (same alertname and
    # service would attach b to a's incident by the duplicate rule).
    b["labels"]["alertname"] = "PodOOMKilled"
    b["fingerprint"] = fingerprint(b["labels"])
    b["annotations"]["description"] = "D" * 10_000
    # An oversized label on a, without the fingerprint Alertmanager sends: the server
    # computes it, from the label as received.
    a_labels = {**a["labels"], "owner_note": "N" * 9_000}
    a["labels"] = a_labels
    del a["fingerprint"]

    with ServerProcess(tmp_path) as srv, srv.client() as c:
        r = c.post("/alerts", json=body)
        assert r.status_code == 200, r.text
        results = r.json()["results"]
        assert [x["outcome"] for x in results] == ["opened", "opened"]
        assert results[0]["fingerprint"] == fingerprint(a_labels)
        assert results[1]["fingerprint"] == b["fingerprint"]
        inc_a, inc_b = (c.get(f"/api/incidents/{x['incident']}").json() for x in results)
        assert inc_a["id"] != inc_b["id"]

        description = inc_b["alert"]["annotations"]["description"]
        assert len(description) == 8192
        assert description == "D" * 8168 + "…[truncated 1,832 chars]" == "D" * 8168 + marker(1832)
        assert inc_b["alert"]["annotations"]["summary"] == "pod b crashlooping"  # untouched
        assert inc_b["fingerprint"] == b["fingerprint"]
        note = inc_a["alert"]["labels"]["owner_note"]
        assert len(note) == 8192 and note.endswith("…[truncated 830 chars]")
        assert inc_a["fingerprint"] == fingerprint(a_labels)

        metrics = c.get("/metrics").text
        assert (
            metric(metrics, 'incident_pilot_alert_fields_truncated_total{field="annotation"}') == 1
        )
        assert metric(metrics, 'incident_pilot_alert_fields_truncated_total{field="label"}') == 1
        log = srv.stderr_text()
        for fp, what in ((b["fingerprint"], "'description' cut by 1,832 chars"),
                         (fingerprint(a_labels), "'owner_note' cut by 830 chars")):  # fmt: skip
            line = next(x for x in log.splitlines() if fp in x and "soft limits" in x)
            assert "level=warning" in line and what in line, line

        # Alertmanager re-sends the group: both are recognised by their original fingerprints.
        again = c.post("/alerts", json=body).json()["results"]
        assert [x["outcome"] for x in again] == ["repeat", "repeat"]
        assert [x["incident"] for x in again] == [x["incident"] for x in results]


def test_only_a_body_over_the_byte_cap_is_refused(tmp_path) -> None:
    with ServerProcess(tmp_path, "--max-body-alerts", "64k") as srv, srv.client() as c:
        big = make_webhook(make_alert(service="api", annotations={"description": "x" * 70_000}))
        r = c.post("/alerts", json=big)
        assert r.status_code == 413 and "65536" in r.json()["error"], r.text
        fits = make_webhook(make_alert(service="api", annotations={"description": "x" * 60_000}))
        r = c.post("/alerts", json=fits)
        assert r.status_code == 200 and r.json()["results"][0]["outcome"] == "opened", r.text


def test_an_envelope_of_5000_alerts_is_processed_whole(tmp_path) -> None:
    """Far past --max-alerts (1000): processed in batches, every alert an incident (500
    services) or attached to its service's incident by the duplicate rule. Default
    settings; should the request timeout cut it on a loaded machine (503), the client
    re-sends the same envelope as Alertmanager does, and what was committed is a repeat."""
    alerts = [
        make_alert(alertname="Saturation", service=f"svc-{i % 500}", instance=f"node-{i}")
        for i in range(5000)
    ]
    body = make_webhook(*alerts)
    with ServerProcess(tmp_path, "--quiet") as srv, srv.client(timeout=120) as c:
        started = time.monotonic()
        for _attempt in range(8):
            r = c.post("/alerts", json=body)
            if r.status_code != 503:
                break
        elapsed = time.monotonic() - started
        assert r.status_code == 200, r.text[:500]
        out = r.json()
        assert out["received"] == 5000 and len(out["results"]) == 5000
        assert {x["fingerprint"] for x in out["results"]} == {
            fingerprint(a["labels"]) for a in alerts
        }
        assert len({x["incident"] for x in out["results"]}) == 500
        assert elapsed < 240, f"5000 alerts took {elapsed:.0f}s"
        stats = c.get("/api/stats").json()
        assert stats["incidents"]["open"] == 500 and stats["alerts"]["firing"] == 5000, stats
        assert stats["incidents"]["attached"] == 4500, stats


# --- the cut itself (engine.alerts) ----------------------------------------------------


@pytest.mark.parametrize(
    ("length", "limit", "expected"),
    [
        (10, 10, "x" * 10),  # fits: untouched
        (100, 40, "x" * 19 + "…[truncated 81 chars]"),  # exactly the limit, marker included
        (10_000, 8192, "x" * 8168 + "…[truncated 1,832 chars]"),  # thousands separator
        (1_000, 1_000, "x" * 1_000),
        (1_001, 1_000, "x" * 979 + "…[truncated 22 chars]"),
        (50, 5, "…[truncated 50 chars]"),  # a limit shorter than the marker: the marker only
    ],
)
def test_truncate_keeps_what_fits_and_says_how_much_went(length, limit, expected) -> None:
    text, removed = truncate("x" * length, limit)
    assert text == expected
    assert removed == (0 if length <= limit else length - text.index("…"))
    assert len(text) <= max(limit, len(marker(length)))


def test_parse_cuts_after_the_fingerprint_and_reports_every_cut() -> None:
    limits = AlertLimits(max_labels=3, max_label_name=20, max_label_value=30)
    labels = {"b": "1", "c": "2", "long": "v" * 100, "alertname": "X", "n" * 40: "3"}
    cuts: list[Truncation] = []
    [alert] = parse_payload(
        {"alerts": [{"labels": labels, "annotations": {"d": "D" * 31}}]}, utcnow(), limits, cuts
    )
    assert alert.fingerprint == fingerprint(labels)  # from the labels as received
    assert alert.labels == {"alertname": "X", "b": "1", "c": "2"}  # alertname always kept
    assert alert.annotations["d"] == "D" * 9 + "…[truncated 22 chars]"
    assert alert.annotations["incident_pilot_truncated"] == (
        "2 labels dropped (over the limit of 3): long, " + "n" * 40
    )
    assert sorted((c.field, c.name, c.removed) for c in cuts) == [
        ("annotation", "d", 22),
        ("label", "long", 0),
        ("label", "n" * 40, 0),
    ]
    assert {c.fingerprint for c in cuts} == {alert.fingerprint}


def test_what_fits_is_not_touched_and_reports_nothing() -> None:
    cuts: list[Truncation] = []
    body = make_alert(service="api", annotations={"summary": "s" * 8192})
    [alert] = parse_payload(body, utcnow(), AlertLimits(), cuts)
    assert cuts == [] and alert.annotations == {"summary": "s" * 8192}
    assert "incident_pilot_truncated" not in alert.annotations
