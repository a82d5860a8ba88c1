"""GET /api/incidents: the severity filter, the text search and cursor paging (in process)."""

from __future__ import annotations

import pytest

from engine.testing import make_alert


def _fire(api, **labels) -> str:
    r = api.post("/alerts", json=make_alert(**labels))
    assert r.status_code == 200, r.text
    return r.json()["results"][0]["incident"]


def test_search_severity_and_cursor_paging(api):
    ids = [_fire(api, service=f"svc-{n}", alertname=f"Alert{n}", team="edge") for n in range(5)]
    ids.append(_fire(api, service="payments-api", alertname="Disk", team="storage"))
    listed = api.get("/api/incidents").json()
    newest_first = [i["id"] for i in listed["incidents"]]
    assert sorted(newest_first) == sorted(ids) and listed["next_cursor"] is None

    found = api.get("/api/incidents", params={"q": "payments"}).json()
    assert [i["id"] for i in found["incidents"]] == [ids[-1]]
    assert api.get("/api/incidents", params={"q": "Stor"}).json()["count"] == 1  # team, prefix
    severity = found["incidents"][0]["severity"]
    same = api.get("/api/incidents", params={"severity": severity}).json()
    assert ids[-1] in [i["id"] for i in same["incidents"]]
    other = "critical" if severity != "critical" else "info"
    assert api.get("/api/incidents", params={"severity": other, "q": "payments"}).json() == {
        "incidents": [],
        "count": 0,
        "next_cursor": None,
    }

    seen, cursor = [], None
    for _ in range(10):  # bounded: 6 incidents, 2 a page
        params = {"limit": "2", **({"cursor": cursor} if cursor else {})}
        page = api.get("/api/incidents", params=params).json()
        seen += [i["id"] for i in page["incidents"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == newest_first


@pytest.mark.parametrize(
    "params, field",
    [
        ({"severity": "urgent"}, "severity"),
        ({"cursor": "not-a-cursor"}, "cursor"),
        ({"cursor": "x" * 300}, "cursor"),
        ({"q": "a" * 257}, "q"),
        ({"q": "a\x00b"}, "q"),
    ],
)
def test_bad_list_parameters_are_400_naming_the_parameter(api, params, field):
    r = api.get("/api/incidents", params=params)
    assert r.status_code == 400, r.text
    assert r.json()["field"] == field
