"""yamlsrc (safe YAML with line numbers), schema_check (human sentences) and the loader."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `pytest` does not put the checkout on sys.path
    sys.path.insert(0, str(ROOT))

from engine.rules import yamlsrc  # noqa: E402
from engine.rules.loader import load_or_raise, load_paths, load_ruleset  # noqa: E402
from engine.rules.problems import RuleSetError  # noqa: E402
from engine.rules.schema_check import validate_document  # noqa: E402
from engine.rules.yamlsrc import load_yaml, parse_yaml  # noqa: E402

RULE = """\
id: {id}
description: Demo rule for the loader tests.
source: alert
summary: "{{{{ alert.labels.service }}}} is alerting"
evidence: {{alert: labels.service}}
"""


def rule_text(rule_id: str = "demo.alert", extra: str = "") -> str:
    return RULE.format(id=rule_id) + extra


@pytest.fixture(params=["libyaml", "pure-python"], autouse=True)
def yaml_loader(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test runs with the C loader (when built) and the pure-Python one."""
    if request.param == "libyaml" and not hasattr(yaml, "CSafeLoader"):
        pytest.skip("PyYAML built without libyaml")
    loader = yaml.CSafeLoader if request.param == "libyaml" else yaml.SafeLoader
    monkeypatch.setattr(yamlsrc, "Loader", loader)


# --- yamlsrc ---------------------------------------------------------------------------


def test_values_and_positions() -> None:
    text = (
        "id: a.b\n"  # 1
        "list:\n"  # 2
        "  - x\n"  # 3
        "  - {y: 1, z: [1, 2]}\n"  # 4
        "on: 2024-01-01\n"  # 5
    )
    doc, problems = parse_yaml(text, "f.yaml")
    assert problems == [] and doc is not None
    assert doc.data == {"id": "a.b", "list": ["x", {"y": 1, "z": [1, 2]}], "on": "2024-01-01"}
    assert doc.index[("id",)] == (1, 1)  # a key points at the key...
    assert doc.values[("id",)] == (1, 5)  # ...and its value at the value
    assert doc.index[("list", 1)] == (4, 5)
    assert doc.index[("list", 1, "z")] == (4, 12)
    assert doc.values[("list", 1, "z", 1)] == (4, 19)
    assert doc.position(("list", 1, "nope", 3)) == (4, 5)  # nearest known ancestor
    assert str(doc.location(("on",), prefer="value")) == "f.yaml:5:5"


def test_merge_keys_and_aliases() -> None:
    doc, problems = parse_yaml("base: &b {x: 1, y: 2}\nd:\n  <<: *b\n  y: 3\ne: *b\n", "f.yaml")
    assert problems == [] and doc is not None
    assert doc.data["d"] == {"x": 1, "y": 3}
    assert doc.data["e"] == {"x": 1, "y": 2}
    assert doc.data["e"] is not doc.data["base"]  # aliases are copies, not shared objects


@pytest.mark.parametrize(
    ("text", "code", "line", "fragment"),
    [
        ("a: 1\nb: 2\na: 3\n", "duplicate-key", 3, "duplicate key 'a' (first at line 1)"),
        ("", "empty", 0, "file is empty"),
        ("# only a comment\n", "empty", 0, "file is empty"),
        ("---\n", "empty", 0, "file is empty"),
        ("- a\n", "yaml", 1, "must hold a mapping of keys, not a list"),
        ("a: 1\n---\nb: 2\n", "yaml", 2, "more than one YAML document"),
        ("a: [1\n", "yaml", 2, "invalid YAML"),
        ("a: *nope\n", "yaml", 1, "alias *nope names no anchor &nope"),
        ("a: &a [*a]\n", "yaml", 1, "alias *a names no anchor &a"),
        ("a: !Ref x\n", "yaml", 1, "cannot read this value"),
        ("? [a]\n: 1\n", "yaml", 1, "a mapping key must be a plain string"),
        ("a: \x07\n", "yaml", 1, "character U+0007 is not allowed"),
        ("a: " + "[" * 70 + "]" * 70 + "\n", "too-deep", 1, "nesting deeper than 64 levels"),
        (
            "x: &x " + "[" * 40 + "]" * 40 + "\ny: " + "[" * 30 + "*x" + "]" * 30,
            "too-deep",
            2,
            "alias *x",
        ),
        (
            "a: &a x\nb: [" + ", ".join(["*a"] * 10_001) + "]\n",
            "alias-bomb",
            2,
            "more than 10000 aliases",
        ),
    ],
)
def test_refusals(text: str, code: str, line: int, fragment: str) -> None:
    doc, problems = parse_yaml(text, "f.yaml")
    assert [p.code for p in problems] == [code]
    assert problems[0].location.line == line
    assert fragment in problems[0].message
    if code != "duplicate-key":
        assert doc is None


def test_billion_laughs_is_refused_quickly() -> None:
    lines = ["a: &a [" + ", ".join(["lol"] * 10) + "]"]
    for prev, name in zip("abcdefgh", "bcdefghi", strict=True):
        lines.append(f"{name}: &{name} [" + ", ".join([f"*{prev}"] * 10) + "]")
    doc, problems = parse_yaml("\n".join(lines), "bomb.yaml")
    assert doc is None
    assert problems[0].code == "alias-bomb"
    assert str(problems[0]).startswith("bomb.yaml:")


def test_load_yaml_files(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_bytes(b"a: 1\nb: \xff\n")
    _, problems = load_yaml(bad, "bad.yaml")
    assert str(problems[0]) == (
        "bad.yaml:2:4: -: file is not valid UTF-8: byte 0xff at offset 8 (line 2, column 4); "
        "save the file as UTF-8"
    )
    big = tmp_path / "big.yaml"
    big.write_bytes(b"#" * (yamlsrc.MAX_BYTES + 1))
    assert load_yaml(big)[1][0].code == "too-large"
    assert load_yaml(tmp_path / "missing.yaml")[1][0].code == "io"
    bom = tmp_path / "bom.yaml"
    bom.write_bytes(b"\xef\xbb\xbfa: 1\n")
    assert load_yaml(bom)[0].data == {"a": 1}  # type: ignore[union-attr]


# --- schema_check ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("extra", "line", "message"),
    [
        ("sumary: x\n", 6, 'unknown key "sumary" (did you mean "summary"?)'),
        ("severity: 3\n", 6, "severity must be one of info, low, medium, high, critical, or a "
         "list of {when, then} steps (got 3)"),
        ("severity:\n  - when: {count: 1}\n    then: hi\n", 8,
         "severity must be one of info, low, medium, high, or critical (got \"hi\"; did you mean high?)"),
        ("severity: []\n", 6, "must not be an empty list"),
        ("confidence: {then: high}\n", 6, "confidence must be one of low, medium, high, or a list "
         "of {when, then} steps"),
        ("fire_when: sometimes\n", 6, "fire_when must be always or a block of conditions"),
        ("aggregate: {n: {top: {n: 5}}}\n", 6, 'missing required key "by"'),
        ("aggregate: {n: {distinct: service, max: ts}}\n", 6, "aggregation must be one of count"),
        ("window: {}\n", 6, "must not be empty (use before or after)"),
        ("window: {before: 5 minutes}\n", 6, '"5 minutes" is not a duration such as 90s, 10m'),
        ("params: {2x: 1}\n", 6, 'key "2x" is not a name made of letters, digits and _'),
        ("outputs: {x: [1]}\n", 6, "must be a single value (text, a number, true/false or null) "
         "or {table, key, ...}"),
        ("match: {service: {in: []}}\n", 6, "must not be an empty list"),
        ("evidence2: {limit: 500}\n", 6, 'unknown key "evidence2" (did you mean "evidence"?)'),
        ("outputs: {team: {x: 1}}\n", 6, 'missing required key "table"'),
        ("enabled:\n", 6, "expected true or false, got an empty value"),
    ],
)  # fmt: skip
def test_schema_messages(extra: str, line: int, message: str) -> None:
    doc, _ = parse_yaml(rule_text(extra=extra), "r.yaml")
    assert doc is not None
    problems = validate_document(doc, "rule.schema.json", rule_id="demo.alert")
    assert problems, "expected a schema problem"
    found = [p for p in problems if message in p.message]
    assert found, [p.message for p in problems]
    assert found[0].location.line == line
    assert found[0].rule_id == "demo.alert"
    for p in problems:
        assert "valid under" not in p.message and "is not of type" not in p.message


def test_schema_errors_are_all_reported_in_line_order() -> None:
    text = rule_text(extra="severity: hgih\nsumary: x\n").replace("source: alert", "source: log")
    doc, _ = parse_yaml(text, "r.yaml")
    assert doc is not None
    problems = validate_document(doc, "rule.schema.json")
    assert [p.location.line for p in problems] == [3, 6, 7]
    assert "did you mean logs?" in problems[0].message


def test_ownership_schema() -> None:
    doc, _ = parse_yaml("owners:\n  - {service: api}\n  - {service: db, team: x, chanel: y}\n", "o")
    assert doc is not None
    messages = [
        (p.location.line, p.message) for p in validate_document(doc, "ownership.schema.json")
    ]
    assert messages == [
        (2, 'missing required key "team"'),
        (3, 'unknown key "chanel" (did you mean "channel"?)'),
    ]


# --- loader ----------------------------------------------------------------------------


def write(directory: Path, name: str, text: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text(text)
    return path


def test_load_ruleset(tmp_path: Path) -> None:
    rules = tmp_path / "rules"
    write(rules, "a.yaml", rule_text("demo.a"))
    write(rules, "b.yml", rule_text("demo.b", "enabled: false\n"))
    write(rules, ".c.yaml", "not: [valid")  # hidden: skipped
    write(rules, "notes.txt", "not yaml")  # not *.yaml: skipped
    test = write(rules, "a.test.yaml", "rule: demo.a\n")
    write(rules, "ownership.yaml", "owners: [{service: api, team: edge, channel: '#edge'}]\n")
    ruleset, problems = load_ruleset([rules])
    assert [r.id for r in ruleset.rules] == ["demo.a", "demo.b"]
    assert [r.id for r in ruleset.enabled] == ["demo.a"]
    assert ruleset.test_files == (test,)
    assert ruleset.dirs == (rules,)
    assert ruleset.ownership[0].as_record() == {
        "channel": "#edge", "service": "api", "team": "edge", "path": "ownership/api"
    }  # fmt: skip
    assert [(p.code, p.level, p.rule_id) for p in problems] == [("disabled", "warning", "demo.b")]


def test_later_directory_overrides_rules_and_owners(tmp_path: Path) -> None:
    shipped, mine = tmp_path / "shipped", tmp_path / "mine"
    write(shipped, "demo.yaml", rule_text("demo.a"))
    write(shipped, "other.yaml", rule_text("demo.other"))
    write(
        shipped, "ownership.yaml", "owners: [{service: api, team: edge}, {service: db, team: d}]\n"
    )
    write(mine, "mine.yaml", rule_text("demo.a").replace("Demo rule", "My rule"))
    write(mine, "ownership.yaml", "owners: [{service: api, team: core}]\n")
    ruleset, problems = load_ruleset([shipped, mine], render_check=False)
    assert [r.id for r in ruleset.rules] == ["demo.other", "demo.a"]
    assert ruleset.by_id("demo.a").description.startswith("My rule")  # type: ignore[union-attr]
    assert {o.service: o.team for o in ruleset.ownership} == {"api": "core", "db": "d"}
    assert [p.code for p in problems if p.level == "warning"].count("overrides") == 1
    assert not [p for p in problems if p.level == "error"]


def test_load_or_raise(tmp_path: Path) -> None:
    good = write(tmp_path / "good", "demo.yaml", rule_text(extra="enabled: false\n")).parent
    assert [r.id for r in load_or_raise([good]).rules] == ["demo.alert"]  # warnings don't block
    bad = write(tmp_path / "bad", "demo.yaml", rule_text(extra="severity: hgih\n")).parent
    with pytest.raises(RuleSetError) as caught:
        load_or_raise([good, bad])
    assert any(p.code == "schema" for p in caught.value.problems)
    with pytest.raises(RuleSetError, match="no such file or directory"):
        load_or_raise([tmp_path / "missing"])


def test_templates_folder_inside_a_rules_dir(tmp_path: Path) -> None:
    rules = tmp_path / "rules"
    write(rules / "templates", "mine.j2", "{{ alert.labels.service }} from a file\n")
    write(rules, "demo.yaml", rule_text().replace('summary: "{{ alert.labels.service }} is alerting"',
                                                  "summary: {file: mine.j2}"))  # fmt: skip
    ruleset, problems = load_ruleset([rules])
    assert [p for p in problems if p.level == "error"] == []
    assert ruleset.rules[0].templates["summary"].endswith("from a file\n")


def test_render_check_can_be_skipped(tmp_path: Path) -> None:
    rules = write(tmp_path / "r", "demo.yaml", rule_text().replace("alert.labels", "alrt.labels"))
    _, problems = load_ruleset([rules.parent])
    assert [p.code for p in problems if p.level == "error"] == ["template-undefined"]
    _, problems = load_ruleset([rules.parent], render_check=False)
    assert [p.code for p in problems if p.level == "error"] == []


def test_compile_problems_carry_line_and_rule(tmp_path: Path) -> None:
    path = write(
        tmp_path / "r", "demo.yaml", rule_text(extra="match:\n  labels.x: {matches: '(('}\n")
    )
    result = load_paths([path])
    errors = result.errors
    assert [(p.code, p.location.line, p.rule_id, p.dotted_path) for p in errors] == [
        ("bad-regex", 7, "demo.alert", "match.labels.x.matches")
    ]
    assert result.files == 1


def test_problem_paths_are_relative_under_the_cwd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(tmp_path / "rules", "demo.yaml", rule_text(extra="enabled: false\n"))
    monkeypatch.chdir(tmp_path)
    _, problems = load_ruleset([tmp_path / "rules"])
    assert str(problems[0].location) == "rules/demo.yaml:6:10"
