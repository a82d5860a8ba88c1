"""Where the shipped rules, templates and schemas are, installed or in a checkout."""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def shipped(name: str) -> Path:
    """`rules.d`, `templates` or `schemas`: inside the wheel, else at the checkout's top."""
    bundled = _PACKAGE / "_shipped" / name
    if bundled.is_dir():
        return bundled
    return _PACKAGE.parent / name


def rules_dir() -> Path:
    return shipped("rules.d")


def templates_dir() -> Path:
    return shipped("templates")


def schemas_dir() -> Path:
    return shipped("schemas")


def schema_path(name: str) -> Path:
    return schemas_dir() / name
