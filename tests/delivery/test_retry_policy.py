"""Deliveries survive outages: retries go by age (default 24 h), a payload refusal gets one
minimal retry, and a dead letter is loud (ERROR log, counted)."""

from __future__ import annotations

import itertools
import logging
import random
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

from engine.delivery.config import DeliveryPolicy
from engine.delivery.outbox import retry_schedule
from engine.testing import free_port, make_alert, make_webhook

from . import services
from .conftest import Reply, Seen, StandIn, wait_until

OUTAGE = 300.0  # five minutes


class Ceiling(random.Random):
    """Jitter at its most patient: every delay at its upper bound."""

    def uniform(self, a: float, b: float) -> float:
        return b


def test_the_default_schedule_outlasts_a_five_minute_outage() -> None:
    """Computed from the DEFAULT policy: a delivery created at any moment of a 5-minute
    outage is still being retried when it ends, at most max_delay (2 min) apart; before,
    8 attempts were over within 254 s even at the most patient jitter."""
    policy = DeliveryPolicy()
    assert (policy.max_age, policy.max_attempts, policy.max_delay) == (86_400, None, 120)
    for rng in [Ceiling(), *(random.Random(seed) for seed in range(20))]:
        times = retry_schedule(policy, rng)
        assert times[-1] == 86_400  # the last attempt is made at max_age, not before
        gaps = [b - a for a, b in itertools.pairwise(times)]
        assert max(gaps) <= policy.max_delay
        assert any(t > OUTAGE for t in times)
    old = DeliveryPolicy(max_attempts=8, max_delay=600)
    assert len(retry_schedule(old, Ceiling())) == 8
    assert retry_schedule(old, Ceiling())[-1] == 254 < OUTAGE


def fire_many(client: Any, n: int) -> list[str]:
    ids = []
    for i in range(n):
        alert = make_alert(service=f"svc-{i:03d}", severity="critical")
        resp = client.post("/alerts", json=make_webhook(alert))
        assert resp.status_code == 200, resp.text
        ids.append(resp.json()["results"][0]["incident"])
    return ids


def slack_config(extra: str = "") -> str:
    return (
        f"delivery: {{workers: 4{extra}}}\n"
        "sinks:\n  chat: {type: slack, webhook_url_env: SLACK_URL, timeout: 5s}\n"
        "routes:\n  default: [{sink: chat}]\n"
    )


def test_default_policy_delivers_200_through_a_five_minute_outage_driven_clock(
    delivery_app, standin: Callable[..., StandIn]
) -> None:
    """The DEFAULT policy, with time driven by the test: the Slack stand-in answers 503
    (not posted) until five simulated minutes have passed; the outbox is run by hand
    against the real store and real HTTP, its clock advanced to each next due time."""
    clock = {"now": None}
    outage_end: list[Any] = []

    def down(req: Seen) -> Reply | None:
        if clock["now"] < outage_end[0]:
            return Reply(503, body=b"service unavailable")
        return services.slack(req)

    chat = standin(default=Reply(200, body=b"ok"), check=down)
    env = {"SLACK_URL": f"{chat.url}/services/T/B/x"}
    state, client, service = delivery_app(slack_config(), env)
    service.stop()  # the test runs the outbox itself
    fire_many(client, 200)
    worker, store = service.worker, state.store
    clock["now"] = store.oldest_pending_delivery()
    outage_end.append(clock["now"] + timedelta(seconds=OUTAGE))
    worker.clock = lambda: clock["now"]
    lease = timedelta(seconds=60)
    pool = ThreadPoolExecutor(8)
    for _ in range(10_000):  # bounded: each round delivers, or moves the clock forward
        due = store.claim_deliveries(now=clock["now"], limit=200, lease=lease, worker="t")
        list(pool.map(worker.process, due))  # as the worker's sender threads do
        pending = store.list_deliveries(statuses=["pending"], limit=500)
        if not pending:
            break
        # The worker looks every poll_interval (1 s), or sooner for a retry it scheduled.
        tick = clock["now"] + timedelta(seconds=1)
        clock["now"] = max(tick, min(d.next_attempt_at for d in pending))
    pool.shutdown()
    assert store.stats()["outbox"] == {"pending": 0, "sending": 0, "delivered": 200, "dead": 0}
    refused = {id(seen) for seen, _ in chat.refused}
    posted = [r for r in chat.requests if id(r) not in refused]
    accepted = [r.json()["blocks"][-1]["text"]["text"] for r in posted]
    assert len(accepted) == 200 and len(set(accepted)) == 200  # each once, none twice
    assert clock["now"] >= outage_end[0]  # the retries did reach past the outage
    assert len(refused) >= 200 * 5, len(refused)  # every delivery kept trying through it


def test_200_alerts_through_an_outage_live_with_a_scaled_policy(
    delivery_app, standin: Callable[..., StandIn]
) -> None:
    """Real time, real threads: the receiver refuses connections for 4 s while the policy
    is the default scaled down (max_age 24h -> 60 s, max_delay 2m -> 400 ms)."""
    port = free_port()  # nothing listens there yet: connections are refused
    env = {"SLACK_URL": f"http://127.0.0.1:{port}/services/T/B/x"}
    extra = ", max_age: 60s, base_delay: 10ms, max_delay: 400ms, poll_interval: 50ms"
    _, client, _ = delivery_app(slack_config(extra), env)
    started = time.monotonic()
    ids = fire_many(client, 200)
    time.sleep(max(0.0, 4.0 - (time.monotonic() - started)))
    outbox = client.get("/api/stats").json()["outbox"]
    assert outbox["delivered"] == 0 and outbox["dead"] == 0  # down, nothing given up
    chat = standin(port=port, default=Reply(200, body=b"ok"), check=services.slack)
    assert wait_until(
        lambda: client.get("/api/stats").json()["outbox"]["delivered"] == 200, timeout=40
    )
    time.sleep(0.5)  # nothing more goes out
    links = [r.json()["blocks"][-1]["text"]["text"] for r in chat.requests]
    assert len(links) == 200 and len(set(links)) == 200  # each once, none twice
    assert all(any(i in link for link in links) for i in ids)
    assert client.get("/api/stats").json()["outbox"]["dead"] == 0


def pd_config(url: str, extra: str = "") -> str:
    return (
        f"delivery: {{base_delay: 20ms, max_delay: 100ms, poll_interval: 50ms{extra}}}\n"
        f"sinks:\n  pd: {{type: pagerduty, url: '{url}', routing_key_env: PD_KEY, timeout: 2s}}\n"
        "routes:\n  default: [{sink: pd}]\n"
    )


PD_ENV = {"PD_KEY": "pd-routing-key-000001"}
PD_400 = b'{"status":"invalid event","message":"Event object is invalid","errors":["x"]}'


def fire(client: Any, service: str = "checkout-api") -> str:
    alert = make_alert(service=service, severity="critical")
    resp = client.post("/alerts", json=make_webhook(alert))
    assert resp.status_code == 200, resp.text
    return resp.json()["results"][0]["incident"]


def metric(client: Any, outcome: str, sink: str = "pd") -> float:
    needle = f'incident_pilot_deliveries_total{{outcome="{outcome}",sink="{sink}"}} '
    for line in client.get("/metrics").text.splitlines():
        if line.startswith(needle):
            return float(line.split()[-1])
    return 0.0


def test_a_payload_refusal_gets_one_minimal_retry(delivery_app, standin) -> None:
    pd = standin()
    pd.push(400, body=PD_400)
    _, client, _ = delivery_app(pd_config(pd.url), PD_ENV)
    fire(client)
    assert wait_until(lambda: client.get("/api/stats").json()["outbox"]["delivered"] == 1)
    full, minimal = pd.wait_for(2)
    assert "narration" in full.json()["payload"]["custom_details"]
    details = minimal.json()["payload"]["custom_details"]
    assert "narration" not in details and details["link"].endswith(
        "/ui/incidents/" + details["incident_id"]
    )
    assert len(details["findings"]) <= 3
    assert minimal.json()["payload"]["summary"] == full.json()["payload"]["summary"]
    assert (metric(client, "minimal"), metric(client, "delivered")) == (1, 1)
    time.sleep(0.2)
    assert len(pd.requests) == 2


def test_a_refused_minimal_message_is_dead_and_says_both(delivery_app, standin) -> None:
    pd = standin(default=Reply(422, body=b'{"message":"unprocessable"}'))
    _, client, _ = delivery_app(pd_config(pd.url), PD_ENV)
    fire(client)
    assert wait_until(lambda: client.get("/api/stats").json()["outbox"]["dead"] == 1)
    (dead,) = client.get("/api/deliveries?status=dead").json()["deliveries"]
    assert dead["last_error"].count("HTTP 422") == 2
    assert len(pd.requests) == 2  # the full message, the minimal one, nothing more


def test_a_dead_letter_is_logged_at_error_and_counted(delivery_app, standin, caplog) -> None:
    pd = standin(default=Reply(401, body=b'{"message":"bad key"}'))  # not the payload's fault
    _, client, _ = delivery_app(pd_config(pd.url), PD_ENV)
    with caplog.at_level(logging.WARNING, logger="incident_pilot.delivery"):
        incident = fire(client)
        assert wait_until(lambda: client.get("/api/stats").json()["outbox"]["dead"] == 1)
        assert wait_until(lambda: any(r.levelno == logging.ERROR for r in caplog.records))
    assert len(pd.requests) == 1  # a 401 is not retried, not even minimal
    (record,) = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert incident in record.getMessage() and "sink pd" in record.getMessage()
    assert (record.incident, record.sink) == (incident, "pd")  # type: ignore[attr-defined]
    assert (metric(client, "dead"), metric(client, "minimal"), metric(client, "retry")) == (1, 0, 0)


def test_retries_stop_at_max_age(delivery_app) -> None:
    down = f"http://127.0.0.1:{free_port()}"
    _, client, _ = delivery_app(pd_config(down, ", max_age: 1s"), PD_ENV)
    fire(client)
    started = time.monotonic()
    assert wait_until(lambda: client.get("/api/stats").json()["outbox"]["dead"] == 1, timeout=10)
    assert time.monotonic() - started >= 0.8  # tried for about max_age, not a count
    (dead,) = client.get("/api/deliveries").json()["deliveries"]
    assert dead["attempts"] >= 3 and "not sent" in dead["last_error"]
    assert metric(client, "retry") == dead["attempts"] - 1 and metric(client, "dead") == 1


def test_an_older_config_with_max_attempts_still_loads(tmp_path) -> None:
    from engine.delivery.config import load_config

    path = tmp_path / "old.yaml"
    path.write_text("delivery: {max_attempts: 8, base_delay: 2s, max_delay: 10m}\n", "utf-8")
    config, problems = load_config(path, {})
    assert problems == [] and config is not None
    policy = config.policy
    assert (policy.max_attempts, policy.max_age, policy.max_delay) == (8, 86_400, 600)
    assert len(retry_schedule(policy, Ceiling())) == 8  # as written: 8 attempts at most
