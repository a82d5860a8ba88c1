"""Delivery: incidents to the right people, once (see docs/OPERATIONS.md).

- `config`: the `--config` file, validated by schemas/config.schema.json; `secrets`: values
  from the environment or files, never from the config, never printed.
- `routing`: the `plan` the store runs inside its transaction (team route, min_severity).
- `outbox`: the background worker (claim, send, retry with backoff and jitter, dead letters).
- `sinks`: stdout, Slack, PagerDuty, Opsgenie, signed webhook (`sinks.REGISTRY`).
- `service` wires them into `serve`; `api` adds GET /api/config and /api/deliveries.
"""
