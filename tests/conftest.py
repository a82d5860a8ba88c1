"""Shared fixtures: the shipped rules, Alertmanager fixture bodies, and an in-process app.

Keep this small and generic; server-process helpers live in engine/testing.py.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from engine.narrate import StdoutReporter
from engine.paths import rules_dir
from engine.rulefiles import load_rules
from engine.rules.ruleset import RuleSet
from engine.server.app import AppState, create_app
from engine.server.settings import ServeSettings
from engine.store import open_store
from engine.testing import AppClient

FIXTURES = Path(__file__).resolve().parent / "fixtures"


@pytest.fixture(scope="session")
def shipped_rules() -> RuleSet:
    ruleset = load_rules([rules_dir()])
    assert ruleset is not None, "the shipped rules do not load"
    return ruleset


@pytest.fixture(scope="session")
def am_fixture() -> Callable[[str], dict[str, Any]]:
    """A body captured from a real Alertmanager, by file stem: am_fixture("firing")."""

    def load(name: str) -> dict[str, Any]:
        return json.loads((FIXTURES / "alertmanager" / f"{name}.json").read_text("utf-8"))

    return load


@pytest.fixture
def make_app(
    shipped_rules: RuleSet, tmp_path: Path
) -> Iterator[Callable[..., tuple[AppState, AppClient]]]:
    """make_app(**ServeSettings fields, report="text"|"json"|None) -> (state, client).

    The app runs in this process on a SQLite file under tmp_path; with `report`, incidents
    are printed to `state.reporter.stream` (an io.StringIO)."""
    made: list[tuple[AppState, AppClient]] = []

    def make(report: str | None = None, **settings: Any) -> tuple[AppState, AppClient]:
        settings.setdefault("db", str(tmp_path / f"app{len(made)}.db"))
        serve = ServeSettings(**settings)
        reporter = StdoutReporter(report, io.StringIO()) if report else None
        state = AppState(
            settings=serve, store=open_store(serve.db), ruleset=shipped_rules, reporter=reporter
        )
        client = AppClient(create_app(state))
        made.append((state, client))
        return state, client

    try:
        yield make
    finally:
        for state, client in made:
            client.close()
            state.store.close()


@pytest.fixture
def api(make_app: Callable[..., tuple[AppState, AppClient]]) -> AppClient:
    """A client for a fresh in-process app with the shipped rules."""
    return make_app()[1]
