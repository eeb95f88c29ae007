"""`POST /tools/{id}/invoke`: run a tool over REST, through exactly the MCP call path.

Same visibility (an invisible tool is 404), same argument and result checks, same
refusal of a changed upstream tool; JSON-RPC failures become HTTP statuses with the
gateway's stable codes. A tool the caller can see whose upstream is down answers 409
`not_available`, as `GET /tools/{id}` shows it unavailable rather than gone.
"""

from __future__ import annotations

from typing import Final

from quart import Blueprint, Response, g, jsonify

from engine.store.catalog import Tool
from engine.web.bodies import read_body
from engine.web.catalog import visible
from engine.web.mcp_methods import McpContext, RpcError, call_tool, find_tool
from engine.web.responses import ApiError

__all__ = ["blueprint"]

blueprint = Blueprint("invoke", __name__)

_BODY: Final = {"arguments": {"type": "dict", "default": {}}}
_STATUS: Final = {
    "content_blocked": 422,
    "content_pii": 422,
    "content_too_large": 413,
    "tool_changed": 409,
    "not_available": 409,
    "upstream_unavailable": 503,
    "upstream_address_refused": 403,
    "upstream_timeout": 503,
    "upstream_protocol": 503,
    "upstream_error": 422,
    "rate_limited": 429,
}


@blueprint.post("/tools/<tool_id>/invoke")
async def invoke(tool_id: str) -> Response:
    """Call a tool with `{"arguments": {...}}`; answers the tool's result."""
    body = await read_body(_BODY)
    tool = await find_tool(McpContext(g.decision, None, "2025-11-25"), id=tool_id)
    if tool is None:
        if await visible(Tool).filter(id=tool_id).exists():
            raise ApiError(409, "not_available", f"tool `{tool_id}` is unavailable: its upstream cannot be reached")
        raise ApiError(404, "not_found", f"no tool `{tool_id}`")
    try:
        result = await call_tool(tool, body["arguments"])
    except RpcError as err:
        data = err.data or {}
        code = str(data.get("code", "upstream_error"))
        retry = {"Retry-After": str(data["retryAfter"])} if "retryAfter" in data else None
        raise ApiError(_STATUS.get(code, 503), code, err.message, headers=retry) from err
    return jsonify(result)
