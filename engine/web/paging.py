"""Keyset pages for the REST listings: `?limit=` and the `cursor` the previous page gave.

A cursor is the sort key of the last item shown, so a page never repeats or skips an item
when rows are added or removed between requests, and a deep page costs what the first
does. Cursors are opaque to clients (URL-safe base64) and checked on the way back in: a
made-up one is a 400, never a query error.
"""

from __future__ import annotations

import base64
import binascii

from engine.web.responses import ApiError

__all__ = ["cursor_for", "page"]


def page(limit_text: str | None, cursor: str | None, default: int, most: int) -> tuple[int, str | None]:
    """The page size asked for and the sort key to continue after, if any."""
    try:
        limit = int(limit_text) if limit_text is not None else default
        after = base64.b64decode(cursor, altchars=b"-_", validate=True).decode() if cursor else None
    except (ValueError, binascii.Error, UnicodeDecodeError) as err:
        raise ApiError(400, "bad_request", "`limit` must be a number and `cursor` one this API returned") from err
    if not 1 <= limit <= most:
        raise ApiError(400, "bad_request", f"`limit` must be between 1 and {most}")
    return limit, after


def cursor_for(key: str) -> str:
    """The cursor that continues after the item whose sort key is `key`."""
    return base64.urlsafe_b64encode(key.encode()).decode()
