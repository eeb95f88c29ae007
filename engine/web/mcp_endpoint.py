"""The Streamable HTTP MCP endpoint: `/mcp` and each virtual server's `/servers/{id}/mcp`.

The guard has already authenticated the caller and applied the route's rules (a
server-scoped token only reaches its own server's endpoint). Here each JSON-RPC message
is judged again with its method, exactly as the policy lists MCP methods, then served:

- protocol revisions 2025-11-25, 2025-06-18 and 2025-03-26 (`initialize` negotiates; the
  MCP-Protocol-Version header must name one of them, else 400);
- one message per POST from 2025-06-18 on; 2025-03-26 clients may still send batches;
- sessions made here on `initialize`, bound to the token (or user) and endpoint that
  opened them (404 otherwise), at most so many per user and in the process (the oldest
  closes), and ending their streamed calls when closed;
- JSON or SSE answers according to the Accept header; 202 for notifications;
- a browser Origin must be one the policy allows, or the gateway's own when the Host
  is an address or loopback name: a DNS name could be a rebinding attacker's (403);
- `server/discover` (revision 2026-07-28) is answered "method not found", so current
  clients fall back to `initialize`.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import ipaddress
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any, Final

from quart import Blueprint, Response, g, request

from engine.decide import PUBLIC_ONLY, Decision, RequestContext, Visibility, decide
from engine.decide.tokens import TokenTable
from engine.federation.upstream import Answerer, Relay
from engine.json_bytes import dumps, loads
from engine.store.catalog import Server
from engine.web.catalog import visible
from engine.web.guard import charge
from engine.web.incoming import Incoming, challenge, metadata_url
from engine.web.list_changes import Change
from engine.web.mcp_asking import asker, declared, is_answer, take_answer, valid_id
from engine.web.mcp_methods import METHODS, McpContext, RpcError
from engine.web.mcp_sessions import McpSession
from engine.web.responses import error_response
from engine.web.state import close_session_streams, gateway

__all__ = ["STREAMS_PER_SESSION", "SUPPORTED_VERSIONS", "blueprint", "notifications", "serve_endpoint"]

log = logging.getLogger("policygate")

blueprint = Blueprint("mcp", __name__)

SUPPORTED_VERSIONS: Final = ("2025-11-25", "2025-06-18", "2025-03-26")
_DEFAULT_VERSION: Final = "2025-03-26"
_NO_BATCHES_FROM: Final = "2025-06-18"
STREAMS_PER_SESSION: Final = 4
"""Open GET streams a session may hold in one worker: a client needs one."""
NOTES_HELD: Final = 32
"""Notes of a streamed call held for a client slower than its upstream. With this many
waiting the call waits too, so the gateway stops reading the upstream (TCP then holds the
upstream back) and its memory stays bounded however little the client reads. Waiting
rather than merging progress notes or dropping log notes keeps every note, in order; a
client that stops reading altogether is cut off by the lane (`mcp_lane.SEND_TIMEOUT_S`)."""


Sight = Callable[[], Awaitable[Visibility | None]]


@dataclass(frozen=True, slots=True)
class Listening:
    """Who an event stream speaks to: their session, email and endpoint's virtual server,
    and what they may see at the moment (`Sight`)."""

    session: str
    viewer: str
    server: str | None
    sight: Sight


@blueprint.get("/.well-known/oauth-protected-resource")
async def protected_resource_root() -> Response:
    """RFC 9728 metadata for the gateway as a whole: its `resource` is the bare origin,
    as the well-known URL it was fetched from names no path, and it covers every MCP
    endpoint beneath it (clients accept metadata whose resource prefixes their URL)."""
    return _metadata("")


@blueprint.get("/.well-known/oauth-protected-resource/<path:resource>")
async def protected_resource(resource: str) -> Response:
    """RFC 9728 metadata for one MCP endpoint path."""
    return _metadata("/" + resource)


def _metadata(path: str) -> Response:
    base = request.host_url.rstrip("/")
    permissions = sorted({m.permission for m in g.snapshot.access.mcp_methods.values() if m.permission})
    body = {
        "resource": base + path,
        "authorization_servers": _authorization_servers(g.snapshot.tokens) or [base],
        "bearer_methods_supported": ["header"],
        "scopes_supported": permissions,
        "resource_name": "PolicyGate MCP",
    }
    response = Response(json.dumps(body), content_type="application/json")
    response.headers["Cache-Control"] = "public, max-age=3600"
    return response


def _authorization_servers(tokens: TokenTable) -> list[str]:
    """The issuers, besides the gateway itself, whose tokens the policy accepts and that
    can be OAuth authorization servers (RFC 8414 issuer identifiers are https URLs): where
    a client gets a token for this resource, such as the organisation's SSO.

    The gateway signs its own tokens without an OAuth flow, so with none of these the
    metadata names the gateway: MCP clients refuse metadata that names no server.
    """
    accepted = sorted(tokens.issuer or ())
    return [issuer for issuer in accepted if issuer != tokens.issue_issuer and issuer.startswith("https://")]


def _rpc_error(ident: Any, error: RpcError) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": ident, "error": error.body()}


_LOOPBACK_NAMES: Final = frozenset({"localhost"})
_Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def _host_name(host: str) -> str:
    """The name or address in a Host header, without port or IPv6 brackets."""
    if host.startswith("["):
        return host[1 : host.find("]")] if "]" in host else host
    return host.rsplit(":", 1)[0]


@functools.lru_cache(maxsize=256)
def _address(name: str) -> _Address | None:
    """Kept per name: every MCP request asks it of the same few Host names."""
    try:
        return ipaddress.ip_address(name)
    except ValueError:
        return None


def _is_loopback(name: str, address: _Address | None) -> bool:
    return name in _LOOPBACK_NAMES or (address is not None and address.is_loopback)


@functools.cache
def _bound_to_loopback(bind: str) -> bool:
    """Whether the process listens on loopback only: one answer per process, kept."""
    name = _host_name(bind)
    return _is_loopback(name, _address(name))


def _origin_refused(incoming: Incoming) -> Response | None:
    """Refuse DNS rebinding: a loopback gateway answers loopback Host names only, and a
    browser Origin must be one the policy allows, or the gateway itself when the Host
    names it by address or loopback name.

    A Host that is some other DNS name proves nothing: under DNS rebinding the attacker's
    page sends its own name as both Host and Origin. Deployments reached by name list
    their origin in the policy (`cors.allowedOrigins`, or APP_DOMAIN).
    """
    host = _host_name(incoming.host)
    address = _address(host)
    if _bound_to_loopback(gateway().settings.bind) and not _is_loopback(host, address):
        return error_response(403, "host_not_allowed", "this endpoint answers loopback host names only")
    origin = incoming.header("origin")
    if origin is None or origin in g.snapshot.network.allowed_origins:
        return None
    if origin == incoming.host_url.rstrip("/") and (address is not None or host in _LOOPBACK_NAMES):
        return None
    return error_response(403, "origin_not_allowed", f"origin `{origin[:200]}` may not use this endpoint")


async def _server(server_id: str | None) -> Server | Response | None:
    if server_id is None:
        return None
    server: Server | None = await visible(Server).filter(id=server_id).first()
    if server is None:
        return error_response(404, "not_found", f"no server `{server_id}`")
    return server


@blueprint.route("/mcp", methods=["POST", "GET", "DELETE"])
async def mcp_all() -> Response:
    """MCP over everything the caller may see (Streamable HTTP).

    Most POSTs never get here: engine.web.mcp_lane answers them with the same code.
    """
    return await serve_endpoint(None, g.incoming, await _body())


@blueprint.route("/servers/<server_id>/mcp", methods=["POST", "GET", "DELETE"])
async def mcp_server(server_id: str) -> Response:
    """MCP over one virtual server's tools, resources and prompts (see mcp_all)."""
    return await serve_endpoint(server_id, g.incoming, await _body())


async def _body() -> bytes:
    """A POST's message; GET and DELETE carry none to read."""
    if request.method != "POST":
        return b""
    return await request.get_data(cache=False, as_text=False, parse_form_data=False)


@dataclass(frozen=True, slots=True)
class _At:
    """Where a message was posted: the request, its virtual server, its MCP session."""

    incoming: Incoming
    server: Server | None
    session: McpSession | None
    version: str


async def serve_endpoint(server_id: str | None, incoming: Incoming, body: bytes) -> Response:
    """Answer a request the guard let through to an MCP endpoint, from Quart or from
    engine.web.mcp_lane: `server_id` names a virtual server's endpoint, None `/mcp`."""
    refused = _origin_refused(incoming)
    if refused is not None:
        return refused
    if g.get("user") is None:
        # Sessions are bound to a user; even with AUTH_REQUIRED off, MCP needs one.
        message = "the MCP endpoint needs an authenticated user"
        return error_response(401, "auth_required", message, headers={"WWW-Authenticate": challenge(incoming)})
    server = await _server(server_id)
    if isinstance(server, Response):
        return server
    header_version = incoming.header("mcp-protocol-version")
    if header_version is not None and header_version not in SUPPORTED_VERSIONS:
        return error_response(
            400, "protocol_version_unsupported", f"unsupported MCP-Protocol-Version `{header_version}`"
        )
    session = await _session(incoming)
    if isinstance(session, Response):
        return session
    if incoming.method == "DELETE":
        if session is None:
            return error_response(400, "session_required", "`Mcp-Session-Id` is required")
        await gateway().sessions.close(session)
        close_session_streams(gateway(), session.id)
        return Response("", status=204)
    if incoming.method == "GET":
        if session is None:
            return error_response(400, "session_required", "`Mcp-Session-Id` is required")
        if sum(listening == session.id for listening in gateway().listeners.values()) >= STREAMS_PER_SESSION:
            # Each stream holds a task and a queue and asks the store every keep-alive.
            message = f"this session has {STREAMS_PER_SESSION} event streams open here; close one first"
            return error_response(429, "too_many_streams", message)
        return _event_stream(
            Listening(session.id, session.email, server.id if server is not None else None, _sight(session))
        )
    version = session.version if session is not None else header_version or _DEFAULT_VERSION
    return await _post(_At(incoming, server, session, version), body)


async def _session(incoming: Incoming) -> McpSession | Response | None:
    session_id = incoming.header("mcp-session-id")
    if session_id is None:
        return None
    found: McpSession | None = await gateway().sessions.find(session_id, g.user.email, incoming.path, _holder())
    if found is None:
        return _session_not_found()
    return found


def _session_not_found() -> Response:
    return error_response(404, "session_not_found", "no such MCP session")


def _holder() -> str:
    """The credential a session is bound to: the token that opened it, by its `jti`, so
    the user's other tokens cannot use it and it is gone once that token is revoked.
    Proxy-header and basic authentication (and tokens a policy lets go without a `jti`)
    name nothing narrower than the user."""
    token = g.ctx.token
    return f"jti:{token.jti}" if token is not None and token.jti is not None else f"user:{g.user.email}"


async def _post(at: _At, body: bytes) -> Response:
    accept = at.incoming.header("accept")
    accept = "*/*" if accept is None else accept
    wants_json = "application/json" in accept or "*/*" in accept
    if not wants_json and "text/event-stream" not in accept:
        return error_response(406, "not_acceptable", "accept `application/json` or `text/event-stream`")
    try:
        payload = loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return _unreadable(RpcError(-32700, "Parse error", {"code": "parse_error"}))
    session = at.session
    batch = isinstance(payload, list)
    if not batch and not _well_formed(payload):
        return _unreadable(RpcError(-32600, "Invalid Request", {"code": "invalid_request"}))
    if batch and (not payload or at.version >= _NO_BATCHES_FROM):
        message = "batches are not accepted; send one message per request"
        return error_response(400, "batch_not_supported", message, details={"code": -32600, "message": message})
    if batch and any(_opens(m) for m in payload):
        # The rest of the batch would run before the session it opens exists.
        message = "`initialize` must be sent on its own, never in a batch"
        return error_response(400, "batch_not_supported", message, details={"code": -32600, "message": message})
    if session is None and not _opens(payload):
        return error_response(400, "session_required", "`Mcp-Session-Id` is required after `initialize`")
    if batch:
        # The guard counted the request once; every message in it is one against the budgets.
        limited = await charge(gateway(), g.snapshot, g.ctx, len(payload) - 1)
        if limited is not None:
            return limited
    messages = payload if batch else [payload]
    allowed = _streamable(payload, accept) if not batch else None
    if allowed is not None:
        return await _streamed(payload, at, wants_json, allowed)
    decisions = [_judge(m["method"]) if _asks(m) else None for m in messages]
    for decision in decisions:
        if decision is not None and not decision.allow and str(decision.reason) != "mcp_method_unknown":
            # Before anything runs: a refusal after a tool call ran would lose its answer,
            # and a client retrying the batch would run the call twice.
            return _insufficient(decision, at.incoming)
    replies: list[dict[str, Any]] = []
    headers: dict[str, str] = {}
    for message, decision in zip(messages, decisions, strict=True):
        if session is not None and is_answer(message):
            take_answer(gateway(), session.id, message)
            continue
        outcome = await _handle(message, at, headers, decision)
        if outcome is not None:
            replies.append(outcome)
    if not replies:
        return Response("", status=202, headers=headers)
    response = _answer(replies if batch else replies[0], wants_json)
    response.headers.update(headers)
    return response


def _unreadable(error: RpcError) -> Response:
    """A body the endpoint cannot take as a message: an HTTP 400, as Streamable HTTP has
    it, carrying a JSON-RPC error without an id for clients that read one."""
    return Response(dumps(_rpc_error(None, error)), status=400, content_type="application/json")


def _well_formed(message: Any) -> bool:
    """A JSON-RPC 2.0 request, notification or answer. Members of an old-protocol batch
    are judged one by one instead (`_handle`), each answered in the batch."""
    return _asks(message) or (isinstance(message, dict) and message.get("jsonrpc") == "2.0" and is_answer(message))


def _asks(message: Any) -> bool:
    """Whether `message` is a request or notification `_handle` would put to the policy."""
    return (
        isinstance(message, dict)
        and message.get("jsonrpc") == "2.0"
        and isinstance(message.get("method"), str)
        and ("id" not in message or valid_id(message["id"]))
    )


def _opens(message: Any) -> bool:
    """Whether `message` is an `initialize`, the one message that needs no session."""
    return isinstance(message, dict) and message.get("method") == "initialize"


def _streamable(message: Any, accept: str) -> Decision | None:
    """A tool call whose client takes SSE, and which the policy allows, is streamed: the
    decision that allows it, or None."""
    if "text/event-stream" not in accept or not isinstance(message, dict):
        return None
    if message.get("method") != "tools/call" or "id" not in message:
        return None
    decision = _judge("tools/call")
    return decision if decision.allow else None


async def _streamed(message: dict[str, Any], at: _At, wants_json: bool, allowed: Decision) -> Response:
    """Answer a tool call, streaming only once the upstream has something to say first.

    A call that finishes before any progress or log notification is answered like any
    other request (as JSON when the client takes it): an SSE stream costs the client and
    the gateway several writes and a chunked body for the same single message.
    """
    queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize=NOTES_HELD)
    first: asyncio.Future[None] = asyncio.get_running_loop().create_future()  # a note, or the end

    def settle(_: object = None) -> None:
        if not first.done():
            first.set_result(None)

    async def say(note: dict[str, Any]) -> None:
        await queue.put(note)
        settle()

    ask = asker(gateway(), at.session, say) if at.session is not None else None
    task = asyncio.ensure_future(_handle(message, at, {}, allowed, say, ask))
    task.add_done_callback(settle)
    if at.session is not None:
        gateway().sessions.hold(at.session.id, task)
    try:
        await first
    except asyncio.CancelledError:
        task.cancel()
        raise
    if queue.empty():  # nothing was said, so the call is over
        if task.cancelled():  # by its session's end
            return _session_not_found()
        outcome = task.result()
        if isinstance(outcome, Response):
            return outcome
        return _answer(outcome, wants_json) if outcome is not None else Response("", status=202)

    response = Response(_call_events(task, queue), content_type="text/event-stream")
    response.headers["Cache-Control"] = "no-store"
    response.timeout = None
    return response


def _call_events(call: asyncio.Task[Any], queue: asyncio.Queue[dict[str, Any]]) -> AsyncIterator[bytes]:
    """The SSE body of a streamed call: its notes as they come, then its outcome.

    The call ends with the request's task, which goes on to send this body. A client that
    leaves before the body's first read (while its headers are sent, say) gets the body
    closed unstarted, or not closed at all, and a generator that never ran cannot run its
    `finally`: the call would go on, holding an upstream connection, for its whole timeout.
    """
    request = asyncio.current_task()
    if request is not None:
        request.add_done_callback(lambda _: call.cancel())
    return _relay(call, queue)


async def _relay(call: asyncio.Task[Any], queue: asyncio.Queue[dict[str, Any]]) -> AsyncIterator[bytes]:
    next_note: asyncio.Future[dict[str, Any]] | None = None
    try:
        while True:
            next_note = asyncio.ensure_future(queue.get())
            done, _ = await asyncio.wait({call, next_note}, return_when=asyncio.FIRST_COMPLETED)
            if next_note in done:
                yield _event(next_note.result())
                continue
            next_note.cancel()
            while not queue.empty():
                yield _event(queue.get_nowait())
            # A call cancelled while its stream runs was ended by its session's end.
            outcome = None if call.cancelled() else call.result()
            if isinstance(outcome, dict):
                yield _event(outcome)
            return
    finally:
        # A client that leaves mid-stream cancels us inside `wait`: neither the call nor
        # the pending read of its queue may outlive the stream.
        call.cancel()
        if next_note is not None:
            next_note.cancel()


def _event(message: Any) -> bytes:
    return b"event: message\ndata: " + dumps(message) + b"\n\n"


async def _handle(
    message: Any,
    at: _At,
    headers: dict[str, str],
    decision: Decision | None,
    relay: Relay | None = None,
    ask: Answerer | None = None,
) -> dict[str, Any] | None:
    """Answer one JSON-RPC message. `decision` is the policy's answer to it, None when it
    is neither a request nor a notification (see `_asks`); callers answer every refusal
    but an unknown method before anything runs."""
    if decision is None:
        ident = message.get("id") if isinstance(message, dict) and valid_id(message.get("id")) else None
        return _rpc_error(ident, RpcError(-32600, "Invalid Request"))
    method, ident = message["method"], message.get("id")
    is_request = "id" in message
    if not decision.allow:  # the method is unknown
        return _rpc_error(ident, RpcError(-32601, f"Method not found: {method}")) if is_request else None
    if not is_request:
        return None  # notifications need no answer
    handler = METHODS.get(method)
    if handler is None:
        return _rpc_error(ident, RpcError(-32601, f"Method not found: {method}"))
    params = message.get("params") or {}
    if not isinstance(params, dict):
        return _rpc_error(ident, RpcError(-32602, "`params` must be an object"))
    version = at.version
    if method == "initialize":
        requested = params.get("protocolVersion")
        version = requested if requested in SUPPORTED_VERSIONS else SUPPORTED_VERSIONS[0]
        opened = await gateway().sessions.open(g.user.email, at.incoming.path, version, _holder(), declared(params))
        headers["Mcp-Session-Id"] = opened.id
    try:
        result = await handler(McpContext(decision, at.server, version, relay, ask), params)
    except RpcError as err:
        return _rpc_error(ident, err)
    return {"jsonrpc": "2.0", "id": ident, "result": result}


def _judge(method: str) -> Decision:
    ctx: RequestContext = g.ctx
    decision = decide(g.snapshot, replace(ctx, mcp_method=method))
    return decision


def _insufficient(decision: Decision, incoming: Incoming) -> Response:
    permission = decision.message.split("`")[1] if decision.message.count("`") >= 2 else ""
    response = error_response(decision.status, str(decision.reason), decision.message)
    if decision.status == 403:
        response.headers["WWW-Authenticate"] = (
            f'Bearer error="insufficient_scope", scope="{permission}", resource_metadata="{metadata_url(incoming)}"'
        )
    return response


def _answer(body: Any, wants_json: bool) -> Response:
    if wants_json:
        return Response(dumps(body), content_type="application/json")
    return Response(_event(body), content_type="text/event-stream")


def _event_stream(listening: Listening) -> Response:
    """Server-to-client messages: `list_changed` notifications, with keep-alives."""
    queue: asyncio.Queue[Change] = asyncio.Queue(maxsize=100)
    response = Response(notifications(queue, gateway().listeners, listening), content_type="text/event-stream")
    response.headers["Cache-Control"] = "no-store"
    response.timeout = None
    return response


def _sight(session: McpSession) -> Sight:
    """What the caller who opened a stream may see now, or None once they may no longer
    hear it: its session is closed, or its request would be refused now (an expired or
    revoked token, a disabled or removed account, a stricter policy)."""
    gw, ctx = gateway(), g.ctx

    async def sight() -> Visibility | None:
        if await gw.sessions.find(session.id, session.email, session.endpoint, session.holder) is None:
            return None
        found = await gw.directory.lookup(session.email, ctx.token.jti if ctx.token is not None else None)
        now = replace(ctx, now=time.time(), user=found.user, revoked=found.revoked, rate={})
        decision = decide(gw.engine.current, now)
        if not decision.allow:
            return None
        return decision.visibility if decision.visibility is not None else PUBLIC_ONLY

    return sight


async def notifications(
    queue: asyncio.Queue[Change],
    listeners: dict[asyncio.Queue[Change], str],
    listening: Listening,
    keep_alive: float = 15,
) -> AsyncIterator[bytes]:
    """The SSE body of an event stream, listening from its first byte to its consumer's end.

    It joins `listeners` only once it runs: a generator that never starts (a response
    abandoned before its body) never runs its `finally` either, and would stay listed.
    Before each message or keep-alive it asks what its caller may see now: it ends when
    the answer is nothing, and passes a change on only when the caller sees what changed.
    """
    try:
        listeners[queue] = listening.session
        yield b": connected\n\n"
        while True:
            # Not `wait_for`: on Python 3.11 it swallows a cancellation that meets a queued
            # message, so a stream whose client left amid a burst of notifications would
            # live on, sending keep-alives to no one.
            change: Change | None = None
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(keep_alive):
                    change = await queue.get()
            if change is not None and not change.concerns(listening.server):
                continue  # another virtual server's: not worth a look-up
            sight = await listening.sight()
            if sight is None:
                return
            if change is None:
                yield b": keep-alive\n\n"
            elif change.seen_by(sight, listening.viewer):
                yield _event({"jsonrpc": "2.0", "method": change.method})
    finally:
        listeners.pop(queue, None)
