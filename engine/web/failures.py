"""What an exception a handler did not catch answers: one mapping for Quart's error
handlers and for the MCP lane, so a failure answers the same on either path."""

from __future__ import annotations

import logging
from typing import Final

from asyncpg.exceptions import DataError as PgDataError
from quart import Response
from tortoise.exceptions import BaseORMException, DoesNotExist, IntegrityError, ValidationError
from werkzeug.exceptions import HTTPException

from engine.web.responses import ApiError, error_response

__all__ = ["failure_response"]

log = logging.getLogger("policygate")

_HTTP_CODES: Final = {400: "bad_request", 404: "not_found", 405: "method_not_allowed", 413: "payload_too_large"}


async def failure_response(err: Exception) -> Response:
    """A refusal a handler raised, a store or dependency failure (503), or a bug (500,
    logged with its traceback, answered without it)."""
    from redis.exceptions import RedisError

    if isinstance(err, ApiError):
        return error_response(err.status, err.code, err.message, details=err.details, headers=err.headers)
    if isinstance(err, HTTPException):
        return _http_error(err)
    if isinstance(err, DoesNotExist):
        return error_response(404, "not_found", "no such item")
    if isinstance(err, IntegrityError):
        return error_response(409, "conflict", "the change conflicts with the stored data")
    if isinstance(err, ValidationError):
        # The ORM holds a value to its column before any query (an id longer than ids
        # are): the request's fault, unless the gateway wrote the value itself, hence the
        # log line. Its message would echo the value, so neither shows it.
        log.warning("value refused by the store's field rules: %s", type(err).__name__)
        return error_response(400, "invalid_value", "a value in the request is too long or out of range for the store")
    if isinstance(err, BaseORMException) and isinstance(err.__cause__, PgDataError):
        # PostgreSQL refuses a value no text or number column can hold (a NUL character,
        # an integer out of range): the request's fault, where SQLite would just not match.
        return error_response(400, "invalid_value", "a value in the request holds a NUL character or is out of range")
    if isinstance(err, BaseORMException):
        log.error("store error: %s", type(err).__name__)
        return error_response(503, "store_unavailable", "the store cannot answer right now")
    if isinstance(err, (ConnectionError, OSError, RedisError)):
        log.error("dependency unavailable: %s", type(err).__name__)
        return error_response(503, "unavailable", "a dependency of the gateway is unavailable")
    log.exception("unexpected error", exc_info=err)
    return error_response(500, "internal_error", "the gateway failed to handle this request")


def _http_error(err: HTTPException) -> Response:
    status = err.code or 500
    code = _HTTP_CODES.get(status, "http_error")
    return error_response(status, code, (err.description or code).rstrip(".").lower()[:200])
