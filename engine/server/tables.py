"""GET /api/tables, /api/tables/{table} and /api/tables/{table}/{key}: the lookup tables
the rules join (engine.rules.tables). `tables/<table>/<key>` is the evidence path of the
entry that linked a finding's record, and answers here with the entry and its file:line."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from engine.rules.tables import Table
from engine.server.body import ClientError

MAX_KEY = 253  # a DNS name's length: service names and alertnames fit


def table_summary(table: Table) -> dict[str, Any]:
    return {
        "name": table.name,
        "path": f"tables/{table.name}",
        "kind": table.kind,
        "file": table.file,
        "description": table.description,
        "entries": len(table.entries),
    }


def _table(request: Request) -> Table:
    name = str(request.path_params["table"])
    tables = request.app.state.ip.ruleset.tables
    table = tables.get(name)
    if table is None:
        known = ", ".join(sorted(tables)) or "none"
        raise ClientError(404, f"no table {name!r} (loaded: {known})", "table")
    return table  # type: ignore[no-any-return]


async def list_tables(request: Request) -> Response:
    tables = request.app.state.ip.ruleset.tables
    return JSONResponse({"tables": [table_summary(tables[n]) for n in sorted(tables)]})


async def get_table(request: Request) -> Response:
    table = _table(request)
    entries = [table.entries[k].to_dict() for k in sorted(table.entries)]
    return JSONResponse({**table_summary(table), "entries": entries})


async def get_entry(request: Request) -> Response:
    table = _table(request)
    key = str(request.path_params["key"])
    if not key or len(key) > MAX_KEY:
        raise ClientError(400, f"invalid key: 1-{MAX_KEY} characters", "key")
    entry = table.get(key)
    if entry is None:
        raise ClientError(404, f"table {table.name!r} has no entry {key!r}", "key")
    return JSONResponse(entry.to_dict())


def table_routes() -> list[Route]:
    return [
        Route("/api/tables", list_tables, methods=["GET"]),
        Route("/api/tables/{table}", get_table, methods=["GET"]),
        Route("/api/tables/{table}/{key}", get_entry, methods=["GET"]),
    ]


def _param(name: str, description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "description": description,
        "schema": {"type": "string", "minLength": 1, "maxLength": MAX_KEY},
    }


ENTRY: dict[str, Any] = {
    "type": "object",
    "required": ["table", "key", "path", "value", "file", "line"],
    "properties": {
        "table": {"type": "string"},
        "key": {"type": "string"},
        "path": {"type": "string", "description": "tables/<table>/<key>"},
        "value": {"description": "graph: the keys it lists; keyed: its fields"},
        "file": {"type": "string"},
        "line": {"type": "integer", "description": "the entry's line in the file"},
    },
}
SUMMARY: dict[str, Any] = {
    "type": "object",
    "required": ["name", "path", "kind", "file", "entries"],
    "properties": {
        "name": {"type": "string"},
        "path": {"type": "string"},
        "kind": {"type": "string", "enum": ["graph", "keyed"]},
        "file": {"type": "string"},
        "description": {"type": "string"},
        "entries": {"type": "integer"},
    },
}


def table_operations() -> dict[tuple[str, str], dict[str, Any]]:
    def ok(description: str, schema: dict[str, Any]) -> dict[str, Any]:
        return {"description": description, "content": {"application/json": {"schema": schema}}}

    errors = {str(c): {"$ref": f"#/components/responses/E{c}"} for c in (401, 403, 404)}
    whole = {
        **SUMMARY,
        "properties": {**SUMMARY["properties"], "entries": {"type": "array", "items": ENTRY}},
    }
    listing = {"type": "object", "properties": {"tables": {"type": "array", "items": SUMMARY}}}
    return {
        ("get", "/api/tables"): {
            "summary": "The lookup tables the rules join (scope read)",
            "responses": {"200": ok("The tables", listing), **errors},
        },
        ("get", "/api/tables/{table}"): {
            "summary": "One lookup table with every entry (scope read)",
            "parameters": [_param("table", "a table name")],
            "responses": {"200": ok("The table", whole), **errors},
        },
        ("get", "/api/tables/{table}/{key}"): {
            "summary": "One entry of a table and its file:line: the evidence path tables/<table>/<key> (scope read)",
            "parameters": [_param("table", "a table name"), _param("key", "the entry's key")],
            "responses": {
                "200": ok("The entry", ENTRY),
                "400": {"$ref": "#/components/responses/E400"},
                **errors,
            },
        },
    }
