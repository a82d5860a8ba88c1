"""The offline subcommands: `test-rules` and `replay`."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from engine.alerts import PayloadError, parse_payload
from engine.narrate import render_text
from engine.pipeline import Pipeline
from engine.rulefiles import load_rules, rule_dirs
from engine.rules.problems import Problem
from engine.rules.ruleset import RuleSet
from engine.rules.yamlsrc import load_yaml
from engine.scenario import Scenario
from engine.serialize import incident_to_dict
from engine.store import open_store
from engine.timeutil import TimeFormatError, parse_ts, utcnow


def _err(message: str) -> None:
    sys.stderr.write(f"incident-pilot: {message}\n")


def print_json(value: object) -> None:
    sys.stdout.write(json.dumps(value, indent=2, sort_keys=False) + "\n")


def _test_files(paths: list[str], ruleset: RuleSet) -> list[Path] | None:
    if not paths:
        return list(ruleset.test_files)
    files: list[Path] = []
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            files.extend(sorted([*p.glob("*.test.yaml"), *p.glob("*.test.yml")]))
        elif p.is_file():
            files.append(p)
        else:
            _err(f"no such file or directory: {raw}")
            return None
    return files


def test_rules(args: argparse.Namespace) -> int:
    from engine.ruletests import junit_xml, run_tests

    dirs = rule_dirs(args.rules)
    if not args.rules and args.paths:
        # Test files found in a directory are tests of the rules in that directory.
        dirs = sorted({Path(p) if Path(p).is_dir() else Path(p).parent for p in args.paths})
    ruleset = load_rules(dirs)
    if ruleset is None:
        return 1
    files = _test_files(args.paths, ruleset)
    if files is None:
        return 2
    if not files:
        _err("no rule tests (*.test.yaml) found")
        return 1
    try:
        run = run_tests(ruleset, files, args.run)
    except Exception as exc:  # a bad --run regex and the like: a usage error, not a traceback
        _err(str(exc))
        return 2
    for p in run.problems:
        sys.stdout.write(f"{p}\n")
    for r in run.results:
        if r.passed:
            sys.stdout.write(f"ok    {r.title}\n")
        else:
            sys.stdout.write(f"FAIL  {r.title}  ({r.file}:{r.line})\n{r.diff}\n")
    passed = sum(1 for r in run.results if r.passed)
    sys.stdout.write(f"{passed} passed, {len(run.failed)} failed\n")
    if args.junit:
        Path(args.junit).write_text(junit_xml(run), encoding="utf-8")
    if not run.results and not run.problems:
        _err("no test matched")
        return 1
    return 0 if run.ok else 1


def _read_context(path: str | None) -> tuple[dict[str, Any] | None, list[Problem]]:
    if not path:
        return {}, []
    doc, problems = load_yaml(Path(path))  # YAML is a superset of JSON: both work
    if doc is None:
        return None, problems
    return doc.data, []


def replay(args: argparse.Namespace) -> int:
    try:
        body = json.loads(Path(args.alert).read_bytes())
    except OSError as exc:
        _err(f"cannot read {args.alert}: {exc.strerror}")
        return 2
    except (ValueError, UnicodeDecodeError) as exc:
        _err(f"{args.alert} is not valid JSON: {exc}")
        return 1
    context, problems = _read_context(args.context)
    if context is None:
        for p in problems:
            sys.stderr.write(f"{p}\n")
        return 1
    ruleset = load_rules(rule_dirs(args.rules))
    if ruleset is None:
        return 1
    try:
        now = parse_ts(args.now) if args.now else None
        probe = parse_payload(body, now or utcnow())
        now = now or max(a.starts_at for a in probe)
        alerts = parse_payload(body, now)
        scenario = Scenario.from_dict(
            {
                "alert": {"labels": {"alertname": "replay"}},
                **{k: v for k, v in context.items() if k in ("incidents", "ownership", "tables")},
                "context": {k: v for k, v in context.items() if k in ("deploys", "logs", "traces")},
            },
            now=now,
        )
        ruleset = scenario.ruleset(ruleset, str(args.context))
    except (PayloadError, TimeFormatError, KeyError, TypeError, ValueError) as exc:
        _err(f"invalid input: {exc}")
        return 1
    store = open_store(":memory:")
    try:
        try:
            scenario.load_into(store)
        except (PayloadError, TimeFormatError) as exc:
            _err(f"invalid context in {args.context}: {exc}")
            return 1
        pipeline = Pipeline(store, lambda: ruleset, clock=lambda: now)
        out = []
        for alert in alerts:
            result = pipeline.handle(alert)
            incident = result.outcome.incident
            entry: dict[str, Any] = {"outcome": result.outcome.kind}
            if incident is not None:
                entry["incident"] = incident_to_dict(incident)
            if args.explain and result.evaluation is not None:
                entry["explain"] = [
                    {
                        "rule": t.rule_id,
                        "fired": t.fired,
                        "fetched": t.fetched,
                        "matched": t.matched,
                        "reason": t.reason,
                        "error": t.error,
                    }
                    for t in result.evaluation.traces
                ]
            out.append(entry)
            if not args.json:
                if incident is not None:
                    sys.stdout.write(render_text(incident, result.outcome.kind))
                for t in entry.get("explain", []):
                    state = "fired" if t["fired"] else "error" if t["error"] else "no"
                    detail = t["error"] or t["reason"] or ""
                    sys.stdout.write(
                        f"  explain {t['rule']}: {state}; {t['matched']}/{t['fetched']} records matched"
                        f"{'; ' + detail if detail else ''}\n"
                    )
        if args.json:
            print_json(out[0] if len(out) == 1 else out)
    finally:
        store.close()
    return 0
