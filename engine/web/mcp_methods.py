"""The MCP methods the gateway serves, over the catalog the caller may see.

Lists are the visible, available items (restricted to a virtual server's own items on
its endpoint). `tools/list` shows only tools `tools/call` would run: without
`tools.execute` it is empty. Calls, reads and prompt renders are forwarded to the
item's upstream with the gateway's credentials; arguments are checked as `tool_args`
before they leave, results as `tool_result` and resource contents as `resource` before
they come back, redacted or refused as the policy says.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from typing import Any, Final

from quart import g

from engine import __version__
from engine.decide import PUBLIC_ONLY, Decision
from engine.federation.upstream import Answerer, Relay, UpstreamError
from engine.store.catalog import Server, Upstream
from engine.store.queries import visible_rows
from engine.uri_templates import matches
from engine.web.gateways import pooled_client, upstream_client
from engine.web.guard import charge_tool
from engine.web.inspection import ContentRefused, check_json, check_text, sanitize_markup
from engine.web.state import gateway
from engine.web.upstream_answers import checked_answer

__all__ = ["METHODS", "McpContext", "RpcError", "call_tool", "find_tool"]

PAGE: Final = 100


class RpcError(Exception):
    """A JSON-RPC error; `data.code` is the gateway's stable string code."""

    def __init__(self, code: int, message: str, data: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.data = data

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.data is not None:
            error["data"] = self.data
        return error


UPSTREAM_CODES: Final = {
    "upstream_unavailable": -32001,
    "upstream_address_refused": -32001,
    "upstream_timeout": -32002,
    "upstream_protocol": -32003,
}


@dataclass(frozen=True, slots=True)
class McpContext:
    decision: Decision
    server: Server | None
    version: str
    relay: Relay | None = None
    """Where upstream progress and log notifications go, when the client streams."""
    ask: Answerer | None = None
    """Who answers the upstream's own requests (sampling, elicitation), when the client streams."""


async def _rows(
    ctx: McpContext, table: str, columns: tuple[str, ...], field: str, **where: Any
) -> list[dict[str, Any]]:
    """Visible, available rows of `table` (within the virtual server, on its endpoint)."""
    seen = ctx.decision.visibility or PUBLIC_ONLY
    reach = seen.reach
    user = g.get("user")
    owner = user.email if user is not None and seen.sees_own_private else None
    ids = list(getattr(ctx.server, field)) if ctx.server is not None else None
    # Look-ups of one item read on this thread; listings do not (see engine.store.reading).
    reader = gateway().reader if "name" in where or "uri" in where else None
    return await visible_rows(
        table,
        columns,
        unrestricted=reach is None,
        teams=sorted(reach or ()),
        owner=owner,
        where=where,
        ids=ids,
        reader=reader,
    )


_TOOL: Final = ("id", "name", "description", "input_schema", "upstream_id", "upstream_name", "changed")
_RESOURCE: Final = ("id", "name", "description", "uri", "mime_type", "content", "template", "upstream_id")
_PROMPT: Final = ("id", "name", "description", "template", "arguments", "upstream_id", "upstream_name")


_OFFSET: Final = re.compile(r"[0-9]{1,9}")


def _page(params: dict[str, Any]) -> int:
    """Where the page starts: a cursor is only ever one `_paged` made, an offset in digits."""
    cursor = params.get("cursor")
    if cursor is None:
        return 0
    try:
        offset = base64.b64decode(cursor, validate=True).decode("ascii") if isinstance(cursor, str) else ""
    except (ValueError, binascii.Error) as err:
        raise RpcError(-32602, "invalid cursor") from err
    if not _OFFSET.fullmatch(offset):
        raise RpcError(-32602, "invalid cursor")
    return int(offset)


def _paged(items: list[Any], start: int, key: str, render: Any) -> dict[str, Any]:
    page = items[start : start + PAGE]
    result: dict[str, Any] = {key: [render(i) for i in page]}
    if start + PAGE < len(items):
        result["nextCursor"] = base64.b64encode(str(start + PAGE).encode()).decode()
    return result


def _refused(err: ContentRefused) -> RpcError:
    return RpcError(-32010 if err.status == 422 else -32011, err.message, {"code": err.code})


async def initialize(ctx: McpContext, params: dict[str, Any]) -> dict[str, Any]:
    return {
        "protocolVersion": ctx.version,
        "capabilities": {
            "tools": {"listChanged": True},
            "resources": {"listChanged": True, "subscribe": False},
            "prompts": {"listChanged": True},
            "logging": {},
            "completions": {},
        },
        "serverInfo": {"name": "policygate", "version": __version__},
        "instructions": "Tools, resources and prompts of the PolicyGate catalog that your token may use.",
    }


async def ping(ctx: McpContext, params: dict[str, Any]) -> dict[str, Any]:
    return {}


async def tools_list(ctx: McpContext, params: dict[str, Any]) -> dict[str, Any]:
    start = _page(params)
    if "tools.execute" not in ctx.decision.permissions:
        return {"tools": []}
    rows = await _rows(ctx, "tools", _TOOL, "tool_ids")
    if g.snapshot.content.tool_changes == "block":
        rows = [row for row in rows if not row["changed"]]  # `tools/call` would refuse them
    return _paged(
        rows,
        start,
        "tools",
        lambda t: {"name": t["name"], "description": t["description"], "inputSchema": t["input_schema"]},
    )


async def _tool(ctx: McpContext, name: Any) -> dict[str, Any]:
    if not isinstance(name, str):
        raise RpcError(-32602, "`name` must be a string")
    found = await _rows(ctx, "tools", _TOOL, "tool_ids", name=name)
    if not found:
        raise RpcError(-32602, f"Unknown tool: {name}", {"code": "not_found"})
    return found[0]


async def tools_call(ctx: McpContext, params: dict[str, Any]) -> dict[str, Any]:
    tool = await _tool(ctx, params.get("name"))
    arguments = params.get("arguments") or {}
    if not isinstance(arguments, dict):
        raise RpcError(-32602, "`arguments` must be an object")
    meta = params.get("_meta")
    progress = meta.get("progressToken") if isinstance(meta, dict) else None
    if progress is not None and not (isinstance(progress, int) or (isinstance(progress, str) and len(progress) <= 256)):
        # Forwarded outside the checked arguments: an opaque handle, and a short one.
        raise RpcError(-32602, "`_meta.progressToken` must be a number or a string of at most 256 characters")
    return await call_tool(tool, arguments, relay=ctx.relay, ask=ctx.ask, progress_token=progress)


async def call_tool(
    tool: dict[str, Any],
    arguments: dict[str, Any],
    *,
    relay: Relay | None = None,
    ask: Answerer | None = None,
    progress_token: int | str | None = None,
) -> dict[str, Any]:
    """Check, forward and check again: the one way a tool is run, over MCP or REST."""
    limited = await charge_tool(gateway(), g.snapshot, g.ctx.now, tool["id"])
    if limited is not None:
        (_, _, message), retry_after = limited
        raise RpcError(-32014, message, {"code": "rate_limited", "retryAfter": retry_after})
    if tool["changed"] and g.snapshot.content.tool_changes == "block":
        message = f"tool `{tool['name']}` changed upstream since it was approved"
        raise RpcError(-32012, message, {"code": "tool_changed"})
    forwarded: dict[str, Any] = {
        "name": tool["upstream_name"],
        "arguments": _checked_json("tool_args", arguments, "arguments"),
    }
    if progress_token is not None:
        forwarded["_meta"] = {"progressToken": progress_token}
    notes = _checked_notes(relay) if relay is not None else None
    answerer = _checked_answers(ask) if ask is not None else None
    result = await _forward(tool["upstream_id"], "tools/call", forwarded, notes, answerer)
    return _checked_answer(result, "content", "tool_result")


def _checked_json(context: str, value: Any, field: str) -> Any:
    try:
        return check_json(context, value, field=field)
    except ContentRefused as err:
        raise _refused(err) from err


def _checked_text(context: str, text: str, field: str) -> str:
    try:
        return check_text(context, text, field=field)
    except ContentRefused as err:
        raise _refused(err) from err


_RELAYED: Final = frozenset({"notifications/progress", "notifications/message"})


def _checked_notes(relay: Relay) -> Relay:
    """Pass on progress and log notifications whose content the policy accepts, redacted
    where the policy redacts tool results."""

    async def checked(note: dict[str, Any]) -> None:
        if note.get("method") not in _RELAYED:
            return
        params = note.get("params") if isinstance(note.get("params"), dict) else {}
        try:
            params = _checked_json("tool_result", params, "notification")
        except RpcError:
            return  # logged by the pipeline; a refused note is simply not passed on
        await relay({"jsonrpc": "2.0", "method": note["method"], "params": params})

    return checked


_ASKED: Final = frozenset({"sampling/createMessage", "elicitation/create"})


def _checked_answers(ask: Answerer) -> Answerer:
    """Put the upstream's sampling and elicitation requests to the client, both ways checked.

    What the upstream asks is upstream output, judged like a tool result; what the client
    answers goes upstream, judged like tool arguments. A refusal, on either side, becomes
    the error the upstream receives; the refused text is never relayed.
    """

    async def checked(asked: dict[str, Any]) -> dict[str, Any]:
        if asked.get("method") not in _ASKED:
            return {"error": {"code": -32601, "message": f"Method not found: {asked.get('method')}"}}
        params = asked.get("params") if isinstance(asked.get("params"), dict) else {}
        try:
            params = _checked_json("tool_result", params, "request")
            answered = await ask({"method": asked["method"], "params": params})
            answer: dict[str, Any] = _checked_json("tool_args", answered, "answer")
        except RpcError as err:
            return {"error": err.body()}
        return answer

    return checked


async def find_tool(ctx: McpContext, **where: Any) -> dict[str, Any] | None:
    found = await _rows(ctx, "tools", _TOOL, "tool_ids", **where)
    return found[0] if found else None


_ANSWERED_AS: Final = {"tools/call": "tool_result", "resources/read": "resource", "prompts/get": "prompt"}
"""The content context of what each forwarded method returns."""


async def _forward(
    upstream_id: str | None,
    method: str,
    params: dict[str, Any],
    relay: Relay | None = None,
    ask: Answerer | None = None,
) -> dict[str, Any]:
    """The upstream's result; its error message is upstream output as well, checked in
    the context of the result it stands in for."""
    if upstream_id is None:
        raise RpcError(-32013, "this item has no upstream to serve it", {"code": "not_available"})
    gw = gateway()
    client = pooled_client(gw, upstream_id)
    if client is None:
        row = await Upstream.filter(id=upstream_id).first()
        if row is None:
            raise RpcError(-32013, "this item's upstream is gone", {"code": "not_available"})
        client = upstream_client(gw, row)
    try:
        result = await client.request(method, params, on_message=relay, on_request=ask)
    except UpstreamError as err:
        if err.code == "upstream_error":
            message = _checked_text(_ANSWERED_AS[method], err.message, "error")
            raise RpcError(int(err.rpc_code or -32603), message, {"code": "upstream_error"}) from err
        raise RpcError(UPSTREAM_CODES.get(err.code, -32003), err.message, {"code": err.code}) from err
    if not isinstance(result, dict):
        raise RpcError(-32003, "the upstream's result is not an object", {"code": "upstream_protocol"})
    return result


def _checked_answer(result: dict[str, Any], key: str, context: str) -> dict[str, Any]:
    try:
        return checked_answer(result, key, context)
    except ContentRefused as err:
        raise _refused(err) from err


def _resource(r: dict[str, Any]) -> dict[str, Any]:
    return {"uri": r["uri"], "name": r["name"], "description": r["description"], "mimeType": r["mime_type"]}


async def resources_list(ctx: McpContext, params: dict[str, Any]) -> dict[str, Any]:
    start = _page(params)
    rows = await _rows(ctx, "resources", _RESOURCE, "resource_ids", template=False)
    return _paged(rows, start, "resources", _resource)


async def resource_templates_list(ctx: McpContext, params: dict[str, Any]) -> dict[str, Any]:
    start = _page(params)
    rows = await _rows(ctx, "resources", _RESOURCE, "resource_ids", template=True)
    return _paged(
        rows,
        start,
        "resourceTemplates",
        lambda r: {
            "uriTemplate": r["uri"],
            "name": r["name"],
            "description": r["description"],
            "mimeType": r["mime_type"],
        },
    )


async def resources_read(ctx: McpContext, params: dict[str, Any]) -> dict[str, Any]:
    uri = params.get("uri")
    if not isinstance(uri, str):
        raise RpcError(-32602, "`uri` must be a string")
    exact = await _rows(ctx, "resources", _RESOURCE, "resource_ids", uri=uri, template=False)
    templates = [] if exact else await _rows(ctx, "resources", _RESOURCE, "resource_ids", template=True)
    found = exact[0] if exact else next((t for t in templates if matches(t["uri"], uri)), None)
    if found is None:
        raise RpcError(-32002, f"Resource not found: {uri}", {"code": "not_found", "uri": uri})
    if found["upstream_id"] is None:
        mime = found["mime_type"]
        text = _checked_text("resource", found["content"], "contents")
        served = sanitize_markup(mime, text)
        if served != text:  # sanitizing can join text that passed into text that would not
            served = _checked_text("resource", served, "contents")
        return {"contents": [{"uri": uri, "mimeType": mime, "text": served}]}
    if not exact:
        # The template's variables were filled in by the client: arguments, in effect.
        uri = _checked_text("tool_args", uri, "uri")
    result = await _forward(found["upstream_id"], "resources/read", {"uri": uri})
    return _checked_answer(result, "contents", "resource")


async def prompts_list(ctx: McpContext, params: dict[str, Any]) -> dict[str, Any]:
    start = _page(params)
    rows = await _rows(ctx, "prompts", _PROMPT, "prompt_ids")
    return _paged(
        rows,
        start,
        "prompts",
        lambda p: {"name": p["name"], "description": p["description"], "arguments": p["arguments"]},
    )


_PLACEHOLDER: Final = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")


async def prompts_get(ctx: McpContext, params: dict[str, Any]) -> dict[str, Any]:
    name = params.get("name")
    arguments = params.get("arguments") or {}
    if not isinstance(name, str) or not isinstance(arguments, dict):
        raise RpcError(-32602, "`name` must be a string and `arguments` an object")
    found = await _rows(ctx, "prompts", _PROMPT, "prompt_ids", name=name)
    if not found:
        raise RpcError(-32602, f"Unknown prompt: {name}", {"code": "not_found"})
    prompt = found[0]
    arguments = _checked_json("prompt", arguments, "arguments")
    if prompt["upstream_id"] is not None:
        forwarded = {"name": prompt["upstream_name"], "arguments": {k: str(v) for k, v in arguments.items()}}
        result = await _forward(prompt["upstream_id"], "prompts/get", forwarded)
        return _checked_answer(result, "messages", "prompt")
    missing = [a["name"] for a in prompt["arguments"] if a.get("required") and a.get("name") not in arguments]
    if missing:
        raise RpcError(-32602, f"missing required arguments: {', '.join(missing)}")
    # Plain substitution, never template evaluation: arguments are data, not code.
    text = _PLACEHOLDER.sub(lambda m: str(arguments.get(m[1], m[0])), prompt["template"])
    text = _checked_text("prompt", text, "messages")
    message = {"role": "user", "content": {"type": "text", "text": text}}
    return {"description": prompt["description"], "messages": [message]}


async def logging_set_level(ctx: McpContext, params: dict[str, Any]) -> dict[str, Any]:
    """Accepted, not applied: upstream log notes are relayed, checked, whatever their level."""
    if params.get("level") not in ("debug", "info", "notice", "warning", "error", "critical", "alert", "emergency"):
        raise RpcError(-32602, "`level` must be a syslog level")
    return {}


async def completion_complete(ctx: McpContext, params: dict[str, Any]) -> dict[str, Any]:
    """No completions are offered; an empty list is the protocol's way to say so."""
    if not isinstance(params.get("ref"), dict) or not isinstance(params.get("argument"), dict):
        raise RpcError(-32602, "`ref` and `argument` must be objects")
    return {"completion": {"values": [], "total": 0, "hasMore": False}}


METHODS: Final = {
    "initialize": initialize,
    "ping": ping,
    "tools/list": tools_list,
    "tools/call": tools_call,
    "resources/list": resources_list,
    "resources/templates/list": resource_templates_list,
    "resources/read": resources_read,
    "prompts/list": prompts_list,
    "prompts/get": prompts_get,
    "logging/setLevel": logging_set_level,
    "completion/complete": completion_complete,
}
