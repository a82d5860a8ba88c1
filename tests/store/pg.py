"""PostgreSQL test helpers: a scratch schema per test run, dropped at the end.

CI sets INCIDENT_PILOT_TEST_POSTGRES_DSN (e.g. postgresql://postgres@127.0.0.1:5432/test);
without it every PostgreSQL test skips and says so. Each run (each pytest process) works
in its own schema, ip_test_<pid>_<random>, so runs sharing one database never see each
other's data; `?schema=` in the store URL is how the store is pointed at it.
"""

from __future__ import annotations

import os
import secrets
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

import pytest

POSTGRES_DSN_ENV = "INCIDENT_PILOT_TEST_POSTGRES_DSN"
SKIP_REASON = f"set {POSTGRES_DSN_ENV} to a scratch PostgreSQL database to run this backend"


def base_dsn() -> str | None:
    return os.environ.get(POSTGRES_DSN_ENV) or None


def require_dsn() -> str:
    dsn = base_dsn()
    if dsn is None:
        pytest.skip(SKIP_REASON)
    return dsn


def new_schema_name(tag: str = "") -> str:
    return f"ip_test_{os.getpid()}_{tag}{secrets.token_hex(4)}"


def with_schema(dsn: str, schema: str) -> str:
    """`dsn` with ?schema=<schema> (replacing any schema it had)."""
    parts = urlsplit(dsn)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "schema"]
    query.append(("schema", schema))
    return urlunsplit(parts._replace(query=urlencode(query, quote_via=quote)))


def drop_schema(dsn: str, schema: str) -> None:
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


class SchemaRegistry:
    """Schemas made during the run; the session fixture drops them all at the end."""

    def __init__(self) -> None:
        self.made: list[str] = []
        self._run_schema: str | None = None

    def fresh(self, tag: str = "") -> str:
        """A new schema name (created by the first store opened on it)."""
        name = new_schema_name(tag)
        self.made.append(name)
        return name

    def run_schema(self) -> str:
        """The schema shared by this run's contract tests (each resets it first)."""
        if self._run_schema is None:
            self._run_schema = self.fresh("c")
        return self._run_schema

    def drop_all(self) -> None:
        dsn = base_dsn()
        if dsn is None:
            return
        for name in self.made:
            drop_schema(dsn, name)
        self.made.clear()
        self._run_schema = None


SCHEMAS = SchemaRegistry()
