"""Reading request bodies safely: size limit, content type, JSON or NDJSON, nesting depth."""

from __future__ import annotations

import json
import logging
import re
from typing import Any

from starlette.requests import ClientDisconnect, Request

from engine import finitejson

log = logging.getLogger("incident_pilot")
MAX_DEPTH = 32
# The status recorded (access log, metrics) when the client left before its body ended: a
# client error (nginx's "client closed request"); nothing is sent, there is nobody to read it.
CLIENT_CLOSED = 499
_SURROGATE = re.compile("[\ud800-\udfff]")
# Cheap pre-checks on the raw bytes (valid UTF-8, and valid JSON once json.loads accepted
# it), so the walk over every value in _check_depth runs only when it could fail:
# - a lone surrogate can only come from a \uD800-\uDFFF escape (strict UTF-8 has none);
# - nesting: drop escapes, keep only brackets and quotes, drop the (now empty-ish)
#   strings, and peel innermost bracket pairs. Multi-byte UTF-8 never holds ASCII bytes.
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")
_ESCAPE = re.compile(rb"\\.", re.DOTALL)
_ALL_BUT_STRUCTURE = bytes(sorted(set(range(256)) - set(b'[]{}"')))
_STRING = re.compile(rb'"[^"]*"')
# curl -d sends form-urlencoded; the Go original's demo posts JSON that way, so it is
# accepted and parsed as JSON. Anything else that is not JSON-ish gets 415.
ACCEPTED_TYPES = {
    "",
    "application/json",
    "application/x-ndjson",
    "application/ndjson",
    "application/jsonl",
    "application/x-jsonlines",
    "text/plain",
    "application/x-www-form-urlencoded",
}
NDJSON_TYPES = {
    "application/x-ndjson",
    "application/ndjson",
    "application/jsonl",
    "application/x-jsonlines",
}


class ClientError(Exception):
    """A 4xx answer: the status, what was wrong, and the field it concerns (if any)."""

    def __init__(self, status: int, message: str, field: str = ""):
        self.status = status
        self.message = message
        self.field = field
        super().__init__(message)

    def to_dict(self) -> dict[str, str]:
        out = {"error": self.message}
        if self.field:
            out["field"] = self.field
        return out


def media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


async def read_body(request: Request, limit: int) -> bytes:
    """The whole body, refusing (413) as soon as it grows past `limit` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            if int(declared) > limit:
                raise ClientError(
                    413, f"request body is {declared} bytes; the limit is {limit} bytes"
                )
        except ValueError:
            raise ClientError(400, "invalid Content-Length header") from None
    chunks = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise ClientError(413, f"request body is larger than the limit of {limit} bytes")
            chunks.append(chunk)
    except ClientDisconnect:
        # The client went away mid-body, or sent a malformed chunk (the HTTP parser has
        # answered it 400 and closed the connection): the client's error, never a 500.
        log.info("client closed the connection after %d bytes of the request body", size)
        raise ClientError(
            CLIENT_CLOSED, "the client closed the connection before the body ended"
        ) from None
    return b"".join(chunks)


def _check_text(text: str) -> None:
    # json.loads turns an escaped lone surrogate ("\ud800") into a str that cannot be
    # encoded as UTF-8: refuse it here rather than fail (500) when it is stored or printed.
    if _SURROGATE.search(text):
        raise ClientError(
            400,
            "JSON contains an unpaired UTF-16 surrogate escape (\\ud800-\\udfff): not valid Unicode",
        )


def _check_depth(value: Any) -> None:
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise ClientError(400, f"JSON is nested more than {MAX_DEPTH} levels deep")
        if isinstance(item, dict):
            for key in item:
                _check_text(key)
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item)
        elif isinstance(item, str):
            _check_text(item)


def _nesting_within(raw: bytes, limit: int) -> bool:
    """True when the valid JSON `raw` has at most `limit` levels of nested arrays and
    objects; brackets inside strings do not count. C-level byte operations only."""
    if b"\\" in raw:
        raw = _ESCAPE.sub(b"", raw)  # escapes only occur in strings; \" must not end one
    # Left: brackets and the quotes of strings (whose content is now brackets only).
    # Removing adjacent quote pairs first is exact and cheap: a pair is either an empty
    # string or the end of one string and the start of the next with nothing between.
    brackets = raw.translate(None, _ALL_BUT_STRUCTURE).replace(b'""', b"")
    if b'"' in brackets:
        brackets = _STRING.sub(b"", brackets)
    levels = 0
    while brackets:
        levels += 1
        if levels > limit:
            return False
        peeled = brackets.replace(b"{}", b"").replace(b"[]", b"")
        if peeled == brackets:
            return False  # not balanced: leave it to the walk
        brackets = peeled
    return True


def _check_value(value: Any, raw: bytes, wrapped: bool) -> None:
    """`_check_depth(value)`, skipped when the bytes show it cannot fail: no surrogate
    escape, and nesting well inside MAX_DEPTH. A value at depth d sits inside d - 1
    containers, so containers nested at most MAX_DEPTH - 1 deep cannot fail; `wrapped`
    (NDJSON: `value` is a list built around the documents) takes one level more."""
    limit = MAX_DEPTH - 1 - (1 if wrapped else 0)
    if _SURROGATE_ESCAPE.search(raw) is None and _nesting_within(raw, limit):
        return
    _check_depth(value)


def _decode(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ClientError(
            400, f"body is not valid UTF-8 (bad byte at offset {exc.start})"
        ) from None


def _loads(text: str, where: str = "") -> Any:
    prefix = f"{where}: " if where else ""
    try:
        return finitejson.loads(text)
    except finitejson.NonFiniteNumber as exc:
        raise ClientError(400, f"{prefix}{exc}") from None
    except RecursionError:
        raise ClientError(400, f"JSON is nested more than {MAX_DEPTH} levels deep") from None
    except json.JSONDecodeError as exc:
        raise ClientError(
            400, f"{prefix}malformed JSON at line {exc.lineno} column {exc.colno}: {exc.msg}"
        ) from None
    except ValueError as exc:  # e.g. an integer of more than 4300 digits
        raise ClientError(400, f"{prefix}invalid JSON: {exc}") from None


def parse_json_body(raw: bytes, content_type: str, *, allow_ndjson: bool) -> Any:
    """A JSON document, or (where allowed) NDJSON returned as a list of documents."""
    if content_type not in ACCEPTED_TYPES:
        raise ClientError(
            415,
            f"unsupported Content-Type {content_type!r}: send application/json"
            + (" or application/x-ndjson" if allow_ndjson else ""),
        )
    text = _decode(raw)
    if not text.strip():
        raise ClientError(400, "request body is empty")
    wrapped = False  # value: a list built here around several documents
    if allow_ndjson and content_type in NDJSON_TYPES:
        wrapped = True
        value: Any = [
            _loads(line, f"line {i}") for i, line in enumerate(text.splitlines(), 1) if line.strip()
        ]
    else:
        try:
            value = finitejson.loads(text)
        except finitejson.NonFiniteNumber as exc:
            raise ClientError(400, str(exc)) from None
        except RecursionError:
            raise ClientError(400, f"JSON is nested more than {MAX_DEPTH} levels deep") from None
        except json.JSONDecodeError as exc:
            if allow_ndjson and exc.msg == "Extra data":
                # Several documents, one per line, without an NDJSON content type.
                wrapped = True
                value = [
                    _loads(line, f"line {i}")
                    for i, line in enumerate(text.splitlines(), 1)
                    if line.strip()
                ]
            else:
                raise ClientError(
                    400, f"malformed JSON at line {exc.lineno} column {exc.colno}: {exc.msg}"
                ) from None
        except ValueError as exc:  # e.g. an integer of more than 4300 digits
            raise ClientError(400, f"invalid JSON: {exc}") from None
    _check_value(value, raw, wrapped)
    return value
