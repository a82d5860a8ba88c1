"""GET /api/deliveries (any status, by incident and sink) and POST
/api/deliveries/{id}/retry (admin): re-send a dead letter, never a page for an incident
that has since resolved."""

from __future__ import annotations

from typing import Any

from engine.testing import make_alert, make_webhook

from .conftest import Reply, StandIn, wait_until

READ = "read-token-0123456789abcdef"
ADMIN = "admin-token-0123456789abcdef"
INGEST = "ingest-token-0123456789abcdef"
ENV = {
    "PD_KEY": "pd-routing-key-000001",
    "INCIDENT_PILOT_TOKENS": f"read:{READ},admin:{ADMIN},ingest:{INGEST}",
}


def config(pd: StandIn, chat: StandIn) -> str:
    return (
        "delivery: {base_delay: 20ms, max_delay: 100ms, poll_interval: 50ms}\n"
        "sinks:\n"
        f"  pd: {{type: pagerduty, url: '{pd.url}', routing_key_env: PD_KEY, timeout: 2s}}\n"
        f"  chat: {{type: webhook, url: '{chat.url}/in', secret_env: PD_KEY, timeout: 2s}}\n"
        "routes:\n  default: [{sink: pd}, {sink: chat}]\n"
    )


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def fire(client: Any, service: str, status: str = "firing") -> str:
    alert = make_alert(service=service, severity="critical", status=status)
    resp = client.post("/alerts", json=make_webhook(alert), headers=auth(INGEST))
    assert resp.status_code == 200, resp.text
    return resp.json()["results"][0]["incident"]


def listing(client: Any, query: str) -> list[dict[str, Any]]:
    resp = client.get(f"/api/deliveries?{query}", headers=auth(READ))
    assert resp.status_code == 200, resp.text
    return resp.json()["deliveries"]


def outbox(client: Any) -> dict[str, int]:
    return client.get("/api/stats", headers=auth(READ)).json()["outbox"]


def test_list_filters_and_bad_queries(delivery_app, standin) -> None:
    pd, chat = standin(default=Reply(401, body=b"bad key")), standin()
    _, client, _ = delivery_app(config(pd, chat), ENV)
    first, second = fire(client, "checkout-api"), fire(client, "search")
    assert wait_until(lambda: outbox(client)["dead"] == 2 and outbox(client)["delivered"] == 2)
    everything = listing(client, "status=all")
    assert len(everything) == 4 and [d["id"] for d in everything] == sorted(
        (d["id"] for d in everything), reverse=True
    )
    dead = listing(client, "status=dead&sink=pd")
    assert {d["incident"] for d in dead} == {first, second}
    assert all(d["reason"] == "failed" and "HTTP 401" in d["last_error"] for d in dead)
    mine = listing(client, f"status=delivered,dead&incident={first}")
    assert {(d["sink"], d["status"]) for d in mine} == {("pd", "dead"), ("chat", "delivered")}
    assert [d["reason"] for d in listing(client, "status=delivered")] == [None, None]
    assert listing(client, "status=pending") == []
    page = listing(client, f"status=all&limit=2&before={everything[1]['id']}")
    assert [d["id"] for d in page] == [everything[2]["id"], everything[3]["id"]]
    for query, field in [
        ("status=lost", "status"),
        ("status=dead,", "status"),
        ("limit=0", "limit"),
        ("limit=501", "limit"),
        ("incident=" + "x" * 200, "incident"),
        ("sink=a%20b", "sink"),
        ("before=-1", "before"),
        ("before=99999999999999999999", "before"),
    ]:
        resp = client.get(f"/api/deliveries?{query}", headers=auth(READ))
        assert (resp.status_code, resp.json()["field"]) == (400, field), query


def test_retry_re_sends_a_dead_letter_once_fixed(delivery_app, standin) -> None:
    pd, chat = standin(default=Reply(401, body=b"bad key")), standin()
    _, client, _ = delivery_app(config(pd, chat), ENV)
    incident = fire(client, "checkout-api")
    assert wait_until(lambda: outbox(client)["dead"] == 1)
    (dead,) = listing(client, "sink=pd")
    url = f"/api/deliveries/{dead['id']}/retry"
    assert client.post(url, headers=auth(READ)).status_code == 403  # admin only
    pd.default = Reply(202, body=b'{"status":"success"}')  # the key was fixed
    resp = client.post(url, headers=auth(ADMIN))
    assert resp.status_code == 200, resp.text
    again = resp.json()
    assert (again["id"], again["status"], again["attempts"], again["incident"]) == (
        dead["id"],
        "pending",
        0,
        incident,
    )
    assert wait_until(lambda: outbox(client)["delivered"] == 2)
    assert [r.json()["event_action"] for r in pd.requests] == ["trigger", "trigger"]
    resp = client.post(url, headers=auth(ADMIN))
    assert resp.status_code == 409 and "delivered" in resp.json()["error"]
    for missing in ("999999999", "abc", "99999999999999999999", "-1"):
        resp = client.post(f"/api/deliveries/{missing}/retry", headers=auth(ADMIN))
        assert resp.status_code == 404, missing


def test_a_dead_trigger_of_a_resolved_incident_is_refused(delivery_app, standin) -> None:
    """Re-sending it would open a PagerDuty alert whose resolve already went out."""
    pd, chat = standin(default=Reply(401, body=b"bad key")), standin()
    _, client, _ = delivery_app(config(pd, chat), ENV)
    incident = fire(client, "checkout-api")
    assert wait_until(lambda: outbox(client)["dead"] == 1)
    (trigger,) = listing(client, "sink=pd")
    pd.default = Reply(202, body=b'{"status":"success"}')
    fire(client, "checkout-api", status="resolved")
    assert wait_until(lambda: outbox(client)["delivered"] == 3)  # pd resolve, chat x2
    resp = client.post(f"/api/deliveries/{trigger['id']}/retry", headers=auth(ADMIN))
    assert resp.status_code == 409 and "resolved" in resp.json()["error"]
    assert [r.json()["event_action"] for r in pd.requests] == ["trigger", "resolve"]
    (still,) = listing(client, f"status=dead&incident={incident}")
    assert still["id"] == trigger["id"]
