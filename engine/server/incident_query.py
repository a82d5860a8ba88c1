"""The incident list's query parameters, read once for `GET /api/incidents` and the
incidents page: filters, the text search, and the opaque paging cursor."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from engine.model import Incident, Severity
from engine.server.body import ClientError
from engine.store.base import Store
from engine.store.codec import from_epoch
from engine.timeutil import TimeFormatError, parse_ts

MAX_LIST = 1000
MAX_TEXT = 256
STATUSES = ("open", "resolved")


@dataclass(frozen=True)
class IncidentQuery:
    limit: int = 50
    status: str | None = None
    service: str | None = None
    team: str | None = None
    since: datetime | None = None
    severities: tuple[Severity, ...] = field(default=())
    q: str | None = None
    before: tuple[datetime, str] | None = None

    def fetch(self, store: Store) -> list[Incident]:
        """The matching incidents, one more than `limit` (whether a next page exists)."""
        return store.list_incidents(
            limit=self.limit + 1,
            status=self.status,
            service=self.service,
            team=self.team,
            since=self.since,
            severities=self.severities,
            q=self.q,
            before=self.before,
        )


def encode_cursor(incident: Incident) -> str:
    """Where the next page starts: after this incident (its opened_at and id)."""
    raw = f"{incident.opened_at.timestamp()!r}|{incident.id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(text: str) -> tuple[datetime, str]:
    bad = ClientError(400, "cursor is not one this server gave (take next_cursor as is)", "cursor")
    if len(text) > 200:
        raise bad
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode()
        at, sep, incident_id = raw.partition("|")
        when = from_epoch(float(at))
    except (binascii.Error, UnicodeDecodeError, ValueError, OverflowError, OSError):
        raise bad from None
    if not sep or not incident_id:
        raise bad
    return when, incident_id


def _text(params: Mapping[str, str], name: str) -> str | None:
    value = params.get(name)
    if value is None or value == "":
        return None
    if len(value) > MAX_TEXT or "\x00" in value:
        raise ClientError(400, f"{name} must be at most {MAX_TEXT} characters, without NUL", name)
    return value


def parse_severities(text: str | None) -> tuple[Severity, ...]:
    if not text:
        return ()
    out = []
    for word in text.split(","):
        try:
            out.append(Severity.parse(word.strip()))
        except KeyError:
            names = ", ".join(s.word for s in Severity)
            raise ClientError(
                400, f"severity must be one or more of {names}, comma-separated", "severity"
            ) from None
    return tuple(dict.fromkeys(out))


def parse_incident_query(params: Mapping[str, str], default_limit: int = 50) -> IncidentQuery:
    """The query `params` describe; ClientError (400) naming the parameter that is wrong."""
    raw_limit = params.get("limit") or str(default_limit)
    try:
        limit = int(raw_limit)
    except ValueError:
        raise ClientError(400, "limit must be a whole number", "limit") from None
    if not 1 <= limit <= MAX_LIST:
        raise ClientError(400, f"limit must be between 1 and {MAX_LIST}", "limit")
    status = params.get("status") or None
    if status not in (None, *STATUSES):
        raise ClientError(400, 'status must be "open" or "resolved"', "status")
    since = None
    if params.get("since"):
        try:
            since = parse_ts(params["since"])
        except TimeFormatError as exc:
            raise ClientError(400, str(exc), "since") from None
    cursor = _text(params, "cursor")
    return IncidentQuery(
        limit=limit,
        status=status,
        service=_text(params, "service"),
        team=_text(params, "team"),
        since=since,
        severities=parse_severities(_text(params, "severity")),
        q=_text(params, "q"),
        before=decode_cursor(cursor) if cursor else None,
    )


def page_of(found: list[Incident], query: IncidentQuery) -> tuple[list[Incident], str | None]:
    """The page to show and the cursor of the next one (None on the last page)."""
    if len(found) > query.limit:
        page = found[: query.limit]
        return page, encode_cursor(page[-1])
    return found, None
