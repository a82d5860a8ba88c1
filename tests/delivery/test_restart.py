"""A real server process: deliveries survive a restart; no secret reaches its logs."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from pathlib import Path

import httpx
import pytest

from engine.testing import ServerProcess, free_port, make_alert, make_webhook

from .conftest import StandIn, wait_until

pytestmark = pytest.mark.e2e
SECRET = "restart-hmac-secret-0001"
SLACK_TOKEN = "slacktoken-0002-secret"


def outbox(srv: ServerProcess) -> dict[str, int]:
    return httpx.get(srv.url + "/api/stats", timeout=5).json()["outbox"]


def test_pending_deliveries_resume_after_a_restart(tmp_path: Path, standin) -> None:
    port = free_port()  # the receiver's port: nothing listens there yet
    chat = standin()
    config = tmp_path / "config.yaml"
    config.write_text(
        "delivery: {max_attempts: 50, base_delay: 100ms, max_delay: 300ms, lease: 3s,"
        " poll_interval: 100ms}\n"
        "sinks:\n"
        "  receiver:\n"
        "    type: webhook\n"
        f"    url: http://127.0.0.1:{port}/hook\n"
        "    secret_env: WH_SECRET\n"
        "    timeout: 1s\n"
        "routes:\n"
        "  default: [{sink: stdout}, {sink: receiver}]\n",
        "utf-8",
    )
    env = {
        "WH_SECRET": SECRET,
        "INCIDENT_PILOT_SLACK_WEBHOOK": f"{chat.url}/services/T0/B0/{SLACK_TOKEN}",
    }
    srv = ServerProcess(tmp_path / "srv", "--config", str(config), env=env)
    receiver: StandIn | None = None
    try:
        srv.start()
        body = make_webhook(
            make_alert(service="checkout-api", team="payments", severity="critical")
        )
        resp = httpx.post(srv.url + "/alerts", json=body, timeout=5)
        assert resp.status_code == 200
        incident = resp.json()["results"][0]["incident"]
        srv.wait_for_stdout(incident)  # stdout is a sink too
        # The receiver is down: its delivery waits (and retries), while Slack, a queue
        # of its own, gets its message.
        assert len(chat.wait_for(1)) == 1
        assert wait_until(lambda: outbox(srv)["pending"] + outbox(srv)["sending"] == 1)
        time.sleep(0.5)
        config_answer = httpx.get(srv.url + "/api/config", timeout=5).text
        srv.stop()
        receiver = StandIn(port=port)
        srv.start()
        (req,) = receiver.wait_for(1, timeout=10)
        assert wait_until(lambda: outbox(srv)["delivered"] == 3, timeout=10)
        time.sleep(0.3)
        assert len(receiver.requests) == 1
        assert len(chat.requests) == 1  # not sent again after the restart
        headers = {k.lower(): v for k, v in req.headers.items()}
        expected = (
            "sha256="
            + hmac.new(
                SECRET.encode(),
                headers["x-incident-pilot-timestamp"].encode() + b"." + req.body,
                hashlib.sha256,
            ).hexdigest()
        )
        assert hmac.compare_digest(expected, headers["x-incident-pilot-signature"])
        assert json.loads(req.body)["incident"]["id"] == incident
        logs = srv.stderr_text() + srv.stdout_text() + config_answer
        assert "receiver" in srv.stderr_text()  # the failed attempts were logged ...
        assert SECRET not in logs and SLACK_TOKEN not in logs  # ... without a secret
    finally:
        srv.close()
        if receiver is not None:
            receiver.stop()
