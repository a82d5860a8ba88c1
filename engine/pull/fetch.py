"""Ask Prometheus or Loki one query (httpx, the caller's timeout) and turn the answer
into rule records, and the bounded excerpt stored as the pull's evidence."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

import httpx

from engine.timeutil import format_ts, from_epoch

MAX_RECORDS = 500  # series or log lines kept (and evaluated) per answer
MAX_POINTS_KEPT = 100  # of each range series, the newest; its stats use every point
MAX_POINTS = 11_000  # Prometheus refuses more points per series
LOKI_LIMIT = 500
_LEVEL_LABELS = ("level", "detected_level", "severity", "lvl")
_SERVICE_LABELS = ("service", "service_name", "app", "job")


_UNSTORED = ("_epoch", "age", "id", "path")


class PullError(Exception):
    """The source refused the query, failed, or answered something unreadable."""


@dataclass(frozen=True)
class Request:
    source: str  # "prometheus" | "loki"
    base: str  # the configured base URL
    query: str
    start: datetime
    end: datetime
    step: float | None  # seconds; None: an instant query (prometheus)

    @property
    def key(self) -> tuple[str, str, float, float, float | None]:
        return (self.source, self.query, self.start.timestamp(), self.end.timestamp(), self.step)

    def endpoint(self) -> tuple[str, dict[str, str]]:
        start, end = self.start.timestamp(), self.end.timestamp()
        if self.source == "loki":
            params = {
                "query": self.query,
                "start": str(int(start * 1e9)),
                "end": str(int(end * 1e9)),
                "limit": str(LOKI_LIMIT),
                "direction": "backward",
            }
            return f"{self.base}/loki/api/v1/query_range", params
        if self.step is None:
            return f"{self.base}/api/v1/query", {"query": self.query, "time": _num(end)}
        step = max(self.step, (end - start) / MAX_POINTS)
        params = {"query": self.query, "start": _num(start), "end": _num(end), "step": _num(step)}
        return f"{self.base}/api/v1/query_range", params

    def link(self) -> str | None:
        """The query in Prometheus's graph page (Loki has no UI of its own)."""
        if self.source != "prometheus":
            return None
        params = {"g0.expr": self.query, "g0.tab": "1" if self.step is None else "0"}
        params["g0.end_input"] = self.end.strftime("%Y-%m-%d %H:%M:%S")
        if self.step is not None:
            params["g0.range_input"] = (
                f"{max(1, round(self.end.timestamp() - self.start.timestamp()))}s"
            )
        return f"{self.base}/graph?{urlencode(params)}"


def _num(x: float) -> str:
    return f"{x:.3f}".rstrip("0").rstrip(".")


def _float(raw: Any) -> float | None:
    """A sample value ("1.5", "NaN", "+Inf") as a finite float, else None."""
    try:
        x = float(raw)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


async def ask(
    client: httpx.AsyncClient, req: Request, headers: dict[str, str], timeout: float
) -> dict[str, Any]:
    """The answer's `data` (resultType, result). Raises PullError; httpx.TimeoutException
    when the source did not answer within `timeout` seconds."""
    url, params = req.endpoint()
    response = await client.get(url, params=params, headers=headers, timeout=httpx.Timeout(timeout))
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise PullError(f"HTTP {response.status_code} from {url}: {response.text[:200]!r}")
    if response.status_code != 200 or body.get("status") != "success":
        reason = body.get("error") or body.get("message") or response.text[:200]
        kind = body.get("errorType")
        raise PullError(
            f"HTTP {response.status_code} from {url}: {f'{kind}: ' if kind else ''}{reason}"
        )
    data = body.get("data")
    if not isinstance(data, dict) or "resultType" not in data:
        raise PullError(f"answer from {url} has no data.resultType")
    return data


def records(source: str, data: dict[str, Any]) -> tuple[list[dict[str, Any]], int]:
    """(the records, at most MAX_RECORDS; the total the answer held). Each keeps `_epoch`
    (its sample or line time); `name` gives them their ids and paths."""
    kind, result = data.get("resultType"), data.get("result")
    if source == "loki":
        if kind != "streams":
            raise PullError(f"a loki rule reads log lines (resultType streams), got {kind!r}")
        out = _log_lines(result or [])
    elif kind == "vector":
        out = [_sample(r.get("metric") or {}, r.get("value") or [0, None]) for r in result or []]
    elif kind == "matrix":
        out = [_series(r.get("metric") or {}, r.get("values") or []) for r in result or []]
    elif kind in ("scalar", "string"):
        out = [_sample({}, result or [0, None])]
    else:
        raise PullError(f"unknown resultType {kind!r}")
    return out[:MAX_RECORDS], len(out)


def name(recs: list[dict[str, Any]], pull_id: str) -> list[dict[str, Any]]:
    """Record n of pull <id> is `pulls/<id>/<n>` (GET /api/pulls/<id>/<n>)."""
    return [
        {**rec, "id": f"{pull_id}/{n}", "path": f"pulls/{pull_id}/{n}"}
        for n, rec in enumerate(recs)
    ]


def _service(labels: dict[str, Any]) -> str:
    return next((str(labels[k]) for k in _SERVICE_LABELS if labels.get(k)), "")


def _sample(labels: dict[str, Any], point: list[Any]) -> dict[str, Any]:
    t = float(point[0])
    return {
        "labels": dict(labels),
        "service": _service(labels),
        "value": _float(point[1]),
        "ts": format_ts(from_epoch(t)),
        "_epoch": t,
    }


def _series(labels: dict[str, Any], values: list[list[Any]]) -> dict[str, Any]:
    points: list[tuple[float, float | None]] = [(float(t), _float(v)) for t, v in values]
    finite = [v for _, v in points if v is not None]
    t = points[-1][0] if points else 0.0
    return {
        "labels": dict(labels),
        "service": _service(labels),
        "values": [list(p) for p in points[-MAX_POINTS_KEPT:]],
        "last": points[-1][1] if points else None,
        "max": max(finite, default=None),
        "min": min(finite, default=None),
        "avg": sum(finite) / len(finite) if finite else None,
        "ts": format_ts(from_epoch(t)),
        "_epoch": t,
    }


def _log_lines(streams: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for stream in streams:
        labels = stream.get("stream") or {}
        level = next((str(labels[k]) for k in _LEVEL_LABELS if labels.get(k)), "")
        for ns, line in stream.get("values") or []:
            t = int(ns) / 1e9
            out.append(
                {
                    "labels": dict(labels),
                    "service": _service(labels),
                    "level": level.upper(),
                    "message": str(line),
                    "ts": format_ts(from_epoch(t)),
                    "_epoch": t,
                }
            )
    out.sort(key=lambda r: -float(r["_epoch"]))  # newest first, as the logs source
    return out


def excerpt(kind: str, recs: list[dict[str, Any]], total: int) -> dict[str, Any]:
    """What the pull stores as its answer: the records as the rules saw them (their ids
    and paths follow from their position, see `name`)."""
    return {
        "resultType": kind,
        "total": total,
        "truncated": total > len(recs),
        "records": [{k: v for k, v in r.items() if k not in _UNSTORED} for r in recs],
    }
