"""Load rule directories into a `RuleSet`, collecting every problem with its file:line.

Per rule file: yamlsrc (safe parse, line index) -> schema_check (rule.schema.json) ->
`compile_rule` -> `check_render`. Directories load in order; a rule id seen again in a
later directory replaces the earlier rule (a user's `--rules DIR` overrides a shipped
rule), while the same id twice in one directory is an error.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from engine import paths
from engine.rules.compiler import CompiledRule, compile_rule
from engine.rules.problems import CompileProblem, KeyPath, Problem, RuleSetError, SourceLocation
from engine.rules.ruleset import OwnershipEntry, RuleSet
from engine.rules.sample import check_render
from engine.rules.schema_check import validate_document
from engine.rules.tables import Table, build_table, ownership_table, table_file_problems
from engine.rules.yamlsrc import YamlDoc, load_yaml

YAML_SUFFIXES = (".yaml", ".yml")
OWNERSHIP_NAMES = ("ownership.yaml", "ownership.yml")
TABLES_DIR = "tables"  # lookup tables: <rules dir>/tables/<name>.yaml
_TEMPLATE_LINE = re.compile(r"template line (\d+)")
_UNDEFINED = re.compile(r"'(\w+)' is undefined|has no attribute '(\w+)'")


def display_path(path: Path) -> str:
    """Relative to the current directory when under it, else absolute."""
    absolute = Path(os.path.abspath(path))
    try:
        return str(absolute.relative_to(Path.cwd()))
    except (ValueError, OSError):
        return str(absolute)


def file_kind(path: Path) -> str:
    """`test` (*.test.yaml), `ownership` (ownership.yaml), `table` (in a tables/
    directory) or `rule`."""
    name = path.name
    if name.endswith((".test.yaml", ".test.yml")):
        return "test"
    if path.parent.name == TABLES_DIR:
        return "table"
    return "ownership" if name in OWNERSHIP_NAMES else "rule"


def _dir_files(directory: Path) -> list[Path]:
    return sorted(
        p
        for p in directory.iterdir()
        if p.suffix in YAML_SUFFIXES and not p.name.startswith(".") and p.is_file()
    )


@dataclass
class LoadResult:
    ruleset: RuleSet
    problems: list[Problem]
    files: int  # rule and ownership files examined

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.level == "error"]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if p.level == "warning"]


@dataclass
class _Seen:
    location: SourceLocation
    group: int
    enabled: bool


@dataclass
class _Loader:
    template_dirs: list[Path]
    render_check: bool
    known: dict[str, Table] = field(default_factory=dict)  # tables the rules may name
    problems: list[Problem] = field(default_factory=list)
    rules: dict[str, CompiledRule] = field(default_factory=dict)
    ids: dict[str, _Seen] = field(default_factory=dict)
    owners: dict[str, OwnershipEntry] = field(default_factory=dict)
    owner_lines: dict[str, int] = field(default_factory=dict)
    tables: dict[str, Table] = field(default_factory=dict)
    table_groups: dict[str, tuple[int, SourceLocation]] = field(default_factory=dict)
    files: int = 0

    def table_file(self, path: Path, group: int) -> None:
        display = display_path(path)
        doc, problems = load_yaml(path, display)
        self.problems.extend(problems)
        if doc is None:
            return
        name = path.name.rsplit(".", 1)[0]
        here = SourceLocation(display, 1, 1)
        if name == "ownership":
            message = "the table `ownership` is ownership.yaml in the rules directory"
            self.problems.append(Problem(here, message, "table-name"))
            return
        table_problems = table_file_problems(doc, name)
        self.problems.extend(table_problems)
        if table_problems:
            return
        before = self.table_groups.get(name)
        if before is not None and before[0] == group:
            message = f'table "{name}" is already defined at {before[1]}'
            self.problems.append(Problem(here, message, "duplicate-table"))
            return
        if before is not None:
            message = f'overrides table "{name}" defined at {before[1]}'
            self.problems.append(Problem(here, message, "overrides", "warning"))
        self.table_groups[name] = (group, here)
        self.tables[name] = build_table(doc, name, display)

    def all_tables(self) -> dict[str, Table]:
        if not self.owners:
            return dict(self.tables)
        owners = {
            s: (e.as_record(), e.file, self.owner_lines.get(s, 0)) for s, e in self.owners.items()
        }
        return {**self.tables, "ownership": ownership_table(owners)}

    def rule_file(self, path: Path, group: int) -> None:
        display = display_path(path)
        doc, problems = load_yaml(path, display)
        if doc is None:
            self.problems.extend(problems)
            return
        raw_id = doc.data.get("id")
        rule_id = raw_id if isinstance(raw_id, str) and raw_id else None
        self.problems.extend(replace(p, rule_id=rule_id) for p in problems)
        schema_problems = validate_document(doc, "rule.schema.json", rule_id=rule_id)
        self.problems.extend(schema_problems)
        if rule_id is None:
            return
        enabled = doc.data.get("enabled", True) is not False
        if not enabled:
            self.warn(doc, ("enabled",), rule_id, "rule is disabled (enabled: false)", "disabled")
        claimed = self.claim_id(doc, rule_id, group, enabled)
        if schema_problems:
            return  # the compiler expects a schema-valid document
        rule = self.compile(doc, rule_id)
        if rule is not None and claimed:
            self.rules[rule_id] = rule

    def claim_id(self, doc: YamlDoc, rule_id: str, group: int, enabled: bool) -> bool:
        """Record where `rule_id` is defined; False when it is a duplicate in one group."""
        here = doc.location(("id",), prefer="value")
        before = self.ids.get(rule_id)
        if before is not None and before.group == group:
            message = f'duplicate rule id "{rule_id}": already defined at {before.location}'
            self.problems.append(
                Problem(here, message, "duplicate-id", rule_id=rule_id, key_path=("id",))
            )
            return False
        if before is not None:
            message = f'overrides rule "{rule_id}" defined at {before.location}'
            self.warn(doc, ("id",), rule_id, message, "overrides")
            self.rules.pop(rule_id, None)
        self.ids[rule_id] = _Seen(here, group, enabled)
        return True

    def compile(self, doc: YamlDoc, rule_id: str) -> CompiledRule | None:
        try:
            rule, problems = compile_rule(
                doc.data, file=doc.path, template_dirs=self.template_dirs, tables=self.known
            )
            if rule is not None and self.render_check:
                problems = [*problems, *check_render(rule)]
        except Exception as exc:  # a bug in the compiler must not hide the other files
            message = f"internal error while compiling this rule: {type(exc).__name__}: {exc}"
            self.problems.append(Problem(doc.location(()), message, "internal", rule_id=rule_id))
            return None
        self.problems.extend(self.locate(doc, p, rule_id) for p in problems)
        if any(p.level == "error" for p in problems):
            return None
        return rule

    def locate(self, doc: YamlDoc, problem: CompileProblem, rule_id: str) -> Problem:
        path: KeyPath = tuple(problem.key_path)
        value = _value_at(doc.data, path)
        if problem.code == "missing-template" and isinstance(value, dict) and "file" in value:
            path, value = (*path, "file"), value["file"]
        scalar = not isinstance(value, dict | list)
        location = doc.location(path, prefer="value" if scalar else "key")
        if problem.code.startswith("template") and doc.styles.get(path) == "|":
            line = _template_line(problem.message, value)
            if line:  # a literal block: template line N is N lines below the `|`
                location = SourceLocation(location.path, location.line + line, 1)
        return Problem(location, problem.message, problem.code, problem.level, rule_id, path)

    def ownership_file(self, path: Path, group_seen: dict[str, SourceLocation]) -> None:
        display = display_path(path)
        doc, problems = load_yaml(path, display)
        self.problems.extend(problems)
        if doc is None:
            return
        schema_problems = validate_document(doc, "ownership.schema.json")
        self.problems.extend(schema_problems)
        if schema_problems:
            return
        for i, entry in enumerate(doc.data["owners"]):
            service = entry["service"]
            here = doc.location(("owners", i, "service"), prefer="value")
            if service in group_seen:
                message = f'service "{service}" is listed twice (first at {group_seen[service]})'
                self.problems.append(
                    Problem(here, message, "duplicate-service", key_path=("owners", i, "service"))
                )
                continue
            group_seen[service] = here
            extra = {k: v for k, v in entry.items() if k not in ("service", "team")}
            self.owners[service] = OwnershipEntry(service, entry["team"], display, extra)
            self.owner_lines[service] = here.line

    def warn(self, doc: YamlDoc, path: KeyPath, rule_id: str, message: str, code: str) -> None:
        location = doc.location(path, prefer="value")
        self.problems.append(Problem(location, message, code, "warning", rule_id, path))


def _template_line(message: str, text: Any) -> int | None:
    """The template line a template problem is about: named by the message, or the first
    line using the undefined name."""
    found = _TEMPLATE_LINE.search(message)
    if found:
        return int(found.group(1))
    found = _UNDEFINED.search(message)
    if found and isinstance(text, str):
        name = re.compile(r"\b" + re.escape(found.group(1) or found.group(2)) + r"\b")
        for number, line in enumerate(text.splitlines(), 1):
            if name.search(line) and ("{{" in line or "{%" in line):
                return number
    return None


def _value_at(data: Any, path: KeyPath) -> Any:
    for part in path:
        try:
            data = data[part]
        except (KeyError, IndexError, TypeError):
            return None
    return data


def _tested_ids(test_files: Sequence[Path]) -> set[str]:
    """Rule ids named by the `rule:` key of test files (read leniently: bad files are the
    rule-test runner's business)."""
    ids: set[str] = set()
    for path in test_files:
        doc, _ = load_yaml(path, display_path(path))
        named = doc.data.get("rule") if doc is not None else None
        for item in named if isinstance(named, list) else [named]:
            if isinstance(item, str):
                ids.add(item)
    return ids


def _groups(paths_in: Sequence[Path]) -> list[tuple[Path | None, list[Path]]]:
    """Each directory is a group; consecutive files given by name form one group."""
    groups: list[tuple[Path | None, list[Path]]] = []
    for path in paths_in:
        if path.is_dir():
            groups.append((path, _dir_files(path)))
        elif groups and groups[-1][0] is None:
            groups[-1][1].append(path)
        else:
            groups.append((None, [path]))
    return groups


def _group_tables(directory: Path | None, files: Sequence[Path]) -> list[Path]:
    """The table files of a group: its directory's tables/, or the table files named
    (and, for rule files named alone, the tables/ beside them)."""
    if directory is not None:
        tables = directory / TABLES_DIR
        return _dir_files(tables) if tables.is_dir() else []
    named = [p for p in files if file_kind(p) == "table"]
    beside = dict.fromkeys(p.parent / TABLES_DIR for p in files if file_kind(p) == "rule")
    found = [t for d in beside if d.is_dir() for t in _dir_files(d) if t not in named]
    return [*named, *found]


def default_template_dirs(paths_in: Sequence[Path]) -> list[Path]:
    """`templates/` inside each rules directory (later directories first, so a user's
    template overrides a shipped one), then the shipped templates."""
    dirs = [p if p.is_dir() else p.parent for p in paths_in]
    found = [d / "templates" for d in reversed(dirs) if (d / "templates").is_dir()]
    return [*dict.fromkeys([*found, paths.templates_dir()])]


def load_paths(
    paths_in: Sequence[Path],
    *,
    template_dirs: Sequence[Path] | None = None,
    render_check: bool = True,
) -> LoadResult:
    """Load rules from directories and/or single files (what `lint-rules` is given)."""
    paths_in = [Path(p) for p in paths_in]
    tdirs = list(template_dirs) if template_dirs is not None else default_template_dirs(paths_in)
    loader = _Loader(tdirs, render_check)
    test_files: list[Path] = []
    test_search: list[Path] = []
    missing = [p for p in paths_in if not p.exists()]
    for path in missing:
        location = SourceLocation(display_path(path))
        loader.problems.append(Problem(location, "no such file or directory", "not-found"))
    groups = _groups([p for p in paths_in if p.exists()])
    # Tables and ownership first: the rules' lookups name them.
    for group, (directory, files) in enumerate(groups):
        owners_seen: dict[str, SourceLocation] = {}
        for path in _group_tables(directory, files):
            loader.files += 1
            loader.table_file(path, group)
        for path in files:
            if file_kind(path) == "ownership":
                loader.files += 1
                loader.ownership_file(path, owners_seen)
    loader.known = loader.all_tables()
    for group, (directory, files) in enumerate(groups):
        rule_files = 0
        for path in files:
            kind = file_kind(path)
            if kind == "test":
                test_files.append(path)
                continue
            if kind == "rule":
                loader.files += 1
                rule_files += 1
                loader.rule_file(path, group)
        if directory is not None and rule_files == 0:
            message = f"no rules found in {display_path(directory)}"
            loader.problems.append(
                Problem(SourceLocation(display_path(directory)), message, "no-rules")
            )
        if directory is None:
            parents = dict.fromkeys(p.parent for p in files)
            test_search += [t for d in parents for t in _dir_files(d) if file_kind(t) == "test"]
    tested = _tested_ids([*test_files, *test_search])
    for rule_id, seen in loader.ids.items():
        if seen.enabled and rule_id not in tested:
            message = f'no rule test names this rule (add a *.test.yaml with "rule: {rule_id}")'
            loader.problems.append(Problem(seen.location, message, "no-test", "warning", rule_id))
    ruleset = RuleSet(
        rules=tuple(loader.rules.values()),
        ownership=tuple(loader.owners.values()),
        tables=loader.known,
        dirs=tuple(p for p in paths_in if p.is_dir()),
        test_files=tuple(test_files),
    )
    return LoadResult(ruleset, loader.problems, loader.files)


def load_ruleset(
    dirs: Sequence[Path],
    *,
    template_dirs: Sequence[Path] | None = None,
    render_check: bool = True,
) -> tuple[RuleSet, list[Problem]]:
    """Load and compile every rule in `dirs` (in order). Returns the rule set (rules with
    errors left out) and every problem found, errors and warnings."""
    result = load_paths(dirs, template_dirs=template_dirs, render_check=render_check)
    return result.ruleset, result.problems


def load_or_raise(
    dirs: Sequence[Path],
    *,
    template_dirs: Sequence[Path] | None = None,
    render_check: bool = True,
) -> RuleSet:
    """Like `load_ruleset`, but raise `RuleSetError` (carrying every problem) when any
    problem is an error. Warnings do not block."""
    ruleset, problems = load_ruleset(dirs, template_dirs=template_dirs, render_check=render_check)
    if any(p.level == "error" for p in problems):
        raise RuleSetError(problems)
    return ruleset
