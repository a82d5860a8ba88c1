"""GET /api/pulls/{id} and /api/pulls/{id}/{n}: what a pull rule asked and got (the
evidence path `pulls/<id>/<n>` of its findings; engine.pull)."""

from __future__ import annotations

from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from engine.server.body import ClientError
from engine.store.base import Pull
from engine.timeutil import format_ts


def pull_to_dict(pull: Pull) -> dict[str, Any]:
    answer = dict(pull.answer)
    answer["records"] = [
        {"path": f"{pull.path}/{n}", **rec} for n, rec in enumerate(answer.get("records") or [])
    ]
    return {
        "id": pull.id,
        "path": pull.path,
        "source": pull.source,
        "url": pull.url,
        "query": pull.query,
        "start": format_ts(pull.start),
        "end": format_ts(pull.end),
        "step": pull.step,
        "link": pull.link,
        "created_at": format_ts(pull.created_at) if pull.created_at else None,
        "answer": answer,
    }


def _digits(request: Request, name: str) -> str:
    raw = str(request.path_params[name])
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 19:
        raise ClientError(400, f"invalid {name}: a whole number", name)
    return raw


async def _pull(request: Request) -> Pull:
    pull_id = _digits(request, "id")
    pull = await run_in_threadpool(request.app.state.ip.store.get_pull, pull_id)
    if pull is None:
        raise ClientError(404, f"no pull {pull_id}", "id")
    return pull  # type: ignore[no-any-return]


async def get_pull(request: Request) -> Response:
    return JSONResponse(pull_to_dict(await _pull(request)))


async def get_pull_record(request: Request) -> Response:
    n = int(_digits(request, "n"))
    whole = pull_to_dict(await _pull(request))
    recs = whole["answer"]["records"]
    if n >= len(recs):
        raise ClientError(404, f"pull {whole['id']} has no record {n}", "n")
    meta = {k: whole[k] for k in ("source", "query", "start", "end", "step", "link")}
    return JSONResponse({**recs[n], "pull": {"path": whole["path"], **meta}})


def pull_routes() -> list[Route]:
    return [
        Route("/api/pulls/{id}", get_pull, methods=["GET"]),
        Route("/api/pulls/{id}/{n}", get_pull_record, methods=["GET"]),
    ]


def _param(name: str, description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "description": description,
        "schema": {"type": "string", "pattern": "^[0-9]{1,19}$"},
    }


def pull_operations() -> dict[tuple[str, str], dict[str, Any]]:
    obj = {
        "description": "The pull",
        "content": {"application/json": {"schema": {"type": "object"}}},
    }
    errors = {str(c): {"$ref": f"#/components/responses/E{c}"} for c in (400, 404, 401, 403)}
    return {
        ("get", "/api/pulls/{id}"): {
            "summary": "A pull rule's query, time range, link and answer excerpt (scope read)",
            "parameters": [_param("id", "a pull id")],
            "responses": {"200": obj, **errors},
        },
        ("get", "/api/pulls/{id}/{n}"): {
            "summary": "One record (series or log line) of a pull's answer (scope read)",
            "parameters": [_param("id", "a pull id"), _param("n", "the record's position")],
            "responses": {"200": {**obj, "description": "The record"}, **errors},
        },
    }
