"""PostgreSQL store URLs: our own query parameters, libpq's conninfo, and redaction.

Any libpq URL works (`postgresql://user:pass@host:5432/db?sslmode=require`, or
`postgres://...`). Two extra query parameters are read and removed before connecting:

- `schema=NAME`: keep the tables in schema NAME (created if missing) instead of the
  database's default (`public`); it becomes the connections' search_path. Tests give
  each run its own schema this way. `options=-csearch_path=NAME` works too, but then the
  schema must already exist.
- `pool_size=N`: connections per process (default: env INCIDENT_PILOT_DB_POOL_SIZE,
  else 10).
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

from psycopg.conninfo import conninfo_to_dict, make_conninfo

CONNECT_TIMEOUT = 10  # seconds, when the URL does not say
_SCHEMA = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")


def parse_url(url: str) -> tuple[str, str | None, int | None]:
    """(libpq conninfo, schema or None, pool size or None) from a store URL.

    `schema` and `pool_size` are our own query parameters: removed before libpq sees the
    URL. The schema becomes the connections' search_path (through `options`, kept with
    any options the URL already has).
    """
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("postgresql", "postgres"):
        raise ValueError(f"not a PostgreSQL URL: {url!r}")
    query = parse_qsl(parts.query, keep_blank_values=True)
    schema = pool_size = None
    kept = []
    for name, value in query:
        if name == "schema":
            if not _SCHEMA.match(value):
                raise ValueError(
                    f"schema={value!r}: use letters, digits and '_' (not starting with a "
                    "digit), at most 63 characters"
                )
            schema = value
        elif name == "pool_size":
            pool_size = pool_size_from(value, "pool_size in the store URL")
        else:
            kept.append((name, value))
    conninfo = urlunsplit(
        ("postgresql", parts.netloc, parts.path, urlencode(kept, quote_via=quote), parts.fragment)
    )
    params = conninfo_to_dict(conninfo)  # libpq's own parser: rejects what libpq would
    extra: dict[str, Any] = {}
    if schema is not None:
        options = params.get("options") or ""
        extra["options"] = f"{options} -c search_path={schema}".strip()
    if "connect_timeout" not in params:
        extra["connect_timeout"] = CONNECT_TIMEOUT
    if "application_name" not in params:
        extra["application_name"] = "incident-pilot"
    return make_conninfo(conninfo, **extra), schema, pool_size


def pool_size_from(text: str, where: str) -> int:
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise ValueError(f"{where} must be a whole number >= 1, got {text!r}")
    return n


def redact(url: str) -> str:
    """The URL without its password, for messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))
