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
        refusal = self._refusal(resp, method, path)
        if refusal is not None:
            raise refusal
        try:
            data = resp.json()
        except ValueError:
            data = None
        if not isinstance(data, dict):
            raise ApiError(f"the server at {self.url} did not answer with incident-pilot's JSON")
        return data

    def _refusal(self, resp: httpx.Response, method: str, path: str) -> ApiError | None:
        """What a non-2xx answer means for the person at the terminal; None for a 2xx."""
        status = resp.status_code
        if status < 300:
            return None
        if status < 400:
            where = resp.headers.get("Location", "elsewhere")
            return ApiError(f"the server redirected to {where}: give that address as --url", status)
        message = _server_error(resp)
        if status == 401:
            return ApiError(
                f"the server refused the request ({message or _text(resp)}): give a token "
                f"with --token or {TOKEN_ENV}",
                status,
            )
        if status == 403:
            return ApiError(f"not allowed: {message or _text(resp)}", status)
        if status < 500 and message is not None and message not in _NO_ROUTE:
            return ApiError(message, status)  # "no incident inc-...", "limit must be ..."
        if status in (404, 405):
            return ApiError(
                f"the server at {self.url} has no {method} {path} "
                "(not incident-pilot, or an older version)",
                status,
            )
        return ApiError(f"the server answered {status}: {message or _text(resp)}", status)


def _seg(value: str) -> str:
    return quote(str(value), safe="")


def _params(filters: Mapping[str, Any]) -> dict[str, str]:
    return {k: str(v) for k, v in filters.items() if v is not None and v != ""}


def _reason(exc: Exception) -> str:
    text = str(exc).strip() or type(exc).__name__
    # httpx wraps OS errors as "[Errno 111] Connection refused": keep the words.
    return text.split("] ", 1)[-1] if text.startswith("[Errno") else text
