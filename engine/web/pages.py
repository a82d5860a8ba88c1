"""What every page shares: the template environment, the security headers, the session
check (sign-in redirect, scopes, CSRF), the static files and the sign-in / sign-out forms.

Pages are served by the API's app under PAGE_PREFIX. The bearer-token middleware lets
them through (engine.server.auth); this module checks the browser's session cookie
instead, against the same token set: read scope sees the pages, admin scope may change
things. With no tokens configured the pages are open, like the API.
"""

from __future__ import annotations

import functools
import logging
import mimetypes
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from engine.paths import templates_dir
from engine.server.body import ClientError, media_type, read_body
from engine.server.faults import RETRY_AFTER_SECONDS, operation_of
from engine.store.errors import StoreUnavailable
from engine.web import routes as r
from engine.web.session import LOGIN_COOKIE, OPEN_TOKEN_ID, SESSION_COOKIE, Session, Sessions

Handler = Callable[[Request], Awaitable[Response]]
log = logging.getLogger("incident_pilot")
# No inline script or style anywhere: everything comes from our own origin.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
}
MAX_FORM = 64 * 1024
STATIC_TYPES = {
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".svg": "image/svg+xml",
}


class PageError(Exception):
    """A page answered with an error page (status and a sentence for the person)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


class SignIn(Exception):
    """The request needs a session it does not have: redirect to the sign-in page."""


async def read_form(request: Request) -> dict[str, str]:
    """The fields of a posted HTML form (application/x-www-form-urlencoded, at most
    MAX_FORM bytes); read once per request."""
    cached = request.scope.get("ip_form")
    if cached is not None:
        return cached  # type: ignore[no-any-return]
    if media_type(request) != "application/x-www-form-urlencoded":
        raise PageError(415, "This form must be sent as application/x-www-form-urlencoded.")
    raw = await read_body(request, MAX_FORM)
    try:
        pairs = parse_qsl(raw.decode("utf-8"), keep_blank_values=True, max_num_fields=32)
    except (UnicodeDecodeError, ValueError):
        raise PageError(400, "This form could not be read.") from None
    form = dict(pairs)
    request.scope["ip_form"] = form
    return form


@functools.lru_cache(maxsize=4)
def environment(root: str) -> Environment:
    env = Environment(
        loader=FileSystemLoader(root),
        autoescape=select_autoescape(default=True, default_for_string=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.globals["routes"] = r
    return env


def web_dir() -> Path:
    return templates_dir() / "web"


def sessions(request: Request) -> Sessions:
    found: Sessions = request.app.state.ip.sessions
    return found


def secure_cookies(request: Request) -> bool:
    """`Secure` when the request came over TLS or the public URL is https."""
    public = str(request.app.state.ip.settings.public_url or "")
    return request.url.scheme == "https" or public.lower().startswith("https://")


def set_cookie(request: Request, response: Response, name: str, value: str, age: int) -> None:
    response.set_cookie(
        name,
        value,
        max_age=age,
        path=r.PAGE_PREFIX,
        httponly=True,
        samesite="strict",
        secure=secure_cookies(request),
    )


def current_session(request: Request) -> Session | None:
    """The request's valid session: signed, unexpired, and its token still configured."""
    state = request.app.state.ip
    session = sessions(request).read(request.cookies.get(SESSION_COOKIE))
    if session is None:
        return None
    if not state.tokens:
        return session if session.token_id == OPEN_TOKEN_ID else None
    for _, scope, token_id in state.tokens.entries:
        if token_id == session.token_id and scope == session.scope:
            return session
    return None


def render(
    request: Request,
    template: str,
    context: dict[str, Any],
    status: int = 200,
    session: Session | None = None,
) -> Response:
    env = environment(str(web_dir()))
    session = session or request.scope.get("ip_session")
    body = env.get_template(template).render(
        request=request,
        session=session,
        csrf=sessions(request).csrf(session) if session else "",
        open_mode=not request.app.state.ip.tokens,
        **context,
    )
    response = Response(body, status_code=status, media_type="text/html; charset=utf-8")
    response.headers.update(SECURITY_HEADERS)
    pending = request.scope.get("ip_new_cookie")
    if pending:
        set_cookie(
            request, response, SESSION_COOKIE, pending, int(sessions(request).ttl.total_seconds())
        )
    return response


def redirect(url: str, status: int = 303) -> Response:
    response = RedirectResponse(url, status_code=status)
    response.headers.update(SECURITY_HEADERS)
    return response


def safe_next(target: str | None) -> str:
    """Where to go after signing in: a page path of ours only (no open redirect)."""
    if (
        target
        and target.startswith(r.PAGE_PREFIX + "/")
        and "//" not in target
        and "\\" not in target
    ):
        return target
    return r.INCIDENTS_PATH


def _ensure_session(request: Request) -> Session:
    session = current_session(request)
    if session is not None:
        return session
    if request.app.state.ip.tokens:
        raise SignIn()
    # No tokens configured: the pages are open; a session still carries the CSRF nonce.
    cookie, session = sessions(request).issue("admin", OPEN_TOKEN_ID)
    request.scope["ip_new_cookie"] = cookie
    return session


def page(handler: Handler | None = None, *, admin: bool = False) -> Any:
    """Decorate a page handler: a session is required (admin scope when `admin`), a POST
    must carry the session's CSRF token, and errors become error pages."""

    def wrap(fn: Handler) -> Handler:
        @functools.wraps(fn)
        async def run(request: Request) -> Response:
            try:
                session = _ensure_session(request)
                request.scope["ip_session"] = session
                if request.method == "POST":
                    form = await read_form(request)
                    token = form.get("csrf")
                    csrf_ok = Sessions.same(sessions(request).csrf(session), str(token or ""))
                    if not csrf_ok:
                        raise PageError(
                            403,
                            "This form has expired or did not come from this site: reload the page and try again.",
                        )
                if admin and not session.admin:
                    raise PageError(403, "Signing in with an admin token is needed for this.")
                return await fn(request)
            except SignIn:
                back = request.url.path + (f"?{request.url.query}" if request.url.query else "")
                if request.method != "GET":
                    back = r.INCIDENTS_PATH
                return redirect(f"{r.LOGIN_PATH}?{urlencode({'next': back})}")
            except ClientError as exc:
                return render(request, "error.html", {"message": exc.message}, status=exc.status)
            except PageError as exc:
                return render(request, "error.html", {"message": exc.message}, status=exc.status)
            except StoreUnavailable as exc:
                # As the API: recorded for /readyz, 503 with Retry-After; a page, not JSON.
                operation = operation_of(request.method, request.url.path)
                request.app.state.ip.faults.failed(operation, exc)
                message = f"The store cannot answer right now ({exc.reason}); try again shortly."
                page = render(request, "error.html", {"message": message}, status=503)
                page.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
                return page
            except Exception:
                log.exception("page %s %s failed", request.method, request.url.path)
                message = "The server could not answer this page; its log has the details."
                return render(request, "error.html", {"message": message}, status=500)

        return run

    return wrap(handler) if handler is not None else wrap


async def login_form(
    request: Request, error: str = "", status: int = 200, next_path: str | None = None
) -> Response:
    state = request.app.state.ip
    if not state.tokens:
        return redirect(r.INCIDENTS_PATH)
    nonce = sessions(request).login_nonce()
    response = render(
        request,
        "login.html",
        {
            "error": error,
            "next": safe_next(next_path or request.query_params.get("next")),
            "login_csrf": sessions(request).login_csrf(nonce),
        },
        status=status,
    )
    set_cookie(request, response, LOGIN_COOKIE, nonce, 600)
    return response


async def login_submit(request: Request) -> Response:
    state = request.app.state.ip
    if not state.tokens:
        return redirect(r.INCIDENTS_PATH)
    form = await read_form(request)
    back = form.get("next")
    nonce = request.cookies.get(LOGIN_COOKIE, "")
    if not nonce or not Sessions.same(
        sessions(request).login_csrf(nonce), str(form.get("csrf") or "")
    ):
        return await login_form(request, "The sign-in form expired: please try again.", 403, back)
    token = str(form.get("token") or "").strip()
    granted = state.tokens.scopes_for(token) if token else set()
    if not granted:
        log.warning("page sign-in refused: unknown token", extra={"client": _client(request)})
        return await login_form(request, "That token is not valid.", 401, back)
    scope = "admin" if "admin" in granted else "read" if "read" in granted else ""
    token_id = state.tokens.token_id(token)
    if not scope:
        log.warning("page sign-in refused: token %s has no read scope", token_id)
        return await login_form(
            request, "That token has no read scope: pages need read or admin.", 403, back
        )
    log.info("page sign-in: token %s, scope %s", token_id, scope)
    cookie, _ = sessions(request).issue(scope, token_id)
    response = redirect(safe_next(str(form.get("next") or "")))
    set_cookie(
        request, response, SESSION_COOKIE, cookie, int(sessions(request).ttl.total_seconds())
    )
    response.delete_cookie(LOGIN_COOKIE, path=r.PAGE_PREFIX)
    return response


async def login(request: Request) -> Response:
    try:
        if request.method == "POST":
            return await login_submit(request)
        return await login_form(request)
    except (ClientError, PageError) as exc:
        status = exc.status
        message = exc.message
        return render(request, "error.html", {"message": message}, status=status)


@page
async def logout(request: Request) -> Response:
    response = redirect(r.LOGIN_PATH if request.app.state.ip.tokens else r.INCIDENTS_PATH)
    response.delete_cookie(SESSION_COOKIE, path=r.PAGE_PREFIX)
    return response


async def static(request: Request) -> Response:
    """The pages' CSS and JS (templates/web/static), from our own origin."""
    name = str(request.path_params["name"])
    root = web_dir() / "static"
    path = root / name
    if "/" in name or name.startswith(".") or not path.is_file():
        return Response("not found", status_code=404, media_type="text/plain")
    media = (
        STATIC_TYPES.get(path.suffix) or mimetypes.guess_type(name)[0] or "application/octet-stream"
    )
    response = Response(path.read_bytes(), media_type=media)
    response.headers.update({k: v for k, v in SECURITY_HEADERS.items() if k != "Cache-Control"})
    response.headers["Cache-Control"] = "public, max-age=3600"
    return response


async def home(request: Request) -> Response:
    return redirect(r.INCIDENTS_PATH, status=307)


def _client(request: Request) -> str:
    return request.client.host if request.client else "-"


def quoted(value: object) -> str:
    return quote(str(value), safe="")
