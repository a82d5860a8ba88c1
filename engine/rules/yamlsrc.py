"""Read one YAML file safely into plain Python values, keeping the line of every key.

The document is built from the parser's event stream (iteratively, never recursively), so
hostile input is refused with a `Problem` instead of a traceback or a hang: alias bombs,
deep nesting, huge files, non-UTF-8 bytes, several documents, duplicate keys.

Mapping keys are always strings (the key as written: `on:` stays "on", not True), and
timestamps stay strings: rule files are JSON-shaped data checked by a JSON Schema.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from yaml import events as ev
from yaml.constructor import SafeConstructor

from engine.rules.problems import KeyPath, Problem, SourceLocation

Loader: type = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

MAX_BYTES = 1_000_000
MAX_DEPTH = 64
MAX_ALIASES = 10_000
MAX_NODES = 100_000

_TIMESTAMP = "tag:yaml.org,2002:timestamp"
_MERGE = "tag:yaml.org,2002:merge"
_COLLECTION_TAGS = {None, "!", "tag:yaml.org,2002:map", "tag:yaml.org,2002:seq"}
Position = tuple[int, int]


@dataclass
class YamlDoc:
    """A parsed file: `data` plus where each key path is. `keys` points at the key of a
    mapping entry (or the item of a list), `values` at the value; both are 1-based."""

    path: str
    data: Any
    keys: dict[KeyPath, Position] = field(default_factory=dict)
    values: dict[KeyPath, Position] = field(default_factory=dict)
    styles: dict[KeyPath, str] = field(default_factory=dict)  # block scalars: `|` or `>`

    @property
    def index(self) -> dict[KeyPath, Position]:
        return self.keys

    def position(self, key_path: KeyPath, *, prefer: str = "key") -> Position:
        """The position of `key_path`, else of its nearest ancestor with a known one."""
        first, second = (self.keys, self.values) if prefer == "key" else (self.values, self.keys)
        path = tuple(key_path)
        while True:
            for table in (first, second):
                if path in table:
                    return table[path]
            if not path:
                return (1, 1)
            path = path[:-1]

    def location(self, key_path: KeyPath, *, prefer: str = "key") -> SourceLocation:
        line, col = self.position(key_path, prefer=prefer)
        return SourceLocation(self.path, line, col)


class _Refused(Exception):
    def __init__(self, message: str, code: str, mark: Any = None, line: int = 0, col: int = 0):
        super().__init__(message)
        self.message, self.code = message, code
        self.line = mark.line + 1 if mark is not None else line
        self.col = mark.column + 1 if mark is not None else col


@dataclass
class _Frame:
    kind: str  # "map" | "seq"
    path: KeyPath
    value: Any
    anchor: str | None
    size: int = 1
    height: int = 1  # levels below and including this one, aliases expanded
    key: str | None = None  # mapping: the key waiting for its value
    key_mark: Any = None
    seen: dict[str, int] = field(default_factory=dict)  # key -> line of first occurrence
    merges: list[dict[str, Any]] = field(default_factory=list)


class _Builder:
    def __init__(self, display: str, loader: Any):
        self.doc = YamlDoc(display, None)
        self.loader = loader
        self.constructor = SafeConstructor()
        self.anchors: dict[str, tuple[Any, int, int]] = {}  # anchor -> (value, size, height)
        self.stack: list[_Frame] = []
        self.nodes = 0
        self.aliases = 0
        self.problems: list[Problem] = []
        self.documents = 0

    def run(self, events: Iterator[Any]) -> None:
        for event in events:
            if isinstance(event, ev.DocumentStartEvent):
                self.documents += 1
                if self.documents > 1:
                    raise _Refused(
                        "the file holds more than one YAML document (a second `---` starts "
                        "here); keep one document per file",
                        "yaml",
                        event.start_mark,
                    )
            elif isinstance(event, ev.MappingStartEvent | ev.SequenceStartEvent):
                self._open(event)
            elif isinstance(event, ev.MappingEndEvent | ev.SequenceEndEvent):
                frame = self.stack.pop()
                if frame.kind == "map":
                    for merged in frame.merges:
                        for k, v in merged.items():
                            frame.value.setdefault(k, v)
                self._add(frame.value, frame.size, frame.anchor, frame.height)
            elif isinstance(event, ev.ScalarEvent):
                self._scalar(event)
            elif isinstance(event, ev.AliasEvent):
                self._alias(event)

    def _next_path(self, mark: Any) -> KeyPath:
        """Path of the node that starts at `mark`; records its value position."""
        if not self.stack:
            path: KeyPath = ()
        else:
            top = self.stack[-1]
            if top.kind == "seq":
                path = (*top.path, len(top.value))
                self.doc.keys[path] = (mark.line + 1, mark.column + 1)
            else:
                path = (*top.path, top.key if top.key is not None else "")
        self.doc.values.setdefault(path, (mark.line + 1, mark.column + 1))
        return path

    def _count(self, n: int, mark: Any) -> None:
        self.nodes += n
        if self.nodes > MAX_NODES:
            code = "alias-bomb" if self.aliases else "too-large"
            why = "aliases (*name) expand" if self.aliases else "the document holds"
            raise _Refused(f"{why} to more than {MAX_NODES} values; refusing to load", code, mark)

    def _open(self, event: Any) -> None:
        if event.tag not in _COLLECTION_TAGS:
            raise _Refused(f"unsupported YAML tag {event.tag!r}", "yaml", event.start_mark)
        if self._waiting_for_key():
            raise _Refused(
                "a mapping key must be a plain string, not a list or mapping",
                "yaml",
                event.start_mark,
            )
        if len(self.stack) >= MAX_DEPTH:
            raise _Refused(
                f"nesting deeper than {MAX_DEPTH} levels; refusing to load",
                "too-deep",
                event.start_mark,
            )
        self._count(1, event.start_mark)
        path = self._next_path(event.start_mark)
        is_map = isinstance(event, ev.MappingStartEvent)
        self.stack.append(
            _Frame("map" if is_map else "seq", path, {} if is_map else [], event.anchor)
        )

    def _waiting_for_key(self) -> bool:
        return bool(self.stack) and self.stack[-1].kind == "map" and self.stack[-1].key is None

    def _scalar(self, event: Any) -> None:
        if self._waiting_for_key():
            self._key(event)
            return
        self._count(1, event.start_mark)
        path = self._next_path(event.start_mark)
        if event.style in ("|", ">"):
            self.doc.styles[path] = event.style
        tag = event.tag
        if tag in (None, "!"):
            tag = self.loader.resolve(yaml.ScalarNode, event.value, event.implicit)
        if tag == _TIMESTAMP:
            value: Any = event.value
        else:
            node = yaml.ScalarNode(tag, event.value, event.start_mark, event.end_mark, event.style)
            try:
                value = self.constructor.construct_object(node, deep=True)
            except yaml.YAMLError as exc:
                raise _Refused(
                    f"cannot read this value: {_first_line(exc)}", "yaml", event.start_mark
                ) from None
        self._add(value, 1, event.anchor)

    def _key(self, event: Any) -> None:
        frame = self.stack[-1]
        mark = event.start_mark
        resolved = self.loader.resolve(yaml.ScalarNode, event.value, event.implicit)
        key = "<<" if resolved == _MERGE and event.tag is None else str(event.value)
        line = mark.line + 1
        if key in frame.seen and key != "<<":
            self.problems.append(
                Problem(
                    SourceLocation(self.doc.path, line, mark.column + 1),
                    f"duplicate key {key!r} (first at line {frame.seen[key]}); "
                    "YAML would silently keep only the last one",
                    "duplicate-key",
                    key_path=(*frame.path, key),
                )
            )
        frame.seen.setdefault(key, line)
        frame.key, frame.key_mark = key, mark
        self.doc.keys[(*frame.path, key)] = (line, mark.column + 1)

    def _alias(self, event: Any) -> None:
        if self._waiting_for_key():
            raise _Refused("an alias (*name) cannot be a mapping key", "yaml", event.start_mark)
        self.aliases += 1
        if self.aliases > MAX_ALIASES:
            raise _Refused(
                f"more than {MAX_ALIASES} aliases (*name); refusing to load",
                "alias-bomb",
                event.start_mark,
            )
        if event.anchor not in self.anchors:
            raise _Refused(
                f"alias *{event.anchor} names no anchor &{event.anchor} above it",
                "yaml",
                event.start_mark,
            )
        value, size, height = self.anchors[event.anchor]
        if len(self.stack) + height > MAX_DEPTH:
            raise _Refused(
                f"alias *{event.anchor} nests values deeper than {MAX_DEPTH} levels; refusing to load",
                "too-deep",
                event.start_mark,
            )
        self._count(size, event.start_mark)
        self._next_path(event.start_mark)
        self._add(copy.deepcopy(value) if size > 1 else value, size, None, height)

    def _add(self, value: Any, size: int, anchor: str | None, height: int = 0) -> None:
        if anchor is not None:
            self.anchors[anchor] = (value, size, height)
        if not self.stack:
            self.doc.data = value
            return
        top = self.stack[-1]
        top.size += size
        top.height = max(top.height, height + 1)
        if top.kind == "seq":
            top.value.append(value)
            return
        if top.key == "<<":
            merged = value if isinstance(value, list) else [value]
            if not all(isinstance(m, dict) for m in merged):
                raise _Refused(
                    "`<<` must merge a mapping or a list of mappings", "yaml", top.key_mark
                )
            top.merges.extend(merged)
        else:
            top.value[top.key] = value
        top.key = None


def _first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "problem", None) or exc)
    return text.strip().splitlines()[0] if text.strip() else type(exc).__name__


def _yaml_error(exc: yaml.YAMLError, display: str, text: str) -> Problem:
    if isinstance(exc, yaml.reader.ReaderError):
        line, col = _line_col(text, exc.position) if isinstance(exc.position, int) else (0, 0)
        char = exc.character if isinstance(exc.character, str) else chr(exc.character)
        message = f"invalid YAML: character U+{ord(char):04X} is not allowed in a YAML file"
        return Problem(SourceLocation(display, line, col), message, "yaml")
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    line, col = (mark.line + 1, mark.column + 1) if mark is not None else (0, 0)
    problem = str(getattr(exc, "problem", None) or exc).strip()
    message = f"invalid YAML: {problem}"
    context = getattr(exc, "context", None)
    context_mark = getattr(exc, "context_mark", None)
    if context and context_mark is not None and context_mark.line + 1 != line:
        message += f" ({context} at line {context_mark.line + 1})"
    lines = text.splitlines()
    if 0 < line <= len(lines) and "\t" in lines[line - 1][: max(col, 1)]:
        message += "; YAML does not allow tabs for indentation, use spaces"
    elif "mapping values are not allowed" in problem or "expected key" in problem:
        message += "; check the indentation, or quote a value that contains ': '"
    return Problem(SourceLocation(display, line, col), message, "yaml")


def _line_col(text: str | bytes, offset: int) -> Position:
    nl = "\n" if isinstance(text, str) else b"\n"
    line = text.count(nl, 0, offset) + 1  # type: ignore[arg-type]
    start = text.rfind(nl, 0, offset) + 1  # type: ignore[arg-type]
    return line, offset - start + 1


def parse_yaml(raw: bytes | str, display: str) -> tuple[YamlDoc | None, list[Problem]]:
    """Parse YAML text; `display` names the file in problems. Returns (None, problems) when
    the text cannot be used. The document must be one mapping."""

    def fail(message: str, code: str, line: int = 0, col: int = 0) -> tuple[None, list[Problem]]:
        return None, [Problem(SourceLocation(display, line, col), message, code)]

    if len(raw) > MAX_BYTES:
        return fail(f"file is too large ({len(raw)} bytes, the limit is {MAX_BYTES})", "too-large")
    if isinstance(raw, bytes):
        try:
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            line, col = _line_col(raw, exc.start)
            byte = raw[exc.start : exc.start + 1].hex()
            return fail(
                f"file is not valid UTF-8: byte 0x{byte} at offset {exc.start} (line {line}, "
                f"column {col}); save the file as UTF-8",
                "encoding",
                line,
                col,
            )
    else:
        text = raw
    try:
        loader = Loader(text)  # the pure-Python reader checks characters right here
    except yaml.YAMLError as exc:
        return None, [_yaml_error(exc, display, text)]
    builder = _Builder(display, loader)

    def events() -> Iterator[Any]:
        while loader.check_event():
            yield loader.get_event()

    try:
        builder.run(events())
    except _Refused as exc:
        return fail(exc.message, exc.code, exc.line, exc.col)
    except yaml.YAMLError as exc:
        return None, [_yaml_error(exc, display, text)]
    except (RecursionError, MemoryError):
        return fail("document too complex to load", "too-deep")
    except Exception as exc:  # a safety net: a linter must report, not crash
        return fail(f"cannot read this file: {type(exc).__name__}: {exc}", "yaml")
    finally:
        loader.dispose()
    if builder.documents == 0 or builder.doc.data is None:
        return fail("file is empty", "empty")
    if not isinstance(builder.doc.data, dict):
        kind = (
            "a list"
            if isinstance(builder.doc.data, list)
            else f"a single value ({builder.doc.data!r:.40})"
        )
        return None, [
            Problem(
                SourceLocation(display, 1, 1),
                f"the file must hold a mapping of keys, not {kind}",
                "yaml",
            )
        ]
    return builder.doc, builder.problems


def load_yaml(path: Path, display: str | None = None) -> tuple[YamlDoc | None, list[Problem]]:
    """Read and parse one file. Never raises for bad content or unreadable files."""
    display = display or str(path)
    try:
        size = path.stat().st_size
        if size > MAX_BYTES:
            return None, [
                Problem(
                    SourceLocation(display),
                    f"file is too large ({size} bytes, the limit is {MAX_BYTES})",
                    "too-large",
                )
            ]
        raw = path.read_bytes()
    except OSError as exc:
        return None, [
            Problem(SourceLocation(display), f"cannot read file: {exc.strerror or exc}", "io")
        ]
    return parse_yaml(raw, display)
