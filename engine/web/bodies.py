"""Request bodies: JSON objects checked with Cerberus before a handler touches them.

A body that is not JSON is a 400; one that is JSON but does not fit the endpoint's schema
is a 422 listing every field that is wrong. Unknown fields are refused rather than
ignored, so a misspelt security setting (`ip_restriction`) cannot silently do nothing.

A body must also say it is JSON. A browser sends a cross-site form (`text/plain`,
`application/x-www-form-urlencoded`) without asking first, with whatever credentials it
holds for the gateway: Basic credentials, or the cookie of an authenticating proxy. A
`text/plain` form can spell a JSON object; only its type gives it away.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Final, cast

from quart import request

from engine.json_bytes import leaves, loads
from engine.json_texts import holds_nul
from engine.validation import Validator
from engine.web.responses import ApiError

__all__ = ["read_body"]

_INT64: Final = (-(2**63), 2**63 - 1)
_JSON_TYPE: Final = re.compile(r"application/(?:[\w.-]+\+)?json\s*(?:;.*)?", re.IGNORECASE | re.DOTALL)


async def read_body(schema: Mapping[str, Any]) -> dict[str, Any]:
    """The validated, normalized body.

    Raises:
        ApiError: 415 `unsupported_media_type`, 400 `invalid_json` or 422 `invalid_body`.
    """
    raw = cast(bytes, await request.get_data(as_text=False))
    if raw and not _JSON_TYPE.fullmatch(request.headers.get("Content-Type", "")):
        raise ApiError(415, "unsupported_media_type", "the request body must be sent as `application/json`")
    try:
        data = loads(raw or b"{}")
    except (ValueError, UnicodeDecodeError, RecursionError) as err:
        raise ApiError(400, "invalid_json", "the request body is not valid JSON") from err
    if not isinstance(data, dict):
        raise ApiError(422, "invalid_body", "the request body must be a JSON object")
    if _holds_wide_integer(data):  # JSON, but the store (orjson) cannot write it
        raise ApiError(422, "invalid_body", "an integer in the body is outside the signed 64-bit range")
    if b"\\u0000" in raw and holds_nul(data):  # JSON writes a NUL only as this escape; refused on every backend
        raise ApiError(422, "invalid_body", "a string in the body holds a NUL character")
    validator = Validator(dict(schema), allow_unknown=False)
    if not validator.validate(data):
        details = {field: _flatten(errors) for field, errors in sorted(validator.errors.items())}
        first = next(iter(details.items()))
        raise ApiError(422, "invalid_body", f"`{first[0]}`: {first[1]}", details=details)
    document: dict[str, Any] = validator.document
    return document


def _flatten(errors: Any) -> str:
    if isinstance(errors, list):
        return "; ".join(_flatten(e) for e in errors)
    if isinstance(errors, dict):
        return "; ".join(f"{k}: {_flatten(v)}" for k, v in errors.items())
    return str(errors)


def _holds_wide_integer(value: Any) -> bool:
    return any(isinstance(item, int) and not _INT64[0] <= item <= _INT64[1] for item in leaves(value))
