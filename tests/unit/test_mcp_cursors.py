"""An MCP cursor is only ever one the gateway made: an offset in digits, base64 encoded."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from engine.web.mcp_methods import RpcError, _page, _paged


def _cursor(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def test_the_cursor_of_a_page_starts_the_next() -> None:
    first = _paged(list(range(250)), 0, "items", lambda i: i)
    assert _page({"cursor": first["nextCursor"]}) == len(first["items"])
    assert _page({}) == 0


@pytest.mark.parametrize("cursor", [_cursor("-1"), _cursor(" 1"), _cursor("1_0"), _cursor("²"), _cursor(""), "%%%", 5])
def test_anything_else_is_an_invalid_cursor(cursor: Any) -> None:
    with pytest.raises(RpcError) as caught:
        _page({"cursor": cursor})
    assert caught.value.body()["code"] == -32602
