"""docs/OPERATIONS.md stays true: every serve option, its variable, and every sink type."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from engine.cli import build_parser
from engine.delivery.sinks import REGISTRY

DOC = (Path(__file__).resolve().parent.parent / "docs" / "OPERATIONS.md").read_text("utf-8")


def serve_options() -> list[argparse.Action]:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return [a for a in sub.choices["serve"]._actions if a.option_strings and a.dest != "help"]


@pytest.mark.parametrize("action", serve_options(), ids=lambda a: a.option_strings[0])
def test_every_serve_option_is_documented(action: argparse.Action) -> None:
    flag = action.option_strings[0]
    assert f"`{flag}" in DOC, f"{flag} is not in docs/OPERATIONS.md"
    variable = "INCIDENT_PILOT_" + action.dest.upper()
    assert variable in DOC, f"{variable} is not in docs/OPERATIONS.md"


@pytest.mark.parametrize("sink_type", sorted(REGISTRY))
def test_every_sink_type_is_documented(sink_type: str) -> None:
    assert f"type: {sink_type}" in DOC or f"`{sink_type}`" in DOC


def client_options() -> list[tuple[str, str]]:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    out = []
    for command in ("incidents", "deliveries"):
        inner = next(
            a for a in sub.choices[command]._actions if isinstance(a, argparse._SubParsersAction)
        )
        for action_name, p in inner.choices.items():
            out.append((f"{command} {action_name}", ""))
            out += [
                (f"{command} {action_name}", a.option_strings[0])
                for a in p._actions
                if a.option_strings and a.dest != "help"
            ]
    return out


@pytest.mark.parametrize(("command", "flag"), client_options(), ids=lambda v: v)
def test_every_client_command_and_option_is_documented(command: str, flag: str) -> None:
    section = DOC[DOC.index("## The incidents command line") :]
    assert f"`{command}" in section, f"{command} is not in docs/OPERATIONS.md"
    if flag:
        assert f"`{flag}" in section or f"[{flag}" in section, f"{command} {flag} is undocumented"
