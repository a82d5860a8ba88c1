"""Adds the pages to the app: their routes (under PAGE_PREFIX), the rule activity they
show, and `/` sending a browser to the incidents."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.routing import Route

from engine.server.state import AppState
from engine.web import records, views
from engine.web import routes as r
from engine.web.activity import RuleActivity
from engine.web.pages import home, login, logout, static


def page_routes() -> list[Route]:
    """The pages' routes: HTML for browsers, so not part of the API's OpenAPI document."""
    p = r.PAGE_PREFIX
    routes = [
        Route("/", home, methods=["GET"]),
        Route(p, home, methods=["GET"]),
        Route(p + "/", home, methods=["GET"]),
        Route(r.LOGIN_PATH, login, methods=["GET", "POST"]),
        Route(r.LOGOUT_PATH, logout, methods=["POST"]),
        Route(r.STATIC_PREFIX + "/{name}", static, methods=["GET"]),
        Route(r.INCIDENTS_PATH, views.incidents_page, methods=["GET"]),
        Route(r.INCIDENTS_PATH + "/{id}", views.incident_page, methods=["GET"]),
        Route(r.INCIDENTS_PATH + "/{id}/resolve", views.resolve_page, methods=["POST"]),
        Route(p + "/context/{kind}/{id}", records.context_page, methods=["GET"]),
        Route(p + "/pulls/{id}/{n}", records.pull_record_page, methods=["GET"]),
        Route(p + "/tables/{table}/{key:path}", records.table_page, methods=["GET"]),
        Route(r.RULES_PATH, records.rules_page, methods=["GET"]),
        Route(r.DELIVERIES_PATH, records.deliveries_page, methods=["GET"]),
        Route(r.DELIVERIES_PATH + "/{id}/retry", records.retry_page, methods=["POST"]),
        Route(p + "/{rest:path}", records.no_such_page, methods=["GET"]),  # last: the rest
    ]
    for route in routes:
        route.include_in_schema = False
    return routes


def install_pages(app: Starlette, state: AppState) -> None:
    activity = RuleActivity()
    state.listeners.append(activity.observe)
    app.state.web_activity = activity
    app.router.routes.extend(page_routes())
