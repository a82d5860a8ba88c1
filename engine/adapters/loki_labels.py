"""Prometheus label strings as Loki streams carry them: `{service_name="api", level="error"}`.

A small, strict parser (no maintained Python package parses them): label names as
Prometheus allows, values in double quotes, single quotes or backticks with Go's escapes.
"""

from __future__ import annotations

import re

_HEX = frozenset("0123456789abcdefABCDEF")
_OCTAL = frozenset("01234567")
LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")


class LabelSyntaxError(ValueError):
    """A label string that is not Prometheus label syntax; the message says where."""


_SIMPLE_ESCAPES = {
    "a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v",
    "\\": "\\",
}  # fmt: skip


def _quoted(text: str, i: int) -> tuple[str, int]:
    """The string literal starting at text[i] (a quote) and the index after it.

    Go's (and PromQL's) literal syntax, which is what Promtail and Alloy write with
    strconv.Quote: "..." and '...' with backslash escapes (\\a \\b \\f \\n \\r \\t \\v
    \\\\, the quote itself, \\xHH and \\NNN bytes, \\uHHHH and \\UHHHHHHHH code points),
    and `...` raw. Bytes from \\x / octal escapes are decoded as UTF-8 together."""
    quote = text[i]
    i += 1
    if quote == "`":
        end = text.find("`", i)
        if end < 0:
            raise LabelSyntaxError(f"unterminated raw string starting at offset {i - 1}")
        return text[i:end], end + 1
    out: list[str] = []
    pending = bytearray()  # \x and octal escapes: bytes that may form UTF-8 together

    def flush() -> None:
        if pending:
            out.append(pending.decode("utf-8", "replace"))
            pending.clear()

    while True:
        if i >= len(text):
            raise LabelSyntaxError(f"unterminated string starting before offset {i}")
        c = text[i]
        if c == quote:
            flush()
            return "".join(out), i + 1
        if c == "\n":
            raise LabelSyntaxError(f"newline inside a quoted string at offset {i}")
        if c != "\\":
            flush()
            out.append(c)
            i += 1
            continue
        if i + 1 >= len(text):
            raise LabelSyntaxError(f"unterminated escape at offset {i}")
        e = text[i + 1]
        if e in _SIMPLE_ESCAPES or e == quote:
            flush()
            out.append(_SIMPLE_ESCAPES.get(e, e))
            i += 2
        elif e == "x" or e in "01234567":
            digits, allowed = (
                (text[i + 2 : i + 4], _HEX) if e == "x" else (text[i + 1 : i + 4], _OCTAL)
            )
            ok = len(digits) == (2 if e == "x" else 3) and all(d in allowed for d in digits)
            value = int(digits, 16 if e == "x" else 8) if ok else -1
            if not 0 <= value <= 255:
                raise LabelSyntaxError(f"invalid byte escape at offset {i}")
            pending.append(value)
            i += 4
        elif e in "uU":
            size = 4 if e == "u" else 8
            digits = text[i + 2 : i + 2 + size]
            ok = len(digits) == size and all(d in _HEX for d in digits)
            cp = int(digits, 16) if ok else -1
            if not 0 <= cp <= 0x10FFFF or 0xD800 <= cp <= 0xDFFF:
                raise LabelSyntaxError(f"invalid unicode escape at offset {i}")
            flush()
            out.append(chr(cp))
            i += 2 + size
        else:
            raise LabelSyntaxError(f"unknown escape \\{e} at offset {i}")


def parse_labels(text: str) -> dict[str, str]:
    """`{name="value", other="v"}` -> {"name": "value", "other": "v"}.

    Prometheus label syntax as Loki streams carry it: names [a-zA-Z_][a-zA-Z0-9_]*, values
    quoted (see `_quoted`), pairs separated by commas (a trailing one allowed), spaces
    between tokens allowed. `{}` is an empty set; anything else raises LabelSyntaxError."""
    i, n = 0, len(text)

    def skip(j: int) -> int:
        while j < n and text[j] in " \t\r\n":
            j += 1
        return j

    i = skip(i)
    if i >= n or text[i] != "{":
        raise LabelSyntaxError("a label set starts with '{'")
    labels: dict[str, str] = {}
    i = skip(i + 1)
    while True:
        if i < n and text[i] == "}":
            i = skip(i + 1)
            break
        match = LABEL_NAME.match(text, i)
        if match is None:
            raise LabelSyntaxError(f"expected a label name or '}}' at offset {i}")
        name = match.group()
        i = skip(match.end())
        if i >= n or text[i] != "=":
            raise LabelSyntaxError(f"expected '=' after label {name!r} at offset {i}")
        i = skip(i + 1)
        if i >= n or text[i] not in "\"'`":
            raise LabelSyntaxError(f"expected a quoted value for label {name!r} at offset {i}")
        value, i = _quoted(text, i)
        if name in labels:
            raise LabelSyntaxError(f"label {name!r} appears twice")
        labels[name] = value
        i = skip(i)
        if i < n and text[i] == ",":
            i = skip(i + 1)
        elif i >= n or text[i] != "}":
            raise LabelSyntaxError(f"expected ',' or '}}' at offset {i}")
    if i != n:
        raise LabelSyntaxError(f"unexpected text after the label set at offset {i}")
    return labels
