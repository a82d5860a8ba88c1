"""The shape of the code: no import cycles in engine/, no oversized module, and one way to
build the app (the tests build it exactly as `serve` does)."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ENGINE = ROOT / "engine"
TESTS = ROOT / "tests"
MAX_LINES = 450
# The one place tests build an in-process app, and what it must call: the builders
# `serve` (engine/server/run.py) calls.
SHARED_BUILDER = ROOT / "engine" / "testing.py"
BUILDERS = ("build_state", "create_app")
# Building the app (or part of it) by any other path is what this forbids in tests/.
FORBIDDEN_IN_TESTS = ("AppState", "create_app", "build_state", "install_ops", "setup_delivery")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def engine_modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(ENGINE.rglob("*.py"))}


def _resolve_from(node: ast.ImportFrom, current: str, is_package: bool) -> str:
    if not node.level:
        return node.module or ""
    base = current.split(".")
    # `from . import x` in engine/a/b.py is relative to engine.a; in engine/a/__init__.py too.
    drop = node.level - 1 if is_package else node.level
    base = base[: len(base) - drop] if drop else base
    return ".".join([*base, *([node.module] if node.module else [])])


def imports_of(path: Path, current: str, known: set[str]) -> set[str]:
    """Every engine module `path` imports, at module level or inside a function:
    `from x import y` counts as importing x.y when that is a module."""
    is_package = path.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text("utf-8"), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = _resolve_from(node, current, is_package)
            names = [base]
            names += [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        for name in names:
            # `import engine.a.b` also imports engine.a (and runs its __init__).
            parts = name.split(".")
            for i in range(1, len(parts) + 1):
                prefix = ".".join(parts[:i])
                if prefix in known and prefix != current:
                    found.add(prefix)
    return found


def import_graph() -> dict[str, set[str]]:
    modules = engine_modules()
    known = set(modules)
    graph = {name: imports_of(path, name, known) for name, path in modules.items()}
    # A package's own __init__ is run before its submodules; an edge from a package to
    # its parent (engine.a -> engine) is that, not a cycle the code can break.
    for name, edges in graph.items():
        edges -= {p for p in edges if name.startswith(p + ".")}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle, as the list of modules around it (first == last), or None."""
    done: set[str] = set()
    stack: list[str] = []
    on_stack: set[str] = set()

    def visit(node: str) -> list[str] | None:
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt in on_stack:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in done:
                cycle = visit(nxt)
                if cycle:
                    return cycle
        stack.pop()
        on_stack.discard(node)
        done.add(node)
        return None

    for start in sorted(graph):
        if start not in done:
            cycle = visit(start)
            if cycle:
                return cycle
    return None


def test_the_cycle_finder_finds_a_cycle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert find_cycle(graph) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_imports_are_resolved_relative_and_to_submodules(tmp_path: Path) -> None:
    known = {"engine", "engine.server", "engine.server.app", "engine.server.metrics"}
    source = tmp_path / "ops.py"
    source.write_text(
        "from . import metrics\ndef f():\n    from engine.server.app import create_app\n",
        encoding="utf-8",
    )
    found = imports_of(source, "engine.server.ops", known)
    assert found == {"engine", "engine.server", "engine.server.app", "engine.server.metrics"}


def test_engine_has_no_import_cycle() -> None:
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle in engine/: " + " -> ".join(cycle or [])


def test_no_engine_module_is_over_the_line_limit() -> None:
    long = {
        str(p.relative_to(ROOT)): n
        for p in sorted(ENGINE.rglob("*.py"))
        if (n := len(p.read_text("utf-8").splitlines())) > MAX_LINES
    }
    assert not long, f"modules over {MAX_LINES} lines (split them): {long}"


def _calls(tree: ast.AST) -> Iterator[tuple[str, int]]:
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            name = (
                func.id
                if isinstance(func, ast.Name)
                else func.attr
                if isinstance(func, ast.Attribute)
                else ""
            )
            yield name, node.lineno


def _function(path: Path, name: str) -> ast.FunctionDef:
    tree = ast.parse(path.read_text("utf-8"), str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef) and node.name == name:
            return node
    raise AssertionError(f"{path.relative_to(ROOT)} has no function {name}()")


def test_tests_build_the_app_only_through_the_shared_builder() -> None:
    here = Path(__file__).resolve()
    direct = [
        f"{path.relative_to(ROOT)}:{line}: {name}("
        for path in sorted(TESTS.rglob("*.py"))
        if path.resolve() != here
        for name, line in _calls(ast.parse(path.read_text("utf-8"), str(path)))
        if name in FORBIDDEN_IN_TESTS
    ]
    assert not direct, (
        "tests build the app by hand; use engine.testing.open_app (the wiring serve uses):\n"
        + "\n".join(direct)
    )


def test_the_shared_builder_and_serve_call_the_same_builders() -> None:
    serve_calls = {name for name, _ in _calls(_function(ENGINE / "server" / "run.py", "serve"))}
    shared_calls = {name for name, _ in _calls(_function(SHARED_BUILDER, "open_app"))}
    for builder in BUILDERS:
        assert builder in serve_calls, f"serve() no longer calls {builder}(); update this test"
        assert builder in shared_calls, f"engine.testing.open_app() does not call {builder}()"
    fixture = {name for name, _ in _calls(_function(TESTS / "conftest.py", "make_app"))}
    assert "open_app" in fixture, "tests/conftest.py::make_app must build through open_app()"
