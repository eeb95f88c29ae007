"""Every error the gateway answers with has one shape and a stable code.

    {"error": {"code": "token_expired", "message": "...", "request_id": "..."}}

`ApiError` is raised by handlers for refusals they discover themselves (a duplicate
name, a body that does not validate); the guard builds denials from decisions. Neither
ever carries a token, key or password.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from quart import Response, g, jsonify

__all__ = ["ApiError", "created", "error_response"]


class ApiError(Exception):
    """A refusal with its HTTP status and stable code."""

    def __init__(
        self, status: int, code: str, message: str, *, details: Any = None, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details
        self.headers = headers


def error_response(
    status: int, code: str, message: str, *, details: Any = None, headers: Mapping[str, str] | None = None
) -> Response:
    body: dict[str, Any] = {"code": code, "message": message, "request_id": g.get("request_id", "")}
    if details is not None:
        body["details"] = details
    response = jsonify({"error": body})
    response.status_code = status
    if status == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="policygate"'
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def created(body: Any) -> Response:
    """201 with `body` as JSON: what every successful create answers."""
    response = jsonify(body)
    response.status_code = 201
    return response
