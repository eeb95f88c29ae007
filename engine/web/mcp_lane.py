"""The MCP lane: POSTs to an MCP endpoint, served beside Quart rather than through it.

Every MCP message is a POST, and a forwarded tool call is the request whose latency an
agent feels on each step. Around a handler Quart spends about half a millisecond per
request on this machine: a request object with its own parsed headers, a request
context, two tasks watching the connection, and one more task each for reading the body
and for sending the answer. The lane runs the same guard, the same endpoint code, the
same error mapping and the same response headers on the facts of the ASGI scope, inside
an app context (so `g` and the gateway's state read as they do under Quart), and sends
the answer in two ASGI events.

As under Quart, a client that leaves cancels the work on its message, and a request
answered before its body was read (a refusal, a body over the limit) has the rest of
its body read and dropped while the answer goes out: Hypercorn holds only a few body
messages for the app, and with that queue full the connection would stall. A streamed
answer whose client takes nothing for `SEND_TIMEOUT_S` is ended as if the client left.

Everything else (event streams, session ends, the REST API) goes to Quart, whose MCP
routes answer a POST the lane does not take (a `root_path`, an odd path form) the same.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, suppress
from typing import Final

from hypercorn.typing import ASGIReceiveCallable as Receive
from hypercorn.typing import ASGISendCallable as Send
from hypercorn.typing import HTTPResponseBodyEvent, HTTPResponseStartEvent, HTTPScope, Scope
from quart import Quart, Response, g
from quart.utils import encode_headers
from quart.wrappers.response import IterableBody
from werkzeug.exceptions import RequestEntityTooLarge, RequestTimeout

from engine.web.failures import failure_response
from engine.web.guard import admit, finish_response
from engine.web.incoming import Incoming
from engine.web.mcp_endpoint import serve_endpoint
from engine.web.state import gateway

__all__ = ["McpLane"]

Asgi = Callable[[Scope, Receive, Send], Awaitable[None]]

_SERVER_ENDPOINT: Final = re.compile(r"/servers/([^/]+)/mcp")

SEND_TIMEOUT_S: Final = 30.0
"""How long one write of a streamed answer may wait for its client to take it. Far longer
than a network stall a client recovers from, and short enough that a client that reads
nothing soon stops holding its call and the upstream connection under it."""


class _Gone(Exception):
    """The client closed the connection before its request was whole."""


class _Stalled(Exception):
    """The client took nothing of a streamed answer for `SEND_TIMEOUT_S`."""


class McpLane:
    """ASGI middleware taking MCP POSTs off `inner`, the Quart app's own ASGI callable."""

    def __init__(self, app: Quart, inner: Asgi) -> None:
        self.app = app
        self.inner = inner

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and not scope.get("root_path"):
            path = scope["path"]
            if path == "/mcp":
                return await self._serve(None, scope, receive, send)
            server = _SERVER_ENDPOINT.fullmatch(path)
            if server is not None:
                return await self._serve(server[1], scope, receive, send)
        return await self.inner(scope, receive, send)

    async def _serve(self, server_id: str | None, scope: HTTPScope, receive: Receive, send: Send) -> None:
        incoming = Incoming.from_scope(scope)
        async with self.app.app_context():
            try:
                response, whole = await self._answer(server_id, incoming, receive)
            except _Gone:
                return
            finish_response(response, g.get("snapshot"), incoming.header("origin"), g.get("request_id", ""))
            if isinstance(response.response, IterableBody):
                await _stream(response, send, receive)
                return
            body = await response.get_data(as_text=False)
            rest = None if whole else asyncio.ensure_future(_disconnected(receive))
            try:
                # A reader too slow for the whole answer is left behind, as Quart leaves it.
                with suppress(TimeoutError):
                    async with asyncio.timeout(self.app.config["RESPONSE_TIMEOUT"]):
                        await send(_start(response))
                        await send(_body_event(body, more=False))
            finally:
                if rest is not None:
                    rest.cancel()

    async def _answer(self, server_id: str | None, incoming: Incoming, receive: Receive) -> tuple[Response, bool]:
        """The answer, and whether the request's body was read to its end."""
        whole = False
        try:
            # As under Quart, the guard judges the request before its body is read.
            refusal = await admit(gateway(), incoming)
            if refusal is not None:
                return refusal, whole
            config = self.app.config
            body = await _body(receive, incoming, config["MAX_CONTENT_LENGTH"], config["BODY_TIMEOUT"])
            whole = True
            async with _cancelled_if_the_client_leaves(receive):
                return await serve_endpoint(server_id, incoming, body), whole
        except _Gone:
            raise
        except Exception as err:
            return await failure_response(err), whole


@asynccontextmanager
async def _cancelled_if_the_client_leaves(receive: Receive) -> AsyncIterator[None]:
    """Cancel the work inside when the client disconnects, as Quart cancels a handler, so
    work in flight stays bounded by the connections open (raises _Gone then).

    The watcher can only act while the work waits: once the block ends it is cancelled
    before the loop runs again, so it never cancels what follows.
    """
    work = asyncio.current_task()
    left = False

    async def watch() -> None:
        nonlocal left
        await _disconnected(receive)
        if work is not None:
            left = True
            work.cancel()

    watcher = asyncio.ensure_future(watch())
    try:
        yield
    except asyncio.CancelledError:
        if not left or work is None:
            raise
        work.uncancel()
        raise _Gone() from None
    finally:
        watcher.cancel()


async def _body(receive: Receive, incoming: Incoming, limit: int, timeout: float) -> bytes:
    """The whole request body, refused once it passes `limit` (413) or `timeout` (408)."""
    declared = incoming.header("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise RequestEntityTooLarge()
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(timeout):
            while True:
                message = await receive()
                if message["type"] != "http.request":
                    raise _Gone()
                chunk = message.get("body", b"")
                size += len(chunk)
                if size > limit:
                    raise RequestEntityTooLarge()
                chunks.append(chunk)
                if not message.get("more_body", False):
                    return b"".join(chunks)
    except TimeoutError as err:
        raise RequestTimeout() from err


def _start(response: Response) -> HTTPResponseStartEvent:
    return {"type": "http.response.start", "status": response.status_code, "headers": encode_headers(response.headers)}


def _body_event(chunk: bytes, *, more: bool) -> HTTPResponseBodyEvent:
    return {"type": "http.response.body", "body": chunk, "more_body": more}


async def _stream(response: Response, send: Send, receive: Receive) -> None:
    """Send a streamed answer as it comes, and stop it as soon as its client leaves or
    stops reading (the connection is then closed once what was written drains)."""
    with suppress(_Gone, _Stalled):
        async with _cancelled_if_the_client_leaves(receive), response.response as chunks:
            # Leaving `async with` closes the generator, and with it the call behind it.
            await _send_in_time(send, _start(response))
            async for chunk in chunks:
                await _send_in_time(send, _body_event(chunk, more=True))
            await _send_in_time(send, _body_event(b"", more=False))


async def _send_in_time(send: Send, event: HTTPResponseStartEvent | HTTPResponseBodyEvent) -> None:
    """Send `event`, or raise _Stalled: the server's write waits while the client's
    window is full, so a client that never reads would hold the stream for ever."""
    try:
        async with asyncio.timeout(SEND_TIMEOUT_S):
            await send(event)
    except TimeoutError as err:
        raise _Stalled() from err


async def _disconnected(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
