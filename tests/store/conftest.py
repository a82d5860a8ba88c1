"""The `store` fixture: every contract test runs once per backend.

Add a backend by adding an entry to BACKENDS: a factory that gets pytest's `tmp_path`
and returns an empty, migrated store (or calls pytest.skip with the reason).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from engine.store import Store, open_store

from . import pg

POSTGRES_DSN_ENV = pg.POSTGRES_DSN_ENV


def _sqlite_file(tmp_path: Path) -> Store:
    return open_store(str(tmp_path / "store" / "incident-pilot.db"))


def _sqlite_memory(tmp_path: Path) -> Store:
    return open_store(":memory:")


def _postgres(tmp_path: Path) -> Store:
    # Every contract test runs in this run's scratch schema (tests/store/pg.py), emptied
    # by reset_for_tests(); the session fixture below drops the schema at the end.
    dsn = os.environ.get(POSTGRES_DSN_ENV)
    if not dsn:
        pytest.skip(pg.SKIP_REASON)
    store = open_store(pg.with_schema(dsn, pg.SCHEMAS.run_schema()))
    store.reset_for_tests()  # type: ignore[attr-defined]  # SQLStore's, not the protocol's
    return store


BACKENDS: dict[str, Callable[[Path], Store]] = {
    "sqlite-file": _sqlite_file,
    "sqlite-memory": _sqlite_memory,
    "postgres": _postgres,
}


def _marks(name: str) -> list[pytest.MarkDecorator]:
    if name != "postgres":
        return []
    # Decided at collection (a skip mark, not only pytest.skip in the factory) so pytest
    # folds the skips into one line of the summary.
    if not os.environ.get(POSTGRES_DSN_ENV):
        return [pytest.mark.postgres, pytest.mark.skip(reason=pg.SKIP_REASON)]
    return [pytest.mark.postgres]


@pytest.fixture(params=[pytest.param(name, marks=_marks(name)) for name in BACKENDS])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    s = BACKENDS[request.param](tmp_path)
    try:
        yield s
    finally:
        s.close()


@pytest.fixture
def backend(request: pytest.FixtureRequest) -> str:
    """The name of the backend the current `store` runs on."""
    return request.node.callspec.params["store"]


@pytest.fixture(scope="session", autouse=True)
def _drop_postgres_schemas() -> Iterator[None]:
    """Drop every scratch schema this run made (tests/store/pg.py), even after failures."""
    yield
    pg.SCHEMAS.drop_all()
