"""The `incident-pilot` command: serve, test-rules, replay, lint, incidents, deliveries."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from engine import __version__
from engine.rulefiles import ENV_PREFIX, SHIPPED


def add_rules_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--rules",
        action="append",
        metavar="DIR",
        help="a rules directory; repeat to combine them (a later one overrides a rule of the same id). "
        f"'{SHIPPED}' names the shipped rules. Default: the shipped rules "
        f"[env {ENV_PREFIX}RULES, comma-separated]",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="incident-pilot",
        description="Turns Alertmanager alerts into structured incidents whose findings cite their evidence.",
    )
    parser.add_argument("--version", action="version", version=f"incident-pilot {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    from engine.server.settings import add_serve_arguments

    serve = sub.add_parser(
        "serve", help="run the HTTP service", description="Run the HTTP service."
    )
    add_serve_arguments(serve)
    add_rules_option(serve)

    tests = sub.add_parser(
        "test-rules",
        help="run rule tests (*.test.yaml)",
        description="Run rule unit tests: each *.test.yaml names a rule and gives scenarios with "
        "the findings expected. Exit 0 when all pass, 1 on a failure, 2 on a usage error.",
    )
    tests.add_argument(
        "paths",
        nargs="*",
        metavar="PATH",
        help="test files, or directories to search for *.test.yaml (default: the rules directories)",
    )
    add_rules_option(tests)
    tests.add_argument(
        "--run", metavar="REGEX", help="only tests whose 'RULE-ID: name' matches REGEX"
    )
    tests.add_argument("--junit", metavar="FILE", help="also write a JUnit XML report to FILE")

    replay = sub.add_parser(
        "replay",
        help="print the incident an alert would produce, offline",
        description="Feed one alert (an Alertmanager webhook body, a bare alert, or a list) through "
        "the rules over the context in a file, and print the incident the server would produce.",
    )
    replay.add_argument("alert", metavar="ALERT.json", help="the alert payload (JSON)")
    replay.add_argument(
        "--context",
        metavar="CONTEXT.yaml",
        help="context records: {deploys: [...], logs: [...], traces: [...], incidents: [...]}; "
        "times may be relative to --now (-3m)",
    )
    add_rules_option(replay)
    replay.add_argument(
        "--now", metavar="TIME", help="the current time (RFC 3339); default: the alert's startsAt"
    )
    replay.add_argument("--json", action="store_true", help="print the incident as JSON")
    replay.add_argument(
        "--explain",
        action="store_true",
        help="show, per rule, whether it fired, and if not which condition failed and how many records matched",
    )

    from engine.client.commands import add_client_commands

    add_client_commands(sub)

    lint = sub.add_parser("lint", help="same as the lint-rules command", add_help=False)
    lint.add_argument("args", nargs=argparse.REMAINDER)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["lint"]:
        from engine.lint import main as lint_main

        return lint_main(argv[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "serve":
            from engine.server.run import serve

            return serve(args)
        if args.command == "test-rules":
            from engine.commands import test_rules

            return test_rules(args)
        if args.command == "replay":
            from engine.commands import replay

            return replay(args)
        if args.command in ("incidents", "deliveries"):
            from engine.client.commands import run

            return run(args)
    except KeyboardInterrupt:
        return 130
    parser.print_help()
    return 2
