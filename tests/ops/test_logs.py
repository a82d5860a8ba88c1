"""Structured logs: request ids, one access line per request, no secrets or payloads."""

from __future__ import annotations

import json
import re
import secrets
import time

import httpx

from tests.ops.helpers import TOKENS, alert, bearer


def wait_for(server, text: str, timeout: float = 5.0) -> str:
    deadline = time.monotonic() + timeout
    while text not in server.stderr_text() and time.monotonic() < deadline:
        time.sleep(0.05)
    return server.stderr_text()


def test_no_token_and_no_payload_in_the_logs(server_factory) -> None:
    server = server_factory()
    marker = "MARKER-" + secrets.token_hex(8)
    payload = alert(marker, service="svc-" + marker, note=marker)
    payload["annotations"]["summary"] = marker
    r = httpx.post(server.url + "/alerts", json=payload, headers=bearer("ingest"))
    assert r.status_code == 200
    record = {"service": "svc", "message": f"error {marker}", "attributes": {"k": marker}}
    assert (
        httpx.post(server.url + "/context/logs", json=record, headers=bearer("ingest")).status_code
        == 200
    )
    assert (
        httpx.post(server.url + "/alerts", json=payload, headers=bearer("read")).status_code == 403
    )
    assert (
        httpx.post(
            server.url + "/alerts", content=b"{" + marker.encode(), headers=bearer("ingest")
        ).status_code
        == 400
    )
    incident = r.json()["results"][0]["incident"]
    assert (
        httpx.get(f"{server.url}/api/incidents/{incident}", headers=bearer("admin")).status_code
        == 200
    )
    server.stop()
    log = server.stderr_text()
    assert "POST /context/logs 200" in log
    for token in TOKENS.values():
        assert token not in log
    assert marker not in log


def test_request_id_and_access_line(live_server) -> None:
    r = httpx.get(
        live_server.url + "/api/stats", headers={**bearer("read"), "X-Request-Id": "abc-123"}
    )
    assert r.headers["x-request-id"] == "abc-123"
    generated = httpx.get(live_server.url + "/healthz").headers["x-request-id"]
    assert re.fullmatch(r"[0-9a-f]{16}", generated)
    hostile = httpx.get(live_server.url + "/healthz", headers={"X-Request-Id": 'a b\tc="d"'})
    assert hostile.headers["x-request-id"] != 'a b\tc="d"'  # replaced, never echoed into logs
    log = wait_for(live_server, "request_id=abc-123")
    line = next(line for line in log.splitlines() if "request_id=abc-123" in line)
    assert "logger=incident_pilot.access" in line
    assert "method=GET" in line and "path=/api/stats" in line and "status=200" in line
    assert re.search(r"duration_ms=[0-9.]+", line)
    assert re.search(r"auth=[0-9a-f]{8}", line)  # the token's short id, not the token


def test_json_log_format(server_factory) -> None:
    server = server_factory("--log-format", "json")
    httpx.get(server.url + "/api/rules", headers={**bearer("read"), "X-Request-Id": "json-1"})
    log = wait_for(server, "json-1")
    records = [json.loads(line) for line in log.splitlines() if line.strip()]
    access = [r for r in records if r.get("request_id") == "json-1"]
    assert access and access[0]["status"] == 200 and access[0]["path"] == "/api/rules"
    assert {"ts", "level", "logger", "msg"} <= set(records[0])
