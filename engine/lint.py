"""`lint-rules`: check rule files (YAML, schema, compile, sample render) before they ship.

Exit status: 0 clean, 1 problems found (errors; warnings too with --strict), 2 usage error.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from engine import paths
from engine.rules.problems import Problem

DESCRIPTION = """\
Lint incident-pilot rule files: YAML syntax, the rule schema, regexes, durations,
field and $reference names, templates (rendered against a sample alert), duplicate
rule ids, the ownership table, and rules without a test.

Each PATH is a rules directory (every *.yaml / *.yml in it; *.test.yaml files are rule
tests, ownership.yaml is the ownership table) or a single rule file. Directories load
in order: a rule id in a later directory overrides the earlier rule (a warning).
"""

EPILOG = """\
exit status: 0 no problems, 1 problems found (errors, or warnings with --strict),
2 usage error (bad option, a PATH that does not exist, internal failure).

examples:
  lint-rules                        lint ./rules.d (or the shipped rules)
  lint-rules --strict rules.d       fail on warnings too (CI, pre-commit)
  lint-rules rules.d my-rules/      my-rules/ overrides shipped rules by id
  lint-rules --format github        annotations for GitHub Actions
"""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lint-rules",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "paths",
        nargs="*",
        metavar="PATH",
        type=Path,
        help="rules directory or rule file (default: ./rules.d if present, else the shipped rules)",
    )
    parser.add_argument(
        "--format",
        choices=("text", "json", "github"),
        default="text",
        help="text: one 'file:line:col: rule: message' line per problem (default); "
        "json: a JSON list of {file, line, col, rule, level, code, message, path}; "
        "github: ::error / ::warning workflow commands for GitHub Actions annotations",
    )
    parser.add_argument(
        "--strict",
        action="store_true",
        help="warnings fail too (exit 1): disabled rules, rules without a test, overridden rules",
    )
    parser.add_argument(
        "--templates",
        action="append",
        type=Path,
        default=[],
        metavar="DIR",
        help="extra template directory searched first for {file: NAME} templates "
        "(repeatable; templates/ inside each rules directory and the shipped templates "
        "are always searched)",
    )
    parser.add_argument(
        "--no-render",
        action="store_true",
        help="skip rendering the templates against a sample alert (faster, finds less)",
    )
    return parser


def default_paths() -> list[Path]:
    local = Path("rules.d")
    return [local] if local.is_dir() else [paths.rules_dir()]


def _text_line(problem: Problem) -> str:
    if problem.level == "error":
        return str(problem)
    text = f"{problem.location}: {problem.rule_id or '-'}: {problem.level}: {problem.message}"
    return text + (f" (at {problem.dotted_path})" if problem.key_path else "")


def _escape(text: str, *, prop: bool = False) -> str:
    text = text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")
    return text.replace(":", "%3A").replace(",", "%2C") if prop else text


def _github_line(problem: Problem) -> str:
    loc = problem.location
    props = [f"file={_escape(loc.path, prop=True)}"]
    if loc.line:
        props += [f"line={loc.line}", f"col={loc.col or 1}"]
    props.append(f"title={_escape(problem.rule_id or 'lint-rules', prop=True)}")
    message = problem.message + (f" (at {problem.dotted_path})" if problem.key_path else "")
    return f"::{problem.level} {','.join(props)}::{_escape(message)}"


def as_dict(problem: Problem) -> dict[str, object]:
    return {
        "file": problem.location.path,
        "line": problem.location.line or None,
        "col": (problem.location.col or 1) if problem.location.line else None,
        "rule": problem.rule_id,
        "level": problem.level,
        "code": problem.code,
        "message": problem.message,
        "path": problem.dotted_path or None,
    }


def report(problems: Sequence[Problem], fmt: str, out: TextIO) -> None:
    """Write the problems, errors first then warnings, each sorted by file and line."""

    def order(p: Problem) -> tuple[str, int, int]:
        return (p.location.path, p.location.line, p.location.col)

    ordered = sorted((p for p in problems if p.level == "error"), key=order)
    ordered += sorted((p for p in problems if p.level != "error"), key=order)
    if fmt == "json":
        json.dump([as_dict(p) for p in ordered], out, indent=2)
        out.write("\n")
        return
    line = _github_line if fmt == "github" else _text_line
    for problem in ordered:
        out.write(line(problem) + "\n")


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help (0) or a usage error (2)
        return exc.code if isinstance(exc.code, int) else 2
    targets: list[Path] = args.paths or default_paths()
    for path in [*targets, *args.templates]:
        if not path.exists():
            print(f"lint-rules: error: {path}: no such file or directory", file=sys.stderr)
            return 2
    try:
        from engine.rules.loader import default_template_dirs, load_paths

        template_dirs = [*args.templates, *default_template_dirs(targets)]
        result = load_paths(targets, template_dirs=template_dirs, render_check=not args.no_render)
        report(result.problems, args.format, sys.stdout)
        sys.stdout.flush()
    except BrokenPipeError:
        return 1
    except Exception as exc:
        print(f"lint-rules: internal error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    errors, warnings = len(result.errors), len(result.warnings)
    print(
        f"{_plural(errors, 'error')}, {_plural(warnings, 'warning')} in {_plural(result.files, 'file')}",
        file=sys.stderr,
    )
    return 1 if errors or (args.strict and warnings) else 0


if __name__ == "__main__":
    raise SystemExit(main())
