"""The connection-storm bench runs end to end (a small storm; speed is not checked)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import storm

pytestmark = pytest.mark.e2e


def test_a_small_storm_is_stored_whole(tmp_path: Path) -> None:
    out = tmp_path / "storm.json"
    assert storm.main(["--connections", "150", "--seconds", "60", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["acknowledged"] == 150 and result["other_5xx"] == 0
    assert result["incidents_stored"]["total"] == 150
    assert set(result["statuses"]) <= {"200", "503"}
    assert result["server_log_500s"] == 0
