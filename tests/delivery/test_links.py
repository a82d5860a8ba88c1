"""Every message's link opens the incident's page under --public-url: Slack, PagerDuty,
Opsgenie, the webhook and stdout, each over its real path (an alert in, the outbox worker,
a stand-in receiver)."""

from __future__ import annotations

import json

import pytest

from engine.links import PAGE_PREFIX, incident_url
from engine.testing import make_alert, make_webhook

from .conftest import wait_until

BASE = "https://pilot.example.org/ops/"  # behind a proxy, under a path, trailing slash
ENV = {
    "PD_KEY": "pd-routing-key-link-01",
    "OG_KEY": "og-api-key-link-0001",
    "WH_SECRET": "wh-secret-link-0001",
}


def sinks(slack: str, pd: str, og: str, hook: str) -> str:
    return (
        "sinks:\n"
        "  chat: {type: slack, webhook_url_env: SLACK_URL}\n"
        f"  pd: {{type: pagerduty, url: '{pd}', routing_key_env: PD_KEY}}\n"
        f"  og: {{type: opsgenie, url: '{og}', api_key_env: OG_KEY}}\n"
        f"  hook: {{type: webhook, url: '{hook}/in', secret_env: WH_SECRET}}\n"
        "  out: {type: stdout}\n"
        "  lines: {type: stdout, format: json}\n"
        "routes:\n"
        "  default: [{sink: pd}, {sink: og}, {sink: hook}, {sink: chat}, {sink: out}, {sink: lines}]\n"
    )


def test_every_sink_links_to_the_incident_page(delivery_app, standin, capsys) -> None:
    chat, pd, og, hook = standin(), standin(), standin(), standin()
    env = {**ENV, "SLACK_URL": f"{chat.url}/services/T0/B0/link-test"}
    config = sinks(chat.url, pd.url, og.url, hook.url)
    _, client, _ = delivery_app(config, env, quiet=False, public_url=BASE)
    alert = make_alert(service="checkout-api", severity="critical")
    result = client.post("/alerts", json=make_webhook(alert)).json()["results"][0]
    iid = result["incident"]
    page = f"https://pilot.example.org/ops{PAGE_PREFIX}/incidents/{iid}"
    assert incident_url(BASE, iid) == page
    # The link's path is the incident's page on this server (the pages are open without tokens).
    opened = client.get(page.removeprefix("https://pilot.example.org/ops"))
    assert opened.status_code == 200 and "text/html" in opened.headers["content-type"]
    assert iid in opened.text

    for server in (chat, pd, og, hook):
        assert server.wait_for(1), "a sink was not called"
    slack = chat.requests[0].json()
    blocks = json.dumps(slack["blocks"])
    assert f"<{page}|Open incident {iid}>" in blocks
    assert page in slack["text"]  # the fallback text (notifications, screen readers)

    trigger = pd.requests[0].json()
    assert trigger["client_url"] == page
    assert trigger["links"][0]["href"] == page

    alert_body = og.requests[0].json()
    assert alert_body["details"]["link"] == page
    assert page in alert_body["description"]

    assert hook.requests[0].json()["link"] == page

    seen: list[str] = []

    def printed() -> bool:  # both stdout sinks: the text report and the JSON line
        seen.append(capsys.readouterr().out)
        text = "".join(seen)
        return "page:" in text and '"link"' in text

    assert wait_until(printed)
    out = "".join(seen)
    assert f"  page: {page}\n" in out
    [line] = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    assert line["link"] == page and line["incident"]["id"] == iid
    assert "/api/incidents/" not in out + blocks + json.dumps(trigger) + json.dumps(alert_body)


@pytest.mark.parametrize(
    ("base", "expected"),
    [
        ("http://127.0.0.1:9099", "http://127.0.0.1:9099/ui/incidents/inc-1"),
        ("https://pilot.example.org/", "https://pilot.example.org/ui/incidents/inc-1"),
        ("", "/ui/incidents/inc-1"),
    ],
)
def test_incident_url(base: str, expected: str) -> None:
    assert incident_url(base, "inc-1") == expected
