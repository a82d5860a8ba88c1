"""A small client of the server's JSON API, for the incidents command line.

Every failure is an `ApiError` whose text is one line a person can act on: the server is
down, the URL is wrong, the token is missing or lacks a scope, the incident is unknown.
Nothing here raises anything else for a network or HTTP problem.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import quote, urlsplit

import httpx

from engine import __version__

URL_ENV = "INCIDENT_PILOT_URL"
TOKEN_ENV = "INCIDENT_PILOT_API_TOKEN"
DEFAULT_URL = "http://127.0.0.1:9099"


class ApiError(Exception):
    """One line for the person at the terminal; `status` is the HTTP status (0: none)."""

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.status = status


def check_url(url: str) -> str:
    """The server's base URL without a trailing slash, or ApiError saying what is wrong."""
    text = url.strip()
    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018 - raises ValueError on a port that is not a number
    except ValueError as exc:
        raise ApiError(f"invalid server URL {url!r}: {exc}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ApiError(
            f"invalid server URL {url!r}: give http(s)://HOST[:PORT] (--url or {URL_ENV})"
        )
    if parts.query or parts.fragment:
        raise ApiError(f"invalid server URL {url!r}: no query or fragment")
    return text.rstrip("/")


def _server_error(resp: httpx.Response) -> str | None:
    """The server's own error sentence (`{"error": ...}`), if it gave one."""
    try:
        body = resp.json()
    except ValueError:
        return None
    error = body.get("error") if isinstance(body, dict) else None
    return " ".join(error.split())[:500] if isinstance(error, str) and error.strip() else None


# What the server answers for a path or method it has no route for (not a missing record).
_NO_ROUTE = ("Not Found", "Method Not Allowed")


def _text(resp: httpx.Response) -> str:
    return " ".join(resp.text.split())[:200] or resp.reason_phrase


class ApiClient:
    def __init__(self, url: str, token: str | None = None, timeout: float = 10.0) -> None:
        self.url = check_url(url)
        headers = {"User-Agent": f"incident-pilot-cli/{__version__}", "Accept": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self._http = httpx.Client(base_url=self.url, headers=headers, timeout=timeout)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # --- the calls -----------------------------------------------------------
    def list_incidents(self, filters: Mapping[str, Any]) -> dict[str, Any]:
        return self._call("GET", "/api/incidents", params=_params(filters))

    def get_incident(self, incident_id: str) -> dict[str, Any]:
        return self._call("GET", f"/api/incidents/{_seg(incident_id)}")

    def resolve_incident(self, incident_id: str, note: str | None) -> dict[str, Any]:
        body = {"note": note} if note is not None else {}
        path = f"/api/incidents/{_seg(incident_id)}/resolve"
        return self._call("POST", path, json=body)

    def list_deliveries(self, filters: Mapping[str, Any]) -> dict[str, Any]:
        return self._call("GET", "/api/deliveries", params=_params(filters))

    def retry_delivery(self, delivery_id: str) -> dict[str, Any]:
        path = f"/api/deliveries/{_seg(delivery_id)}/retry"
        return self._call("POST", path, json={})

    # --- plumbing ------------------------------------------------------------
    def _call(self, method: str, path: str, **kw: Any) -> dict[str, Any]:
        try:
            resp = self._http.request(method, path, **kw)
        except httpx.ConnectError as exc:
            raise ApiError(f"cannot reach the server at {self.url}: {_reason(exc)}") from None
        except httpx.TimeoutException:
            raise ApiError(f"the server at {self.url} did not answer in time") from None
        except httpx.HTTPError as exc:
            raise ApiError(f"request to {self.url} failed: {_reason(exc)}") from None
        status = resp.status_code
        if status < 400:
            pass
        elif status == 401:
            reason = _server_error(resp) or _text(resp)
            raise ApiError(
                f"the server refused the request ({reason}): give a token with --token or "
                f"{TOKEN_ENV}",
                401,
            )
        elif status == 403:
            raise ApiError(f"not allowed: {_server_error(resp) or _text(resp)}", 403)
        elif status >= 500:
            raise ApiError(
                f"the server answered {status}: {_server_error(resp) or _text(resp)}", status
            )
        elif (message := _server_error(resp)) not in (None, *_NO_ROUTE):
            raise ApiError(str(message), status)  # "no incident inc-...", "limit must be ..."
        elif status in (404, 405):
            raise ApiError(
                f"the server at {self.url} has no {method} {path.split('?')[0]} "
                "(not incident-pilot, or an older version)",
                status,
            )
        else:
            raise ApiError(f"the server answered {status}: {_text(resp)}", status)
        try:
            data = resp.json()
        except ValueError:
            data = None
        if not isinstance(data, dict):
            raise ApiError(f"the server at {self.url} did not answer with incident-pilot's JSON")
        return data


def _seg(value: str) -> str:
    return quote(str(value), safe="")


def _params(filters: Mapping[str, Any]) -> dict[str, str]:
    return {k: str(v) for k, v in filters.items() if v is not None and v != ""}


def _reason(exc: Exception) -> str:
    text = str(exc).strip() or type(exc).__name__
    # httpx wraps OS errors as "[Errno 111] Connection refused": keep the words.
    return text.split("] ", 1)[-1] if text.startswith("[Errno") else text
