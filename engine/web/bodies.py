"""Request bodies: JSON objects checked with Cerberus before a handler touches them.

A body that is not JSON is a 400; one that is JSON but does not fit the endpoint's schema
is a 422 listing every field that is wrong. Unknown fields are refused rather than
ignored, so a misspelt security setting (`ip_restriction`) cannot silently do nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, cast

from quart import request

from engine.json_bytes import loads
from engine.json_texts import holds_nul
from engine.validation import Validator
from engine.web.responses import ApiError

__all__ = ["read_body"]


async def read_body(schema: Mapping[str, Any]) -> dict[str, Any]:
    """The validated, normalized body.

    Raises:
        ApiError: 400 `invalid_json` or 422 `invalid_body`.
    """
    raw = cast(bytes, await request.get_data(as_text=False))
    try:
        data = loads(raw or b"{}")
    except (ValueError, UnicodeDecodeError, RecursionError) as err:
        raise ApiError(400, "invalid_json", "the request body is not valid JSON") from err
    if not isinstance(data, dict):
        raise ApiError(422, "invalid_body", "the request body must be a JSON object")
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
