"""The volume filter of the collector-facing adapters, and its serve options."""

from __future__ import annotations

import argparse

import pytest

from engine.adapters.volume import (
    VolumeFilter,
    add_volume_arguments,
    normalise_level,
    volume_from_args,
)


@pytest.mark.parametrize(
    ("word", "level"),
    [("warning", "WARN"), ("Err", "ERROR"), ("critical", "FATAL"), ("info", "INFO"), ("x", None)],
)
def test_level_words_are_normalised(word: str, level: str | None) -> None:
    assert normalise_level(word) == level


def test_logs_below_the_minimum_are_dropped_unknown_levels_kept() -> None:
    default = VolumeFilter()
    assert [default.keep_log(w) for w in ("debug", "INFO", "warn", "error", "FATAL")] == [
        False,
        False,
        True,
        True,
        True,
    ]
    assert default.keep_log("weird-level")  # cannot rank it: keep it
    assert VolumeFilter(min_log_level="ERROR").keep_log("warning") is False


def test_short_spans_are_dropped_unless_they_failed() -> None:
    f = VolumeFilter(min_span_ms=250)
    assert f.keep_span(300, error=False)
    assert not f.keep_span(10, error=False)
    assert f.keep_span(10, error=True)
    assert VolumeFilter().keep_span(0.01, error=False)  # default: every span


def _parse(argv: list[str], monkeypatch: pytest.MonkeyPatch, **env: str) -> VolumeFilter:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    p = argparse.ArgumentParser(exit_on_error=False)
    add_volume_arguments(p, "INCIDENT_PILOT_")
    return volume_from_args(p.parse_args(argv))


def test_options_and_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert _parse([], monkeypatch) == VolumeFilter()
    assert _parse(["--ingest-min-level", "error", "--ingest-min-span-ms", "500"], monkeypatch) == (
        VolumeFilter(min_log_level="ERROR", min_span_ms=500)
    )
    assert _parse([], monkeypatch, INCIDENT_PILOT_INGEST_MIN_LEVEL="info") == VolumeFilter(
        min_log_level="INFO"
    )
    with pytest.raises(argparse.ArgumentError):
        _parse(["--ingest-min-level", "loud"], monkeypatch)
    with pytest.raises(argparse.ArgumentError):
        _parse(["--ingest-min-span-ms", "-1"], monkeypatch)
