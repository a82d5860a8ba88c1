"""A loaded, compiled, immutable set of rules (swapped whole on reload)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from engine.rules.compiler import CompiledRule
    from engine.rules.tables import Table


@dataclass(frozen=True)
class OwnershipEntry:
    service: str
    team: str
    file: str
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def path(self) -> str:
        return f"ownership/{self.service}"

    def as_record(self) -> dict[str, Any]:
        return {**self.extra, "service": self.service, "team": self.team, "path": self.path}


@dataclass(frozen=True)
class RuleSet:
    rules: tuple[CompiledRule, ...]
    ownership: tuple[OwnershipEntry, ...] = ()
    # Lookup tables by name (rules.d/tables/*.yaml, and ownership.yaml as `ownership`).
    tables: Mapping[str, Table] = field(default_factory=dict)
    dirs: tuple[Path, ...] = ()
    test_files: tuple[Path, ...] = ()

    @property
    def enabled(self) -> tuple[CompiledRule, ...]:
        return tuple(r for r in self.rules if r.enabled)

    def by_id(self, rule_id: str) -> CompiledRule | None:
        return next((r for r in self.rules if r.id == rule_id), None)
