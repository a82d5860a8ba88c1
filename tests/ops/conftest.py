"""Fixtures for the operability tests: an in-process app (TestClient) and a real server
subprocess on a loopback port, always stopped."""

from __future__ import annotations

import shutil
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

with warnings.catch_warnings():  # Starlette 1.x would rather have httpx2; httpx works
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from engine.paths import rules_dir  # noqa: E402
from engine.server.settings import ServeSettings  # noqa: E402
from engine.testing import ServerProcess, open_app  # noqa: E402
from tests.ops.helpers import TOKENS_ENV, ops_server  # noqa: E402


@pytest.fixture
def rules_copy(tmp_path: Path) -> Path:
    target = tmp_path / "rules"
    shutil.copytree(rules_dir(), target)
    return target


class App:
    def __init__(self, tmp_path: Path, rules: Path | None, **settings: Any) -> None:
        rules = rules or rules_dir()
        self.settings = ServeSettings(
            rules=(rules,), db=str(tmp_path / "app.db"), quiet=True, **settings
        )
        self.state, self.app = open_app(self.settings)  # the wiring `serve` uses
        self.client = TestClient(self.app, raise_server_exceptions=False)


@pytest.fixture
def make_app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """make_app(rules=None, tokens=True, **ServeSettings) -> App"""
    made: list[App] = []

    def factory(rules: Path | None = None, tokens: bool = True, **settings: Any) -> App:
        if tokens:
            monkeypatch.setenv("INCIDENT_PILOT_TOKENS", TOKENS_ENV)
        else:
            monkeypatch.delenv("INCIDENT_PILOT_TOKENS", raising=False)
        sub = tmp_path / f"app{len(made)}"
        sub.mkdir()
        app = App(sub, rules, **settings)
        made.append(app)
        return app

    yield factory
    for app in made:
        app.client.close()
        app.state.close()


@pytest.fixture
def server_factory(tmp_path: Path) -> Iterator[Any]:
    started: list[ServerProcess] = []

    def factory(*args: str, **kw: Any) -> ServerProcess:
        server = ops_server(tmp_path / f"server{len(started)}", *args, **kw)
        started.append(server)
        return server.start()

    yield factory
    for server in started:
        server.close()


@pytest.fixture(scope="module")
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One shared server per test module (tokens on, shipped rules)."""
    with ops_server(tmp_path_factory.mktemp("live")) as server:
        yield server
