"""Problems found in rule files: data, not exceptions, each with a file:line:col."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

KeyPath = tuple[str | int, ...]
Level = Literal["error", "warning"]


@dataclass(frozen=True)
class SourceLocation:
    path: str
    line: int = 0  # 1-based; 0 when unknown (e.g. the file could not be read)
    col: int = 0  # 1-based

    def __str__(self) -> str:
        if self.line:
            return f"{self.path}:{self.line}:{self.col or 1}"
        return self.path


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a rule file. `code` is a short stable slug (e.g. `schema`,
    `duplicate-id`, `bad-regex`) so tools can filter on it."""

    location: SourceLocation
    message: str
    code: str
    level: Level = "error"
    rule_id: str | None = None
    key_path: KeyPath = field(default=())

    @property
    def dotted_path(self) -> str:
        out = ""
        for part in self.key_path:
            out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
        return out

    def __str__(self) -> str:
        text = f"{self.location}: {self.rule_id or '-'}: {self.message}"
        if self.key_path:
            text += f" (at {self.dotted_path})"
        return text


@dataclass(frozen=True)
class CompileProblem:
    """A problem found while compiling a rule: located by key path; the loader adds the line."""

    key_path: KeyPath
    message: str
    code: str
    level: Level = "error"


class RuleSetError(Exception):
    """Raised when a rule set cannot be used; carries every problem found."""

    def __init__(self, problems: list[Problem]):
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))
