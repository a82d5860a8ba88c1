"""/metrics for the outbox: the backlog's age, every attempt counted, and the process,
platform and build-info families."""

from __future__ import annotations

import platform
import time

from engine import __version__
from engine.testing import free_port, make_alert, make_webhook

from .conftest import StandIn, wait_until


def value(text: str, prefix: str) -> float | None:
    for line in text.splitlines():
        if line.startswith(prefix):
            return float(line.split()[-1])
    return None


def test_backlog_age_attempts_and_runtime_families(delivery_app, standin) -> None:
    port = free_port()  # the receiver is down
    config = (
        "delivery: {base_delay: 50ms, max_delay: 200ms, poll_interval: 50ms}\n"
        f"sinks:\n  pd: {{type: pagerduty, url: 'http://127.0.0.1:{port}',"
        " routing_key_env: PD_KEY, timeout: 1s}\n"
        "routes:\n  default: [{sink: pd}]\n"
    )
    _, client, _ = delivery_app(config, {"PD_KEY": "pd-routing-key-000001"})
    text = client.get("/metrics").text
    assert value(text, "incident_pilot_outbox_oldest_pending_age_seconds ") == 0
    build = f'incident_pilot_build_info{{python="{platform.python_version()}",version="{__version__}"}} '
    assert value(text, build) == 1
    assert value(text, "process_cpu_seconds_total ") is not None
    assert value(text, "process_resident_memory_bytes ") > 0
    assert "python_info{" in text
    alert = make_alert(service="checkout-api", severity="critical")
    assert client.post("/alerts", json=make_webhook(alert)).status_code == 200
    time.sleep(1.2)
    text = client.get("/metrics").text
    assert value(text, "incident_pilot_outbox_oldest_pending_age_seconds ") >= 1.0
    retries = value(text, 'incident_pilot_deliveries_total{outcome="retry",sink="pd"} ')
    assert retries is not None and retries >= 2
    receiver = StandIn(port=port)
    try:
        assert wait_until(
            lambda: (
                value(
                    client.get("/metrics").text,
                    'incident_pilot_deliveries_total{outcome="delivered",sink="pd"} ',
                )
                == 1
            )
        )
        text = client.get("/metrics").text
        assert value(text, "incident_pilot_outbox_oldest_pending_age_seconds ") == 0
    finally:
        receiver.stop()
