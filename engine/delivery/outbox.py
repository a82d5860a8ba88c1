"""The outbox worker: delivers what the store's outbox holds, in the background.

One dispatcher thread claims due deliveries (`Store.claim_deliveries`: the oldest
undelivered one of each (incident, sink), under a lease) as long as a sender thread is free, and
a pool of sender threads sends them; each result is written back with
`Store.finish_delivery`. The HTTP handlers never wait on a sink: they only store.

Retries: attempt n (1-based) failing is retried after uniform(0, min(max_delay,
base_delay * 2**(n-1))) seconds ("full jitter"), or after the sink's Retry-After (cut
to max_retry_after) when it sent one, for as long as the delivery is younger than
max_age (the last attempt is made at max_age), or max_attempts when that is set. Then it
is dead: logged at ERROR and counted. A receiver that refuses a message for its payload
(400, 413, 422) gets one immediate retry with a minimal message. A worker that dies
mid-send leaves its delivery `sending`; it is claimed again once the lease expires (at
the next start, or by another process on the same store).
"""

from __future__ import annotations

import logging
import random
import socket
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any, Final

from engine.delivery.config import DeliveryPolicy
from engine.delivery.secrets import Redactor, Secret
from engine.delivery.sinks.base import SendContext, SendResult, Sink, Status
from engine.serialize import incident_to_dict
from engine.store.base import Delivery, Store
from engine.timeutil import utcnow

log = logging.getLogger("incident_pilot.delivery")
UNCONFIRMED: Final[Status] = "unconfirmed"
# NARRATION HOOK: given the incident snapshot (as in GET /api/incidents/{id}) and the
# event, returns the text to send, or None for the template narration. It runs in a
# sender thread, never in the request path; it must bound its own time.
Narrator = Callable[[dict[str, Any], str], str | None]
# Told of every attempt: (sink, outcome), outcome one of OUTCOMES (Metrics.delivery).
OnOutcome = Callable[[str, str], None]
OUTCOMES = ("delivered", "retry", "dead", "minimal")
MAX_SCHEDULE = 100_000


def backoff(attempt: int, policy: DeliveryPolicy, rng: random.Random) -> float:
    """Full jitter: uniform(0, min(max_delay, base_delay * 2**(attempt-1)))."""
    ceiling = min(policy.max_delay, policy.base_delay * 2 ** max(0, min(attempt - 1, 60)))
    return rng.uniform(0, ceiling)


def next_attempt(
    policy: DeliveryPolicy,
    attempts: int,
    age: float,
    rng: random.Random,
    retry_after: float | None = None,
) -> float | None:
    """Seconds until the next attempt of a delivery `age` seconds old that failed its
    `attempts`-th attempt, or None when it is dead: at max_age (the last attempt is made
    at max_age exactly), or after max_attempts when that is set."""
    if age >= policy.max_age or (policy.max_attempts and attempts >= policy.max_attempts):
        return None
    delay = backoff(attempts, policy, rng)
    if retry_after is not None:
        delay = min(retry_after, policy.max_retry_after)
    return min(delay, policy.max_age - age)


def retry_schedule(
    policy: DeliveryPolicy, rng: random.Random, *, until: float | None = None
) -> list[float]:
    """When (seconds after creation) each attempt of a delivery that always fails is
    made under `policy`, up to `until` seconds (default: until it is dead); bounded at
    MAX_SCHEDULE attempts."""
    times, now, attempts = [0.0], 0.0, 1
    while len(times) < MAX_SCHEDULE:
        delay = next_attempt(policy, attempts, now, rng)
        if delay is None or (until is not None and now + delay > until):
            return times
        now += delay
        attempts += 1
        times.append(now)
    return times


class OutboxWorker:
    def __init__(
        self,
        store: Store,
        sinks: Mapping[str, Sink],
        policy: DeliveryPolicy,
        *,
        secrets: Mapping[str, Secret],
        redactor: Redactor,
        narrator: Narrator | None = None,
        clock: Callable[[], datetime] = utcnow,
        rng: random.Random | None = None,
        on_outcome: OnOutcome | None = None,
    ) -> None:
        self.store, self.sinks, self.policy = store, sinks, policy
        self.secrets, self.redactor, self.narrator = secrets, redactor, narrator
        self.on_outcome = on_outcome
        self.clock = clock
        self.rng = rng or random.Random()
        self.name = f"{socket.gethostname()}:{id(self):x}"
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._free = threading.Semaphore(policy.workers)
        self._pool: ThreadPoolExecutor | None = None
        self._thread: threading.Thread | None = None
        self._next_due = float("inf")  # monotonic time of the earliest retry scheduled here

    # --- lifecycle ----------------------------------------------------------
    def start(self) -> None:
        self._stop.clear()
        self._pool = ThreadPoolExecutor(self.policy.workers, thread_name_prefix="delivery")
        self._thread = threading.Thread(target=self._loop, name="delivery-dispatch", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        """Something was stored: look now rather than at the next poll."""
        self._wake.set()

    def stop(self, timeout: float = 30.0) -> None:
        """Stop claiming; wait (bounded by the sinks' timeouts) for sends in flight."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=False)
        self._thread = self._pool = None

    # --- the loop -----------------------------------------------------------
    def _loop(self) -> None:
        while not self._stop.is_set():
            self._wake.clear()
            try:
                claimed = self._dispatch()
            except Exception:
                log.exception("claiming deliveries failed; will retry")
                claimed = 0
            if not claimed:
                self._wake.wait(self._idle_time())

    def _idle_time(self) -> float:
        """Until the next poll, or the earliest retry this worker scheduled if sooner."""
        due, self._next_due = self._next_due, float("inf")
        until_due = max(0.0, due - time.monotonic())
        if until_due < self.policy.poll_interval:
            return until_due
        self._next_due = due  # still ahead: keep it for the next round
        return self.policy.poll_interval

    def _dispatch(self) -> int:
        free = 0
        while self._free.acquire(blocking=False):
            free += 1
        if not free:
            self._wait_for_slot()
            return 1
        claimed = self.store.claim_deliveries(
            now=self.clock(),
            limit=free,
            lease=timedelta(seconds=self.policy.lease),
            worker=self.name,
        )
        for _ in range(free - len(claimed)):
            self._free.release()
        assert self._pool is not None
        for delivery in claimed:
            self._pool.submit(self._run, delivery)
        return len(claimed)

    def _wait_for_slot(self) -> None:
        if self._free.acquire(timeout=self.policy.poll_interval):
            self._free.release()

    def _run(self, delivery: Delivery) -> None:
        try:
            self.process(delivery)
        finally:
            self._free.release()
            self._wake.set()  # the incident's next delivery may be due now

    # --- one delivery -------------------------------------------------------
    def fresh(self, delivery: Delivery) -> Delivery:
        """A trigger or update carries the incident as the store holds it at send time:
        findings added after it was planned (pull rules, engine.pull) are on the page."""
        if delivery.event not in ("trigger", "update") or "incident" not in delivery.payload:
            return delivery
        try:
            incident = self.store.get_incident(delivery.incident_id)
        except Exception:  # the planned snapshot is still a faithful page
            log.exception("could not refresh %s; sending it as planned", delivery.incident_id)
            return delivery
        if incident is None:
            return delivery
        return replace(
            delivery, payload={**delivery.payload, "incident": incident_to_dict(incident)}
        )

    def attempt(self, delivery: Delivery, *, minimal: bool = False) -> SendResult:
        """Send `delivery` once; `minimal`: the cut-down message (after a payload fault)."""
        sink = self.sinks.get(delivery.sink)
        if sink is None:
            return SendResult("fail", f"no sink named {delivery.sink!r} in the configuration")
        delivery = self.fresh(delivery)
        interrupted = delivery.attempts > 1 and delivery.last_error is None
        if not sink.idempotent and interrupted and not minimal:
            # Claimed before, never finished: the process stopped mid-send (the lease
            # expired). The message may have been posted; do not post it twice.
            return SendResult(UNCONFIRMED, "the previous attempt was interrupted mid-send")
        narration = None
        if self.narrator is not None and not minimal:
            try:
                narration = self.narrator(delivery.payload["incident"], delivery.event)
            except Exception:
                log.exception("narration failed for %s; using the template", delivery.incident_id)
        ctx = SendContext(self.secrets, self.redactor, narration, minimal=minimal)
        try:
            return sink.send(delivery, ctx)
        except Exception as exc:  # a bug or a secret that went missing: retry, bounded
            return SendResult("retry", self.redactor.scrub(f"{type(exc).__name__}: {exc}"))

    def count(self, sink: str, outcome: str) -> None:
        if self.on_outcome is not None:
            try:
                self.on_outcome(sink, outcome)
            except Exception:  # a metrics failure must not fail a delivery
                log.exception("could not count a delivery outcome")

    def process(self, delivery: Delivery) -> SendResult:
        """Send one claimed delivery and record the result."""
        where = f"{delivery.event} of {delivery.incident_id} to {delivery.sink}"
        started = time.monotonic()
        result = self.attempt(delivery)
        if result.payload_refused and self._lease_left(delivery, started):
            # The receiver refused what we sent (too large, invalid): what matters is
            # that the page arrives, so try once more with the least it needs.
            self.count(delivery.sink, "minimal")
            log.warning("%s refused (%s); retrying with a minimal message", where, result.error)
            first = result.error
            result = self.attempt(delivery, minimal=True)
            if result.status != "ok":
                both = f"minimal message: {result.error}; full message: {first}"
                result = replace(result, error=both)
        now = self.clock()
        error, retry_at = result.error, None
        if result.status == "ok":
            log.info("delivered %s (attempt %d)", where, delivery.attempts)
            self.count(delivery.sink, "delivered")
        elif result.status == UNCONFIRMED:
            error = f"{UNCONFIRMED}: {result.error}"
        elif result.status == "retry":
            age = max(0.0, (now - delivery.created_at).total_seconds())
            delay = next_attempt(self.policy, delivery.attempts, age, self.rng, result.retry_after)
            if delay is not None:
                retry_at = now + timedelta(seconds=delay)
                self._next_due = min(self._next_due, time.monotonic() + delay)
                self.count(delivery.sink, "retry")
                log.warning(
                    "%s failed (attempt %d), retry in %.1fs: %s",
                    where,
                    delivery.attempts,
                    delay,
                    result.error,
                )
        try:
            self.store.finish_delivery(
                delivery.id, ok=result.status == "ok", now=now, error=error, retry_at=retry_at
            )
        except Exception:  # the lease expires and the delivery is tried again
            log.exception("could not record the result of %s", where)
            return result
        if result.status != "ok" and retry_at is None:
            self.dead_letter(delivery, error)
        return result

    def _lease_left(self, delivery: Delivery, started: float) -> bool:
        """Whether a second send still ends within the claim's lease (else another worker
        could claim the delivery while it is being sent)."""
        sink = self.sinks.get(delivery.sink)
        timeout = float(getattr(getattr(sink, "spec", None), "timeout", 10.0))
        return time.monotonic() - started + timeout < self.policy.lease

    def dead_letter(self, delivery: Delivery, error: str | None) -> None:
        """A delivery given up: loud (ERROR, with the incident and the sink) and counted."""
        self.count(delivery.sink, "dead")
        log.error(
            "dead letter: %s of incident %s to sink %s gave up after %d attempt(s): %s",
            delivery.event,
            delivery.incident_id,
            delivery.sink,
            delivery.attempts,
            error,
            extra={
                "incident": delivery.incident_id,
                "sink": delivery.sink,
                "delivery": delivery.id,
                "event": delivery.event,
            },
        )
