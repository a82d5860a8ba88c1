"""Wiring: the configuration, its sinks, the `plan` the store runs and the outbox worker.

`setup_delivery(state)` is what `serve` calls: it loads the configuration (refusing an
invalid one), hands the store's transactions the `plan`, wakes the worker when an alert
was stored, and replaces the synchronous stdout printer by the `stdout` sink.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Mapping
from typing import Any

from engine.delivery.config import DeliveryConfig, format_problem, load_config
from engine.delivery.outbox import Narrator, OutboxWorker
from engine.delivery.routing import Router, make_plan
from engine.delivery.secrets import MASK, Redactor
from engine.delivery.sinks import REGISTRY, Sink
from engine.store.base import PlanDeliveries, Store

log = logging.getLogger("incident_pilot.delivery")
# httpx logs every request URL at INFO: a Slack webhook URL is a secret.
logging.getLogger("httpx").setLevel(logging.WARNING)
logging.getLogger("httpcore").setLevel(logging.WARNING)


class DeliveryService:
    def __init__(
        self,
        config: DeliveryConfig,
        store: Store,
        *,
        public_url: str = "",
        fmt: str = "text",
        quiet: bool = False,
        narrator: Narrator | None = None,
        sinks: Mapping[str, Sink] | None = None,
    ) -> None:
        self.config = config
        self.store = store
        self.redactor = Redactor(config.secrets.values())
        self.sinks: dict[str, Sink] = dict(sinks or {})
        for name, spec in config.sinks.items():
            if name in self.sinks:
                continue
            if spec.type == "stdout" and "format" not in spec.options:
                spec.options["format"] = fmt
            self.sinks[name] = REGISTRY[spec.type](spec)
        self.router = Router(config, quiet=quiet)
        self.plan: PlanDeliveries = make_plan(
            self.router, {n: s.supports_resolve for n, s in self.sinks.items()}, public_url
        )
        self.worker = OutboxWorker(
            store,
            self.sinks,
            config.policy,
            secrets=config.secrets,
            redactor=self.redactor,
            narrator=narrator,
        )

    def start(self) -> None:
        self.worker.start()
        self.worker.wake()  # deliveries left from a previous run

    def stop(self) -> None:
        self.worker.stop()

    def wake(self, *_: Any) -> None:
        self.worker.wake()

    def effective_config(self) -> dict[str, Any]:
        """The configuration in use, secrets masked: for GET /api/config."""
        sinks: dict[str, Any] = {}
        for name, spec in self.config.sinks.items():
            shown: dict[str, Any] = {"type": spec.type, **spec.options}
            for field, ref in spec.secrets.items():
                shown[field] = MASK
                shown[f"{field}_from"] = ref
            sinks[name] = shown
        routes: dict[str, Any] = {}
        for team, entries in self.config.routes.items():
            routes[team] = []
            for e in entries:
                shown = {"sink": e.sink, "min_severity": e.min_severity.word}
                for key, value in e.options.items():
                    if key == "routing_key_ref":
                        shown["routing_key"], shown["routing_key_from"] = MASK, value
                    else:
                        shown[key] = value
                routes[team].append(shown)
        return {
            "source": self.config.source,
            "delivery": vars(self.config.policy),
            "sinks": sinks,
            "routes": routes,
            "quiet": self.router.quiet,
        }


def setup_delivery(state: Any, narrator: Narrator | None = None) -> bool:
    """Attach delivery to a server's AppState; False (after printing why) when the
    configuration is invalid."""
    settings = state.settings
    path = getattr(settings, "config", "") or None
    config, problems = load_config(path)
    if config is None:
        for p in problems:
            sys.stderr.write(format_problem(p) + "\n")
        sys.stderr.write(
            f"incident-pilot: refusing to start: {len(problems)} problem(s) in the "
            f"configuration {path}\n"
        )
        return False
    service = DeliveryService(
        config,
        state.store,
        public_url=settings.public_url,
        fmt=settings.format,
        quiet=settings.quiet,
        narrator=narrator,
    )
    state.pipeline.plan = service.plan
    state.reporter = None  # stdout is a sink now, delivered through the outbox
    state.listeners.append(service.wake)
    state.delivery = service
    return True


def service_of(state: Any) -> DeliveryService | None:
    return getattr(state, "delivery", None)


def start_delivery(state: Any) -> None:
    service = service_of(state)
    if service is not None:
        service.start()


def stop_delivery(state: Any) -> None:
    service = service_of(state)
    if service is not None:
        service.stop()
