"""Ingest adapters: each translates one producer's protocol into context records.

Rules never know where a record came from: an adapter only maps a protocol's body (OTLP,
the Loki push API, a deploy webhook) to `NewContext` values, and the volume filter
(volume.py) decides which of them are worth storing.
"""
