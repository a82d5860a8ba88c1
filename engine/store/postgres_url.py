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

import contextlib
import re
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit, urlunsplit

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


# Every libpq parameter whose value is a secret. libpq reads them from a URL's userinfo, from
# its query (`?password=`, keys and values percent-decoded) and from a key=value conninfo
# string (`password='a b'`, spaces allowed around `=`).
SECRET_KEYS = ("password", "sslpassword")
_KEY = r"(?:ssl)?password"
_QUERY_SECRET = re.compile(r"([?&](?:[^=&#]*?))=([^&#]*)")
_CONNINFO_SECRET = re.compile(
    rf"(?<![\w%])({_KEY})(\s*=\s*)('(?:[^'\\]|\\.)*'?|[^\s'&]+)", re.IGNORECASE
)
_SCHEME = re.compile(r"^[a-z][a-z0-9+.-]*://", re.IGNORECASE)


def _is_secret_key(raw: str) -> bool:
    return unquote(raw.lstrip("?&")).strip().lower() in SECRET_KEYS


def _userinfo_password(url: str, scheme_end: int) -> tuple[int, int] | None:
    """Where the userinfo password is, as libpq reads it: the authority ends at the first
    "/", the userinfo at the last "@" before it (so a password with an unencoded "@" or
    "?" is found whole), the user at the first ":"."""
    end = url.find("/", scheme_end)
    end = len(url) if end < 0 else end
    at = url.rfind("@", scheme_end, end)
    colon = url.find(":", scheme_end, at) if at >= 0 else -1
    return (colon + 1, at) if colon >= 0 else None


def redact(url: str) -> str:
    """A PostgreSQL URL or conninfo string without its secrets, for messages: the userinfo
    password (`postgresql://u:***@h/db`), `?password=` and `?sslpassword=` (however the key
    is percent-encoded), and `password=` / `sslpassword=` key/value pairs (quoted or not)."""
    text = url
    scheme = _SCHEME.match(text)
    if scheme:
        span = _userinfo_password(text, scheme.end())
        if span:
            text = f"{text[: span[0]]}***{text[span[1] :]}"
        text = _QUERY_SECRET.sub(
            lambda m: f"{m.group(1)}=***" if _is_secret_key(m.group(1)) else m.group(0), text
        )
    return _CONNINFO_SECRET.sub(lambda m: f"{m.group(1)}{m.group(2)}***", text)


def passwords(url: str) -> list[str]:
    """The secrets a store URL or conninfo string holds, as libpq reads them (for the log
    scrubber: a driver's error message may quote one)."""
    found: list[str] = []
    scheme = _SCHEME.match(url)
    if scheme:
        span = _userinfo_password(url, scheme.end())
        rest = url[scheme.end() :]
        if span:
            raw, rest = url[span[0] : span[1]], url[span[1] :]
            found += [raw, unquote(raw)]
        query = rest.partition("?")[2].partition("#")[0]
        found += [v for k, v in parse_qsl(query) if k.strip().lower() in SECRET_KEYS]
    else:
        # Not a conninfo libpq reads: nothing it would send.
        with contextlib.suppress(Exception):
            found += [str(v) for k, v in conninfo_to_dict(url).items() if k in SECRET_KEYS and v]
    return list(dict.fromkeys(p for p in found if p))
