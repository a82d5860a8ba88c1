"""Routing: which sinks hear of an incident change, decided inside the store transaction.

The incident's team (the `routing.team` finding, stored as `incident.team`) picks its
route, else the `default` route. Each entry may require a minimum severity. `plan()`
runs while the store holds its write lock: it only computes, it does no I/O.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from engine.delivery.config import DEFAULT_ROUTE, DeliveryConfig, RouteEntry
from engine.links import incident_url
from engine.model import Incident, Severity
from engine.serialize import incident_to_dict
from engine.store.base import AlertOutcome, NewDelivery, PlanDeliveries

# Which delivery event an outcome makes, when the store says sinks should hear of it
# (`notify`): an alert attached to an open incident within the re-notify interval, an
# exact repeat, or an ignored resolution makes none.
EVENTS = {"opened": "trigger", "attached": "update", "resolved": "resolve"}
# The order deliveries caused by one change are stored in (each sink is its own queue, so
# this only decides which is sent first when workers are scarce): pagers before chat.
_PRIORITY = {"stdout": 0, "pagerduty": 1, "opsgenie": 1, "webhook": 2, "slack": 3}


class Router:
    def __init__(self, config: DeliveryConfig, *, quiet: bool = False) -> None:
        self.config = config
        self.quiet = quiet

    def route_name(self, team: str | None) -> str:
        return team if team is not None and team in self.config.routes else DEFAULT_ROUTE

    def entries(self, team: str | None, severity: Severity) -> list[RouteEntry]:
        """The route entries an incident of `team` and `severity` goes to, in send order."""
        chosen = [
            e
            for e in self.config.routes[self.route_name(team)]
            if severity >= e.min_severity
            and not (self.quiet and self.config.sinks[e.sink].type == "stdout")
        ]
        return sorted(chosen, key=lambda e: _PRIORITY.get(self.config.sinks[e.sink].type, 2))


def incident_link(public_url: str, incident_id: str) -> str:
    """The link every message carries: the incident's page under the public URL."""
    return incident_url(public_url, incident_id)


def make_plan(
    router: Router,
    supports_resolve: Mapping[str, bool],
    public_url: str,
    snapshot: Callable[[Incident], dict[str, Any]] = incident_to_dict,
) -> PlanDeliveries:
    """The `plan` the store calls inside its transaction (see engine.store.base).

    A resolution goes to the sinks of the same route that support one: routing depends
    only on the incident's team and severity, which do not change while it is open, so
    these are the sinks its trigger went to (unless the configuration changed between)."""

    def plan(outcome: AlertOutcome) -> list[NewDelivery]:
        incident = outcome.incident
        event = EVENTS.get(outcome.kind)
        if incident is None or event is None:
            return []
        # stdout is the local record of every new or changed incident, not a page: it
        # hears of an attached alert even inside the re-notify interval.
        local_only = not outcome.notify
        if local_only and outcome.kind != "attached":
            return []
        payload_base = {
            "incident": snapshot(incident),
            "link": incident_link(public_url, incident.id) if public_url else "",
        }
        out = []
        for entry in router.entries(incident.team, incident.severity):
            if local_only and router.config.sinks[entry.sink].type != "stdout":
                continue
            if event == "resolve" and not supports_resolve.get(entry.sink, False):
                continue
            payload = {**payload_base, "event": event, "options": dict(entry.options)}
            out.append(NewDelivery(sink=entry.sink, event=event, payload=payload))
        return out

    return plan
