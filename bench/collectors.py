"""Request bodies as collectors send them: OTLP/HTTP span batches and Loki pushes.

Built from the same kind of data as the `/context/*` batches (bench/datagen.py), so the
bench compares the collector-facing adapters with the plain JSON path and with a raw
`executemany` of as many records, in one run. Every span is a SERVER span and every log
line WARN or worse: all of them pass the default volume filter and are stored, so the
ratio measures decoding and storing, not dropping.
"""

from __future__ import annotations

import json
import random
from typing import Any

import cramjam
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.trace.v1 import trace_pb2

from bench.datagen import SERVICES, service_name
from engine.adapters import loki_push_pb2

OTLP_BATCH = 512  # spans per request: the OpenTelemetry SDK's default max_export_batch_size
LOKI_BATCH = 1000  # lines per push
SERVICES_PER_REQUEST = 8  # resources (OTLP) / streams (Loki) per request
_LEVELS = ("warn", "error")
_LINES = (
    "upstream timeout calling payments request {n}",
    "retrying connection to db-primary after {ms} ms",
    "circuit breaker open for inventory ({n} failures)",
)


def _services(rng: random.Random) -> list[str]:
    return [service_name(rng.randrange(SERVICES)) for _ in range(SERVICES_PER_REQUEST)]


def otlp_trace_bodies(seed: int, requests: int, t0: float) -> list[bytes]:
    """`requests` ExportTraceServiceRequest bodies (binary protobuf) of OTLP_BATCH spans."""
    rng = random.Random(f"{seed}-otlp")
    bodies = []
    per_service = OTLP_BATCH // SERVICES_PER_REQUEST
    for _ in range(requests):
        request = trace_service_pb2.ExportTraceServiceRequest()
        for svc in _services(rng):
            resource_spans = request.resource_spans.add()
            resource_spans.resource.attributes.append(
                common_pb2.KeyValue(key="service.name", value=common_pb2.AnyValue(string_value=svc))
            )
            spans = resource_spans.scope_spans.add().spans
            for _ in range(per_service):
                start = int((t0 - rng.uniform(0, 300)) * 1e9)
                span = spans.add(
                    trace_id=rng.randbytes(16),
                    span_id=rng.randbytes(8),
                    name="GET /checkout",
                    kind=trace_pb2.Span.SPAN_KIND_SERVER,
                    start_time_unix_nano=start,
                    end_time_unix_nano=start + int(rng.lognormvariate(4.6, 0.8) * 1e6),
                )
                span.attributes.append(
                    common_pb2.KeyValue(
                        key="http.route", value=common_pb2.AnyValue(string_value="/checkout")
                    )
                )
        bodies.append(request.SerializeToString())
    return bodies


def loki_json_bodies(seed: int, requests: int, t0: float) -> list[bytes]:
    """`requests` Loki push bodies (JSON, as python-logging-loki and Vector send them) of
    LOKI_BATCH lines."""
    return [json.dumps(push).encode() for push in _loki_pushes(seed, requests, t0)]


def loki_protobuf_bodies(seed: int, requests: int, t0: float) -> list[bytes]:
    """The same pushes as loki_json_bodies, the way Promtail and Grafana Alloy send them:
    a `logproto.PushRequest` (labels as a Prometheus label string), snappy block format."""
    bodies = []
    for push in _loki_pushes(seed, requests, t0):
        request = loki_push_pb2.PushRequest()
        for stream in push["streams"]:
            labels = ", ".join(f'{k}="{v}"' for k, v in sorted(stream["stream"].items()))
            adapter = request.streams.add(labels="{" + labels + "}")
            for ns, line in stream["values"]:
                entry = adapter.entries.add(line=line)
                entry.timestamp.seconds, entry.timestamp.nanos = divmod(int(ns), 10**9)
        bodies.append(bytes(cramjam.snappy.compress_raw(request.SerializeToString())))
    return bodies


def _loki_pushes(seed: int, requests: int, t0: float) -> list[dict[str, Any]]:
    rng = random.Random(f"{seed}-loki")
    pushes = []
    per_stream = LOKI_BATCH // SERVICES_PER_REQUEST
    for _ in range(requests):
        streams = []
        for svc in _services(rng):
            level = rng.choice(_LEVELS)
            values = []
            for i in range(per_stream):
                ns = int((t0 - rng.uniform(0, 300)) * 1e9)
                line = _LINES[i % len(_LINES)].format(n=i, ms=i % 900)
                values.append([str(ns), line])
            streams.append({"stream": {"service_name": svc, "level": level}, "values": values})
        pushes.append({"streams": streams})
    return pushes
