"""Sink types by name: `REGISTRY[type](spec)` builds a sink from its configuration."""

from __future__ import annotations

from engine.delivery.sinks.base import REGISTRY, SendContext, SendResult, Sink
from engine.delivery.sinks.opsgenie import OpsgenieSink
from engine.delivery.sinks.pagerduty import PagerDutySink
from engine.delivery.sinks.slack import SlackSink
from engine.delivery.sinks.stdout import StdoutSink
from engine.delivery.sinks.webhook import WebhookSink

REGISTRY.update(
    {
        "stdout": StdoutSink,
        "slack": SlackSink,
        "pagerduty": PagerDutySink,
        "opsgenie": OpsgenieSink,
        "webhook": WebhookSink,
    }
)

__all__ = ["REGISTRY", "SendContext", "SendResult", "Sink"]
