"""Re-sending a dead letter from the deliveries page (admin scope, CSRF), through a real
webhook sink to a stand-in on loopback that refuses, then accepts."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from engine.testing import make_alert

from .helpers import SESSION_KEY, TOKENS, TOKENS_ENV, bearer, form_value


class Receiver:
    """A webhook receiver on 127.0.0.1: 401 while `refuse`, else 200; counts requests."""

    def __init__(self) -> None:
        self.refuse = True
        self.received = 0
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("content-length") or 0))
                owner.received += 1
                self.send_response(401 if owner.refuse else 200)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    try:
        yield r
    finally:
        r.close()


def wait_for(check, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def sign_in(api, scope: str) -> None:
    form = api.get("/ui/login")
    r = api.post("/ui/login", data={"token": TOKENS[scope], "csrf": form_value(form.text, "csrf")})
    assert r.status_code == 303, r.text


def test_admin_resends_a_dead_letter_from_the_page(make_app, receiver, tmp_path, monkeypatch):
    monkeypatch.setenv("INCIDENT_PILOT_TOKENS", TOKENS_ENV)
    monkeypatch.setenv("INCIDENT_PILOT_SESSION_KEY", SESSION_KEY)
    monkeypatch.setenv("HOOK_SECRET", "hook-secret-0123456789abcdef")
    config = tmp_path / "delivery.yaml"
    config.write_text(
        "delivery: {base_delay: 20ms, max_delay: 100ms, poll_interval: 50ms}\n"
        f"sinks:\n  hook: {{type: webhook, url: '{receiver.url}', secret_env: HOOK_SECRET, timeout: 2s}}\n"
        "routes:\n  default: [{sink: hook}]\n"
    )
    state, api = make_app(config=str(config), quiet=True)
    r = api.post("/alerts", json=make_alert(service="checkout"), headers=bearer("ingest"))
    incident_id = r.json()["results"][0]["incident"]

    def dead() -> list:
        return state.store.list_deliveries(statuses=["dead"], sink="hook")

    wait_for(lambda: len(dead()) == 1)  # a 401 is not retried: dead at once
    delivery_id = dead()[0].id

    sign_in(api, "read")
    page = api.get("/ui/deliveries", params={"status": "dead"})
    assert f'href="/ui/incidents/{incident_id}"' in page.text and "HTTP 401" in page.text
    assert "Re-send delivery" not in page.text  # no button for the read scope
    refused = api.post(
        f"/ui/deliveries/{delivery_id}/retry", data={"csrf": form_value(page.text, "csrf")}
    )
    assert refused.status_code == 403 and len(dead()) == 1

    sign_in(api, "admin")
    page = api.get("/ui/deliveries", params={"status": "dead"})
    assert f'aria-label="Re-send delivery {delivery_id}"' in page.text
    forged = api.post(f"/ui/deliveries/{delivery_id}/retry", data={"csrf": "forged"})
    assert forged.status_code == 403 and len(dead()) == 1
    receiver.refuse = False
    back = form_value(page.text, "back")
    assert back == "/ui/deliveries?status=dead"
    r = api.post(
        f"/ui/deliveries/{delivery_id}/retry",
        data={"csrf": form_value(page.text, "csrf"), "back": back},
        follow_redirects=False,
    )
    assert r.status_code == 303 and r.headers["location"] == back
    wait_for(lambda: state.store.get_delivery(delivery_id).status == "delivered")
    assert receiver.received == 2
    shown = api.get("/ui/deliveries", params={"sink": "hook"}).text
    row = re.search(rf'<tr class="delivery-(\w+)">\s*<td class="num">{delivery_id}</td>', shown)
    assert row and row.group(1) == "delivered"
    again = api.post(
        f"/ui/deliveries/{delivery_id}/retry", data={"csrf": form_value(page.text, "csrf")}
    )
    assert again.status_code == 409 and "not dead" in again.text
    assert (
        api.post(
            "/ui/deliveries/999999/retry", data={"csrf": form_value(page.text, "csrf")}
        ).status_code
        == 404
    )
