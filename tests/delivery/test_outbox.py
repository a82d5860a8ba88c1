"""The outbox over real HTTP: retries, Retry-After, dead letters, unconfirmed sends,
and ingest that never waits on a sink."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

from engine.delivery.config import DeliveryPolicy
from engine.delivery.outbox import backoff
from engine.delivery.sinks.base import parse_retry_after
from engine.testing import free_port, make_alert, make_webhook

from .conftest import FAST, StandIn, wait_until

ENV = {"PD_KEY": "pd-routing-key-secret-01", "SLACK_URL": "", "WH_SECRET": "wh-secret-0001"}


def fire(client: Any, **labels: str) -> dict[str, Any]:
    labels.setdefault("severity", "critical")
    resp = client.post("/alerts", json=make_webhook(make_alert(**labels)))
    assert resp.status_code == 200, resp.text
    return resp.json()["results"][0]


def outbox(client: Any) -> dict[str, int]:
    return client.get("/api/stats").json()["outbox"]


def config(attempts: int, sinks: str, route: str, timeout: str = "1s") -> str:
    return FAST.format(attempts=attempts) + f"sinks:\n{sinks}routes:\n  default:\n{route}".replace(
        "TIMEOUT", timeout
    )


def pd_sink(url: str) -> str:
    return f"  pd:\n    type: pagerduty\n    url: {url}\n    routing_key_env: PD_KEY\n    timeout: TIMEOUT\n"


def slack_sink(name: str = "chat") -> str:
    return f"  {name}:\n    type: slack\n    webhook_url_env: SLACK_URL\n    timeout: TIMEOUT\n"


def test_500s_then_success_is_delivered_exactly_once(delivery_app, standin) -> None:
    pd = standin()
    for _ in range(2):
        pd.push(500, body=b"oops")
    _, client, _ = delivery_app(config(5, pd_sink(pd.url), "    - sink: pd\n"), ENV)
    fire(client, service="checkout-api", team="payments")
    assert wait_until(lambda: outbox(client)["delivered"] == 1)
    time.sleep(0.3)  # nothing more goes out
    assert len(pd.requests) == 3
    keys = {r.json()["dedup_key"] for r in pd.requests}
    assert len(keys) == 1


def test_429_retry_after_is_honoured(delivery_app, standin) -> None:
    pd = standin()
    pd.push(429, {"Retry-After": "1"})
    _, client, _ = delivery_app(config(5, pd_sink(pd.url), "    - sink: pd\n"), ENV)
    fire(client, service="checkout-api")
    first, second = pd.wait_for(2, timeout=5)
    assert second.at - first.at >= 0.9  # not the 20ms-100ms backoff
    assert wait_until(lambda: outbox(client)["delivered"] == 1)


def test_retry_after_forms() -> None:
    now = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    assert parse_retry_after("120") == 120
    assert parse_retry_after(format_datetime(now + timedelta(seconds=30), usegmt=True), now) == 30
    assert parse_retry_after("soon") is None and parse_retry_after(None) is None


def test_backoff_is_full_jitter_and_capped() -> None:
    policy = DeliveryPolicy(base_delay=1.0, max_delay=10.0)
    rng = random.Random(7)
    for attempt, ceiling in [(1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (9, 10.0), (500, 10.0)]:
        delays = [backoff(attempt, policy, rng) for _ in range(200)]
        assert all(0 <= d <= ceiling for d in delays)
        assert max(delays) > ceiling * 0.8  # spread over the whole range


def test_a_dead_sink_is_dead_lettered_and_harms_nothing_else(delivery_app, standin) -> None:
    chat = standin()
    down = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    sinks = pd_sink(down) + slack_sink()
    route = "    - sink: pd\n    - sink: chat\n"
    env = {**ENV, "SLACK_URL": f"{chat.url}/services/T/B/slack-secret"}
    _, client, _ = delivery_app(config(3, sinks, route, timeout="500ms"), env)
    fire(client, service="checkout-api")
    fire(client, service="search")
    assert wait_until(lambda: outbox(client) == {**outbox(client), "dead": 2, "delivered": 2})
    assert len(chat.requests) == 2  # Slack got both incidents, once each
    dead = client.get("/api/deliveries?status=dead").json()
    assert dead["count"] == 2
    first = dead["deliveries"][0]
    assert first["sink"] == "pd" and first["attempts"] == 3 and first["reason"] == "failed"
    assert "not sent" in first["last_error"]
    stats = client.get("/api/stats").json()
    assert stats["outbox"]["dead"] == 2 and len(stats["dead_letters"]) == 2
    assert client.get("/api/deliveries?status=lost").status_code == 400


def test_slack_timeout_after_sending_is_unconfirmed_not_resent(delivery_app, standin) -> None:
    chat, pd = standin(), standin()
    chat.push(200, delay=3.0)  # accepts, but answers too late
    pd.push(202, delay=3.0)  # same for PagerDuty: its dedup_key makes a retry safe
    env = {**ENV, "SLACK_URL": f"{chat.url}/services/T/B/x"}
    route = "    - sink: pd\n    - sink: chat\n"
    _, client, _ = delivery_app(config(5, pd_sink(pd.url) + slack_sink(), route, "300ms"), env)
    fire(client, service="checkout-api")
    assert wait_until(lambda: outbox(client)["dead"] == 1 and outbox(client)["delivered"] == 1)
    time.sleep(0.3)
    assert len(chat.requests) == 1  # never posted twice
    assert len(pd.requests) == 2  # retried after the read timeout
    (dead,) = client.get("/api/deliveries").json()["deliveries"]
    assert dead["sink"] == "chat" and dead["reason"] == "unconfirmed"


def test_a_hanging_sink_does_not_slow_ingest(delivery_app, standin: Callable[..., StandIn]) -> None:
    chat = standin()
    chat.default.delay = 10.0  # hangs (cut short at teardown)
    env = {**ENV, "SLACK_URL": f"{chat.url}/services/T/B/x"}
    _, client, _service = delivery_app(config(3, slack_sink(), "    - sink: chat\n", "4s"), env)
    slowest = 0.0
    for i in range(8):
        start = time.monotonic()
        fire(client, service=f"svc-{i}")
        slowest = max(slowest, time.monotonic() - start)
    assert wait_until(lambda: len(chat.requests) >= 4)  # the sink is being called, and hangs
    assert slowest < 1.0, f"POST /alerts took {slowest:.2f}s while the sink hung"
    assert outbox(client)["sending"] + outbox(client)["pending"] == 8
    chat.closing.set()  # release the hung requests so the worker stops promptly
