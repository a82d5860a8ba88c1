"""An in-process app with the shipped rules plus the example pull rules."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from engine.paths import rules_dir
from engine.pull.config import PullSettings
from engine.rulefiles import load_rules
from engine.rules.ruleset import RuleSet
from engine.server.state import AppState
from engine.testing import AppClient

PULL_RULES = Path(__file__).resolve().parents[2] / "examples" / "pull-rules"


@pytest.fixture(scope="session")
def pull_rules() -> RuleSet:
    ruleset = load_rules([rules_dir(), PULL_RULES])
    assert ruleset is not None
    return ruleset


@pytest.fixture
def pull_app(
    make_app: Callable[..., tuple[AppState, AppClient]], pull_rules: RuleSet
) -> Callable[..., tuple[AppState, AppClient]]:
    """pull_app(prometheus_url=..., loki_url=..., budget=timedelta) -> (state, client):
    the shared make_app, with the pull rules loaded and these pull settings."""

    def make(**pull: Any) -> tuple[AppState, AppClient]:
        return make_app(
            report="json",
            ruleset=pull_rules,
            rules=(rules_dir(), PULL_RULES),
            pull=PullSettings(**pull),
        )

    return make
