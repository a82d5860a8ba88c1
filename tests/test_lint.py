"""lint-rules end to end: the real `main()` on bad rule files, checking file:line:col and text.

Each tests/lint_cases/*.bad.yaml carries its expectations in comments:
    # expect: LINE[:COL] MESSAGE FRAGMENT
LINE 0 means "no line" (a whole-file problem); ` ... ` separates fragments that must appear
in that order on the same output line.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `pytest` does not put the checkout on sys.path
    sys.path.insert(0, str(ROOT))

from engine import lint  # noqa: E402

CASES = ROOT / "tests" / "lint_cases"
CASE_FILES = sorted(CASES.glob("*.bad.yaml"))
EXPECT = re.compile(r"#\s*expect:\s*(\d+)(?::(\d+))?\s+(.+?)\s*$")
# Raw jsonschema / Python wording that must never reach an SRE.
FORBIDDEN = (
    "Traceback",
    "is not valid under any of the given schemas",
    "Failed validating",
    "is not of type",
    "Additional properties are not allowed",
    "On instance",
)
RULE = """\
id: {id}
description: Demo rule for the lint tests.
source: alert
summary: "{{{{ alert.labels.service }}}} is alerting"
evidence: {{alert: labels.service}}
"""


def rule_text(rule_id: str = "demo.alert", extra: str = "") -> str:
    return RULE.format(id=rule_id) + extra


def rule_test_yaml(rule_id: str) -> str:
    return f"rule: {rule_id}\ntests: []\n"


@pytest.fixture(autouse=True)
def _in_checkout(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)


def run(capsys: pytest.CaptureFixture[str], *argv: str | Path) -> tuple[int, str, str]:
    code = lint.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    for text in FORBIDDEN:
        assert text not in out + err, f"raw internals leaked: {text!r}\n{out}{err}"
    return code, out, err


def expectations(path: Path) -> list[tuple[int, int | None, str]]:
    found = []
    for line in path.read_bytes().decode("utf-8", "replace").splitlines():
        m = EXPECT.match(line)
        if m:
            found.append((int(m.group(1)), int(m.group(2)) if m.group(2) else None, m.group(3)))
    return found


def assert_reported(out: str, file: str, line: int, col: int | None, fragment: str) -> None:
    prefix = f"{file}:{line}:{col}: " if col else f"{file}:{line}:"
    if not line:
        prefix = f"{file}: "
    pieces = fragment.split(" ... ")
    for text in out.splitlines():
        if not text.startswith(prefix):
            continue
        at = len(prefix)
        for piece in pieces:
            at = text.find(piece, at)
            if at < 0:
                break
            at += len(piece)
        else:
            return
    pytest.fail(f"expected a line starting {prefix!r} containing {pieces!r}; got:\n{out}")


@pytest.mark.parametrize("case", CASE_FILES, ids=lambda p: p.name.removesuffix(".bad.yaml"))
def test_bad_rule_file(case: Path, capsys: pytest.CaptureFixture[str]) -> None:
    expected = expectations(case)
    assert expected, f"{case.name} has no '# expect:' comment"
    code, out, err = run(capsys, case.relative_to(ROOT))
    assert code == 1
    for line, col, fragment in expected:
        assert_reported(out, str(case.relative_to(ROOT)), line, col, fragment)
    assert re.search(r"^\d+ errors?, \d+ warnings? in 1 file$", err, re.M)


def test_the_cases_cover_the_required_failures() -> None:
    names = {p.name.removesuffix(".bad.yaml") for p in CASE_FILES}
    required = {
        "invalid-yaml", "alias-bomb", "too-deep", "unknown-key", "wrong-type",
        "severity-oneof", "aggregation-oneof", "bad-regex", "bad-duration",
        "template-syntax", "template-undefined", "comments-only",
    }  # fmt: skip
    assert required <= names


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        (
            b"id: demo.x\ndescription: caf\xe9 au lait\n",
            ":2:17: -: file is not valid UTF-8: byte 0xe9",
        ),
        (b"", ": -: file is empty"),
        (b"# " + b"x" * 1_000_001 + b"\n", ": -: file is too large"),
        (b"\xef\xbb\xbf" + rule_text().encode(), None),  # a UTF-8 BOM is fine
    ],
    ids=["non-utf8", "zero-bytes", "too-large", "bom"],
)
def test_unreadable_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: bytes, fragment: str | None
) -> None:
    path = tmp_path / "rule.yaml"
    path.write_bytes(content)
    code, out, _ = run(capsys, path)
    if fragment is None:
        assert code == 0 and "error" not in out
    else:
        assert code == 1
        assert f"{path}{fragment}" in out


def test_directory_without_rules(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "ownership.yaml").write_text("owners: [{service: api, team: edge}]\n")
    (tmp_path / "demo.test.yaml").write_text(rule_test_yaml("demo.alert"))
    (tmp_path / ".hidden.yaml").write_text(rule_text())
    code, out, err = run(capsys, tmp_path)
    assert code == 1
    assert f"{tmp_path}: -: no rules found in {tmp_path}" in out
    assert "1 error, 0 warnings in 1 file" in err


def test_duplicate_ids_name_both_locations(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "a.yaml").write_text(rule_text())
    (tmp_path / "b.yaml").write_text("# the same id again\n" + rule_text())
    (tmp_path / "a.test.yaml").write_text(rule_test_yaml("demo.alert"))
    code, out, _ = run(capsys, tmp_path)
    assert code == 1
    assert (
        f'{tmp_path}/b.yaml:2:5: demo.alert: duplicate rule id "demo.alert": '
        f"already defined at {tmp_path}/a.yaml:1:5 (at id)"
    ) in out


def test_duplicate_ids_among_files_given_by_name(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "a.yaml").write_text(rule_text())
    (tmp_path / "b.yaml").write_text(rule_text())
    code, out, _ = run(capsys, tmp_path / "a.yaml", tmp_path / "b.yaml")
    assert code == 1
    assert f"{tmp_path}/b.yaml:1:5: demo.alert: duplicate rule id" in out


def test_later_directory_overrides_with_a_warning(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    shipped, mine = tmp_path / "shipped", tmp_path / "mine"
    for d in (shipped, mine):
        d.mkdir()
        (d / "demo.yaml").write_text(rule_text())
        (d / "demo.test.yaml").write_text(rule_test_yaml("demo.alert"))
    code, out, _ = run(capsys, shipped, mine)
    assert code == 0
    assert (
        f'{mine}/demo.yaml:1:5: demo.alert: warning: overrides rule "demo.alert" defined at '
        f"{shipped}/demo.yaml:1:5 (at id)"
    ) in out
    assert run(capsys, "--strict", shipped, mine)[0] == 1


def test_disabled_rule_warns_and_fails_under_strict(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "demo.yaml").write_text(rule_text(extra="enabled: false\n"))
    (tmp_path / "demo.test.yaml").write_text(rule_test_yaml("demo.alert"))
    code, out, err = run(capsys, tmp_path)
    assert code == 0
    assert out == (
        f"{tmp_path}/demo.yaml:6:10: demo.alert: warning: rule is disabled (enabled: false) "
        "(at enabled)\n"
    )
    assert "0 errors, 1 warning in 1 file" in err
    assert run(capsys, "--strict", tmp_path)[0] == 1


def test_rule_without_a_test_warns(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "demo.yaml").write_text(rule_text())
    code, out, _ = run(capsys, "--strict", tmp_path)
    assert code == 1
    assert f"{tmp_path}/demo.yaml:1:5: demo.alert: warning: no rule test names this rule" in out
    (tmp_path / "demo.test.yaml").write_text(rule_test_yaml("demo.alert"))
    code, out, err = run(capsys, "--strict", tmp_path)
    assert (code, out) == (0, "")
    assert err.strip() == "0 errors, 0 warnings in 1 file"


def test_errors_come_before_warnings(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "a.yaml").write_text(rule_text("demo.a", "enabled: false\n"))
    (tmp_path / "b.yaml").write_text(rule_text("demo.b", "severity: hgih\n"))
    _, out, err = run(capsys, tmp_path)
    lines = out.splitlines()
    assert [": warning: " in line for line in lines] == [False, True, True]
    assert "1 error, 2 warnings in 2 files" in err


def test_duplicate_service_in_ownership(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "demo.yaml").write_text(rule_text())
    (tmp_path / "demo.test.yaml").write_text(rule_test_yaml("demo.alert"))
    (tmp_path / "ownership.yaml").write_text(
        "owners:\n  - {service: api, team: edge}\n  - {service: api, team: core}\n"
    )
    code, out, _ = run(capsys, tmp_path)
    assert code == 1
    assert (
        f'{tmp_path}/ownership.yaml:3:15: -: service "api" is listed twice '
        f"(first at {tmp_path}/ownership.yaml:2:15)"
    ) in out


def test_format_json(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "--format", "json", "tests/lint_cases/unknown-key.bad.yaml")
    assert code == 1
    items = json.loads(out)
    assert {tuple(sorted(i)) for i in items} == {
        ("code", "col", "file", "level", "line", "message", "path", "rule")
    }
    assert {
        "file": "tests/lint_cases/unknown-key.bad.yaml",
        "line": 6,
        "col": 1,
        "rule": "demo.unknown_key",
        "level": "error",
        "code": "schema",
        "message": 'unknown key "sumary" (did you mean "summary"?)',
        "path": "sumary",
    } in items
    assert [i["level"] for i in items] == sorted((i["level"] for i in items), key="error".__ne__)


def test_format_github(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "--format", "github", "tests/lint_cases/unknown-key.bad.yaml")
    assert code == 1
    assert (
        "::error file=tests/lint_cases/unknown-key.bad.yaml,line=6,col=1,title=demo.unknown_key::"
        'unknown key "sumary" (did you mean "summary"?) (at sumary)'
    ) in out.splitlines()
    assert "::warning file=tests/lint_cases/unknown-key.bad.yaml,line=3,col=5," in out
    (tmp_path / "empty.yaml").write_text("")
    _, out, _ = run(capsys, "--format", "github", tmp_path / "empty.yaml")
    assert out == f"::error file={tmp_path}/empty.yaml,title=lint-rules::file is empty\n"


@pytest.mark.parametrize(
    "argv",
    [["no/such/dir"], ["--format", "xml"], ["--bogus"], ["--templates", "no/such/templates"]],
    ids=["missing-path", "bad-format", "unknown-option", "missing-templates"],
)
def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str], argv: list[str]) -> None:
    code, _, err = run(capsys, *argv)
    assert code == 2
    assert "lint-rules: error:" in err


def test_help_explains_every_option(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "--help")
    assert code == 0
    for option in ("--format", "--strict", "--templates", "--no-render", "PATH", "exit status"):
        assert option in out


def test_unexpected_failure_is_a_message_not_a_traceback(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import engine.rules.loader as loader

    def boom(*args: object, **kwargs: object) -> None:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(loader, "load_paths", boom)
    code, _, err = run(capsys, "tests/lint_cases")
    assert code == 2
    assert err.strip() == "lint-rules: internal error: RuntimeError: disk on fire"


def test_default_path_is_rules_d_in_the_cwd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "rules.d").mkdir()
    (tmp_path / "rules.d" / "demo.yaml").write_text(rule_text(extra="severity: hgih\n"))
    monkeypatch.chdir(tmp_path)
    code, out, _ = run(capsys)
    assert code == 1
    assert out.startswith("rules.d/demo.yaml:6:11: demo.alert: severity must be one of")


def test_console_script_in_a_subprocess() -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, "-m", "engine.lint", "tests/lint_cases/severity-oneof.bad.yaml"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1
    assert proc.stdout.startswith(
        "tests/lint_cases/severity-oneof.bad.yaml:6:11: demo.severity_oneof: severity must be "
        "one of info, low, medium, high, critical, or a list of {when, then} steps"
    )
    assert proc.stderr.strip() == "1 error, 1 warning in 1 file"


def test_pre_commit_hook_definition() -> None:
    import yaml

    hooks = yaml.safe_load((ROOT / ".pre-commit-hooks.yaml").read_text())
    hook = next(h for h in hooks if h["id"] == "lint-rules")
    assert hook["entry"].split()[0] == "lint-rules" and "--strict" in hook["entry"]
    assert hook["language"] == "python"
    assert re.search(hook["files"], "rules.d/logs.error_spike.yaml")
    assert not re.search(hook["files"], "docs/rules.d.md")


def _shipped_rule_files() -> list[Path]:
    from engine.rules.loader import file_kind

    rules = ROOT / "rules.d"
    return [p for p in rules.glob("*.y*ml") if file_kind(p) == "rule"] if rules.is_dir() else []


@pytest.mark.skipif(not _shipped_rule_files(), reason="rules.d holds no rules yet")
def test_shipped_rules_lint_clean_with_strict(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "--strict", "rules.d")
    assert (code, out) == (0, ""), out
    assert err.startswith("0 errors, 0 warnings in ")
