"""Delivery as one object: the configuration, its sinks, the `plan` the store runs and the
outbox worker.

engine.server.state builds one `DeliveryService` for the app (after `load_delivery_config`
refused an invalid configuration), hands the store's transactions its `plan` and wakes
the worker whenever an alert was stored.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, TextIO

from engine.delivery.config import DeliveryConfig, format_problem, load_config
from engine.delivery.outbox import Narrator, OnOutcome, OutboxWorker
from engine.delivery.routing import Router, make_plan
from engine.delivery.secrets import MASK, Redactor
from engine.delivery.sinks import REGISTRY, Sink
from engine.delivery.sinks.stdout import StdoutSink
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
        stdout: TextIO | None = None,
        on_outcome: OnOutcome | None = None,
    ) -> None:
        """`stdout`: where `stdout` sinks print (default: sys.stdout, looked up per send).
        `on_outcome(sink, outcome)`: told of every attempt (Metrics.delivery)."""
        self.config = config
        self.store = store
        self.redactor = Redactor(config.secrets.values())
        self.sinks: dict[str, Sink] = dict(sinks or {})
        for name, spec in config.sinks.items():
            if name in self.sinks:
                continue
            if spec.type == "stdout" and "format" not in spec.options:
                spec.options["format"] = fmt
            if spec.type == "stdout":
                self.sinks[name] = StdoutSink(spec, stdout)
            else:
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
            on_outcome=on_outcome,
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


class DeliveryConfigError(Exception):
    """The delivery configuration is invalid: `problems` says where and why."""

    def __init__(self, path: str | None, problems: list[str]) -> None:
        super().__init__(f"{len(problems)} problem(s) in the configuration {path}")
        self.problems = problems


def load_delivery_config(path: str | None) -> DeliveryConfig:
    """The configuration in `path` (None: the built-in one); DeliveryConfigError when
    it is invalid."""
    config, problems = load_config(path)
    if config is None:
        raise DeliveryConfigError(path, [format_problem(p) for p in problems])
    return config
