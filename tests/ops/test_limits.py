"""Configurable limits: body per endpoint, alerts, records, labels, request time, headers."""

from __future__ import annotations

import socket

import anyio
import pytest
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

from engine.cli import build_parser
from engine.server.limits import Limits, TimeoutMiddleware
from engine.server.settings import settings_from_args
from tests.ops.helpers import alert, bearer

ING = bearer("ingest")
READ = bearer("read")


def test_body_limit_per_endpoint(make_app) -> None:
    c = make_app(limits=Limits(max_body_alerts=3000, max_body_context=400)).client
    big_alert = alert(pad="x" * 3000)
    r = c.post("/alerts", json=big_alert, headers=ING)
    assert r.status_code == 413 and "3000" in r.json()["error"]
    assert c.post("/alerts", json=alert(pad="x" * 1000), headers=ING).status_code == 200
    record = {"service": "s", "message": "m" * 500}
    assert c.post("/context/logs", json=record, headers=ING).status_code == 413


def test_max_body_is_the_default_for_both(make_app) -> None:
    c = make_app(max_body=500).client
    assert c.post("/alerts", json=alert(pad="x" * 600), headers=ING).status_code == 413
    record = {"service": "s", "message": "m" * 600}
    assert c.post("/context/logs", json=record, headers=ING).status_code == 413


def test_counts_and_label_limits(make_app) -> None:
    """Alert limits are soft: an envelope over --max-alerts is processed (in batches of
    it), fields over the label limits are cut with a marker. Context counts stay hard."""
    limits = Limits(
        max_alerts=2, max_records=2, max_labels=4, max_label_name=30, max_label_value=40
    )
    c = make_app(limits=limits).client
    three = {"alerts": [alert(str(i), service=f"svc-{i}") for i in range(3)]}
    r = c.post("/alerts", json=three, headers=ING)
    assert r.status_code == 200 and r.json()["received"] == 3, r.text
    assert [x["outcome"] for x in r.json()["results"]] == ["opened"] * 3
    r = c.post("/context/logs", json=[{"service": "s", "message": "m"}] * 3, headers=ING)
    assert r.status_code == 400 and "limit is 2" in r.json()["error"]

    def stored_labels(labels: dict[str, str]) -> dict[str, str]:
        r = c.post("/alerts", json={"labels": labels}, headers=ING)
        assert r.status_code == 200, r.text
        incident = r.json()["results"][0]["incident"]
        return c.get(f"/api/incidents/{incident}", headers=READ).json()["alert"]["labels"]

    five = {"a": "1", "b": "2", "c": "3", "alertname": "A", "e": "5"}
    assert stored_labels(five) == {"alertname": "A", "a": "1", "b": "2", "c": "3"}
    long_name = stored_labels({"alertname": "B", "n" * 40: "1"})
    assert long_name == {"alertname": "B", "n" * 9 + "…[truncated 31 chars]": "1"}
    long_value = stored_labels({"alertname": "C", "v": "y" * 100})
    assert long_value == {"alertname": "C", "v": "y" * 19 + "…[truncated 81 chars]"}


def test_flags_and_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INCIDENT_PILOT_MAX_LABELS", "7")
    monkeypatch.setenv("INCIDENT_PILOT_REQUEST_TIMEOUT", "2.5")
    args = build_parser().parse_args(
        ["serve", "--max-body", "1m", "--max-body-alerts", "64k", "--max-header-bytes", "8k"]
    )
    s = settings_from_args(args, [])
    assert s.limits.max_labels == 7 and s.limits.request_timeout == 2.5
    assert s.limits.body_limit("alerts", s.max_body) == 64 * 1024
    assert s.limits.body_limit("context", s.max_body) == 1024 * 1024
    assert s.limits.alert_limits().max_labels == 7
    options = s.limits.uvicorn_options(fd_limit=20_000)
    assert options["h11_max_incomplete_event_size"] == 8192
    assert options["http"].head_timeout == 10 and options["http"].max_connections == 10_000
    assert "limit_concurrency" not in options and options["timeout_keep_alive"] == 5
    # never more connections than the open-file limit leaves room for
    assert s.limits.uvicorn_options(fd_limit=1024)["http"].max_connections == 1024 - 64


async def _call(app, receive_delay: float = 0.0) -> tuple[int, bytes, dict[bytes, bytes]]:
    sent: list[dict] = []
    scope = {"type": "http", "method": "POST", "path": "/", "headers": [], "query_string": b""}

    async def receive() -> dict:
        await anyio.sleep(receive_delay)
        return {"type": "http.request", "body": b"{}", "more_body": False}

    async def send(message: dict) -> None:
        sent.append(message)

    await app(scope, receive, send)
    return sent[0]["status"], sent[1]["body"], dict(sent[0]["headers"])


def test_timeout_middleware() -> None:
    async def slow(request):
        await request.body()
        await anyio.sleep(5)
        return JSONResponse({})

    async def fast(request):
        await request.body()
        return JSONResponse({"ok": True})

    def wrap(endpoint):
        return TimeoutMiddleware(Starlette(routes=[Route("/", endpoint, methods=["POST"])]), 0.2)

    async def main() -> None:
        with anyio.fail_after(3):
            status, body, headers = await _call(wrap(slow))
            assert status == 503 and b"longer than 0.2s" in body
            assert headers[b"retry-after"] == b"1"  # a busy server says when to come back
            status, body, headers = await _call(wrap(fast), receive_delay=1)
            assert status == 408 and b"did not arrive" in body
            assert b"retry-after" not in headers
            status, _, _ = await _call(wrap(fast))
            assert status == 200

    anyio.run(main)


def test_oversized_headers_get_a_4xx_from_a_real_server(live_server) -> None:
    request = (
        b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: " + b"a" * 64 * 1024 + b"\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", live_server.port), timeout=5) as s:
        s.sendall(request)
        answer = s.recv(4096)
    status = int(answer.split(b" ", 2)[1])
    assert status in (400, 431), answer
    import httpx

    assert httpx.get(live_server.url + "/healthz").status_code == 200
