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

from engine.paths import rules_dir
from engine.rulefiles import load_rules
from engine.rules.ruleset import RuleSet
from engine.server.settings import ServeSettings
from engine.server.state import AppState
from engine.testing import AppClient, open_app

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
    """make_app(report="text"|"json", **ServeSettings fields) -> (state, client).

    The app `serve` runs (engine.testing.open_app: the same wiring, the outbox worker
    running), in this process, on a SQLite file under tmp_path, with the shipped rules.
    `report` is the stdout format; what the stdout sink prints is
    `engine.testing.printed(state)`."""
    made: list[tuple[AppState, AppClient]] = []

    def make(
        report: str = "text", ruleset: RuleSet | None = None, **settings: Any
    ) -> tuple[AppState, AppClient]:
        settings.setdefault("db", str(tmp_path / f"app{len(made)}.db"))
        settings.setdefault("rules", (rules_dir(),))
        state, app = open_app(
            ServeSettings(format=report, **settings),
            ruleset=ruleset or shipped_rules,
            stdout=io.StringIO(),
        )
        client = AppClient(app)
        made.append((state, client))
        return state, client

    try:
        yield make
    finally:
        for state, client in made:
            client.close()
            state.close()


@pytest.fixture
def api(make_app: Callable[..., tuple[AppState, AppClient]]) -> AppClient:
    """A client for a fresh in-process app with the shipped rules."""
    return make_app()[1]
