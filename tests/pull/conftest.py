"""An in-process app with the shipped rules plus the example pull rules."""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from engine.paths import rules_dir
from engine.pull.config import PullSettings
from engine.rulefiles import load_rules
from engine.server.settings import ServeSettings
from engine.server.state import AppState
from engine.testing import AppClient, open_app

PULL_RULES = Path(__file__).resolve().parents[2] / "examples" / "pull-rules"


@pytest.fixture
def pull_app(tmp_path: Path) -> Iterator[Callable[..., tuple[AppState, AppClient]]]:
    """pull_app(prometheus_url=..., loki_url=..., budget=timedelta) -> (state, client)."""
    made: list[tuple[AppState, AppClient]] = []
    ruleset = load_rules([rules_dir(), PULL_RULES])
    assert ruleset is not None

    def make(**pull: Any) -> tuple[AppState, AppClient]:
        settings = ServeSettings(
            db=str(tmp_path / f"pull{len(made)}.db"),
            rules=(rules_dir(), PULL_RULES),
            format="json",
            pull=PullSettings(**pull),
        )
        state, app = open_app(settings, ruleset=ruleset, stdout=io.StringIO())
        client = AppClient(app)
        made.append((state, client))
        return state, client

    try:
        yield make
    finally:
        for state, client in made:
            client.close()
            state.close()
