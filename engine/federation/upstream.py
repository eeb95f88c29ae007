"""A small Streamable HTTP client for upstream MCP servers, on engine.federation.transport.

One long-lived connection pool and MCP session per upstream, opened on first use with
the handshake protocol (`initialize`, revision 2025-11-25) and reopened once if the
upstream forgets the session. Responses may be JSON or an SSE stream; both are read.
Only the gateway's own headers for the upstream are sent, never the client's.

Failures become `UpstreamError` with a stable code the MCP endpoint maps onto JSON-RPC:

    UpstreamError
    ├── code "upstream_unavailable"  connection refused, DNS, TLS
    ├── code "upstream_address_refused"  the host has no public address, and the
    │                                     policy wants one (engine.federation.addresses)
    ├── code "upstream_timeout"      no answer within the timeout
    ├── code "upstream_protocol"     not JSON-RPC, wrong content type, bad status
    └── code "upstream_error"        the upstream answered with a JSON-RPC error
"""

from __future__ import annotations

import asyncio
import itertools
import re
from collections.abc import Awaitable, Callable, Mapping
from contextlib import aclosing, suppress
from typing import Any, Final

from engine.federation.addresses import AddressRefused
from engine.federation.transport import BadHeader, Origin, Reply, ReplyTooLarge
from engine.json_bytes import dumps, loads

__all__ = ["PRIVATE_NETWORKS_HINT", "PROTOCOL_VERSION", "Answerer", "Relay", "UpstreamClient", "UpstreamError"]

PROTOCOL_VERSION: Final = "2025-11-25"
_REVISION: Final = re.compile(r"\d{4}-\d{2}-\d{2}")

MAX_REPLY_BYTES: Final = 64 * 1024 * 1024
"""An upstream answer larger than this is refused rather than held in memory."""

DRAIN_SECONDS: Final = 5.0
"""How long the rest of a replied-to stream may take before its connection is dropped."""

Relay = Callable[[dict[str, Any]], Awaitable[None]]
"""Receives the notifications an upstream sends before its reply."""

Answerer = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]
"""Answers a request the upstream makes before its reply (sampling, elicitation) with
the `result` or `error` member of the response."""

_UNANSWERABLE: Final = {"code": -32601, "message": "the gateway's client cannot answer this request"}
PRIVATE_NETWORKS_HINT: Final = "the Network policy's `upstreams.allowPrivateNetworks` allows such upstreams"
"""How a refusal of a non-public upstream address says what would allow it."""
_NOT_PUBLIC: Final = f"the upstream's host has no public address; {PRIVATE_NETWORKS_HINT}"


class UpstreamError(Exception):
    def __init__(self, code: str, message: str, *, rpc_code: int | None = None, data: Any = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.rpc_code = rpc_code
        self.data = data

    def in_own_words(self, refused: str) -> str:
        """The error as the gateway may store, show and log it, `refused` naming what the
        upstream turned down: an upstream's own error text is unchecked upstream output,
        so only its code is kept."""
        if self.code == "upstream_error":
            return f"the upstream refused {refused} (JSON-RPC error {self.rpc_code})"
        return self.message


class UpstreamClient:
    def __init__(
        self, url: str, headers: Mapping[str, str], *, timeout: float = 30.0, public_only: bool = False
    ) -> None:
        self.url = url
        self.public_only = public_only
        self._headers_fixed = dict(headers)
        self._timeout_s = timeout
        self._origin: Origin | None = None
        self._session: str | None = None
        self._version = PROTOCOL_VERSION
        self._ids = itertools.count(1)
        self._lock = asyncio.Lock()

    def _connections(self) -> Origin:
        if self._origin is None:
            try:
                self._origin = Origin(self.url, public_only=self.public_only)
            except ValueError as err:
                raise UpstreamError("upstream_unavailable", "the upstream's URL cannot be used") from err
        return self._origin

    async def _send(self, method: str, headers: dict[str, str], body: bytes = b"", *, queued: bool = True) -> Reply:
        try:
            return await self._connections().send(method, {**self._headers_fixed, **headers}, body, queued=queued)
        except BadHeader as err:
            raise UpstreamError("upstream_unavailable", "a header for the upstream cannot be sent") from err

    async def close(self, *, end_session: bool = True) -> None:
        """Drop the pool, first telling the upstream to end the MCP session when asked."""
        if self._origin is None:
            return
        if self._session is not None and end_session:
            with suppress(OSError, TimeoutError, UpstreamError):
                async with asyncio.timeout(self._timeout_s):
                    (await self._send("DELETE", self._headers(), queued=False)).close()
        await self._origin.close()

    async def request(
        self,
        method: str,
        params: Mapping[str, Any] | None = None,
        *,
        on_message: Relay | None = None,
        on_request: Answerer | None = None,
        queued: bool = True,
    ) -> Any:
        """The `result` of one JSON-RPC request, opening the session if needed.

        Notifications the upstream sends on the way (progress, log messages) are passed
        to `on_message` as they arrive, before the result. Requests it sends on the way
        are answered by `on_request`, or refused when there is none. A request that is
        not `queued` (a health check) does not wait behind calls for a connection, so it
        measures the upstream rather than how busy it is.
        """
        await self._ensure_session(queued)
        try:
            return await self._call(method, params, on_message=on_message, on_request=on_request, queued=queued)
        except UpstreamError as err:
            if err.code != "session_expired":
                raise
        self._session = None
        await self._ensure_session(queued)
        return await self._call(method, params, on_message=on_message, on_request=on_request, queued=queued)

    async def _ensure_session(self, queued: bool) -> None:
        async with self._lock:
            if self._session is not None:
                return
            params = {
                "protocolVersion": PROTOCOL_VERSION,
                # Offered on behalf of the gateway's clients; a client that cannot take
                # such a request gets it refused by the gateway instead.
                "capabilities": {"sampling": {}, "elicitation": {}},
                "clientInfo": {"name": "policygate", "version": "0.1.0"},
            }
            try:
                result = await self._call("initialize", params, initializing=True, queued=queued)
                agreed = result.get("protocolVersion")
                # Sent back in a header on every request: only a revision date is taken.
                self._version = agreed if isinstance(agreed, str) and _REVISION.fullmatch(agreed) else PROTOCOL_VERSION
                await self._notify({"jsonrpc": "2.0", "method": "notifications/initialized"})
            except BaseException:
                # A handshake cut short (an error reply, a timeout, a caller that left)
                # must not leave the next call a session that was never initialized.
                self._session = None
                raise

    def _headers(self, body: bool = False) -> dict[str, str]:
        headers = {"Accept": "application/json, text/event-stream", "MCP-Protocol-Version": self._version}
        if self._session is not None:
            headers["Mcp-Session-Id"] = self._session
        if body:
            headers["Content-Type"] = "application/json"
        return headers

    async def _notify(self, message: Mapping[str, Any]) -> None:
        try:
            async with asyncio.timeout(self._timeout_s):
                # Never queued: an answer is sent while its call holds a connection.
                reply = await self._send("POST", self._headers(body=True), dumps(message), queued=False)
                try:
                    await reply.drain(MAX_REPLY_BYTES)
                finally:
                    reply.release()
        except (TimeoutError, OSError, ReplyTooLarge) as err:
            raise _failure(err) from err

    async def _exchange(
        self,
        message: Mapping[str, Any],
        ident: int,
        on_message: Relay | None,
        on_request: Answerer | None,
        queued: bool,
    ) -> tuple[str, dict[str, Any]]:
        """The session header and the reply to `ident`, within the upstream's timeout.

        The deadline is kept here, on the whole exchange, so that the time a question of
        the upstream's waits for the client's answer (a person, for elicitation) can be
        left out of it.
        """
        try:
            async with asyncio.timeout(self._timeout_s) as deadline:
                return await self._read_reply(message, ident, on_message, on_request, deadline, queued)
        except (TimeoutError, OSError, ReplyTooLarge) as err:
            raise _failure(err) from err

    async def _read_reply(
        self,
        message: Mapping[str, Any],
        ident: int,
        on_message: Relay | None,
        on_request: Answerer | None,
        deadline: asyncio.Timeout,
        queued: bool,
    ) -> tuple[str, dict[str, Any]]:
        """Post `message` and read the answer, JSON or SSE as it streams."""
        reply = await self._send("POST", self._headers(body=True), dumps(message), queued=queued)
        handed_off = False
        try:
            kind = reply.headers.get("content-type", "").split(";")[0].strip()
            session = reply.headers.get("mcp-session-id", "")
            if kind != "text/event-stream" or reply.status >= 400:
                return session, _reply(reply.status, kind, await reply.read(MAX_REPLY_BYTES), ident)
            # Bytes throughout: the data of a 20 KB result is copied once, not decoded and
            # encoded again; invalid UTF-8 in it is refused as in a JSON answer.
            lines: list[bytes] = []
            async with aclosing(reply.lines(MAX_REPLY_BYTES)) as stream:
                async for raw in stream:
                    line = raw.rstrip(b"\r\n")
                    if line.startswith(b"data:"):
                        lines.append(line[5:].removeprefix(b" "))
                    if line or not lines:
                        continue
                    data, lines = b"\n".join(lines), []
                    if not data.strip():
                        continue  # a priming event: an id and no data
                    event = _event(data)
                    if event.get("id") == ident and ("result" in event or "error" in event):
                        # The upstream ends the stream just after the reply, which is in
                        # hand: waiting for the end would delay every call.
                        reply.release_at_end(MAX_REPLY_BYTES, DRAIN_SECONDS)
                        handed_off = True
                        return session, event
                    if "method" in event and "id" in event:
                        await self._answer(event, on_request, deadline)
                    elif on_message is not None and "method" in event:
                        await on_message(event)
            raise UpstreamError("upstream_protocol", "the upstream's answer has no reply to the request")
        finally:
            if not handed_off:
                reply.release()

    async def _answer(self, request: dict[str, Any], on_request: Answerer | None, deadline: asyncio.Timeout) -> None:
        """Send the upstream the response to a request it made while a call runs.

        The call's deadline stands still while the client answers (mcp_asking bounds
        that wait itself), and runs again for sending the answer.
        """
        if on_request is None:
            answer: dict[str, Any] = {"error": _UNANSWERABLE}
        else:
            loop = asyncio.get_running_loop()
            when = deadline.when()
            remaining = when - loop.time() if when is not None else None
            deadline.reschedule(None)
            try:
                answer = await on_request(request)
            finally:
                deadline.reschedule(loop.time() + remaining if remaining is not None else None)
        await self._notify({"jsonrpc": "2.0", "id": request["id"], **answer})

    async def _call(
        self,
        method: str,
        params: Mapping[str, Any] | None,
        *,
        initializing: bool = False,
        on_message: Relay | None = None,
        on_request: Answerer | None = None,
        queued: bool = True,
    ) -> Any:
        ident = next(self._ids)
        message: dict[str, Any] = {"jsonrpc": "2.0", "id": ident, "method": method}
        if params is not None:
            message["params"] = dict(params)
        try:
            session, reply = await self._exchange(message, ident, on_message, on_request, queued)
        except UpstreamError as err:
            if err.code != "session_gone":
                raise
            if initializing:
                raise UpstreamError("upstream_protocol", "the upstream answered HTTP 404") from err
            raise UpstreamError("session_expired", "the upstream ended the session") from err
        if initializing:
            self._session = session or None
        if "error" in reply:
            error = reply["error"] if isinstance(reply["error"], dict) else {}
            code = error.get("code")
            raise UpstreamError(
                "upstream_error",
                str(error.get("message", "upstream error"))[:500],
                rpc_code=code if isinstance(code, int) and not isinstance(code, bool) else None,
                data=error.get("data"),
            )
        result = reply.get("result", {})
        if not isinstance(result, dict):
            raise UpstreamError("upstream_protocol", "the upstream's result is not an object")
        return result


def _event(data: bytes) -> dict[str, Any]:
    try:
        event = loads(data)
    except (ValueError, RecursionError) as err:
        raise UpstreamError("upstream_protocol", "the upstream's answer is not JSON") from err
    return event if isinstance(event, dict) else {}


def _reply(status: int, kind: str, body: bytes, ident: int) -> dict[str, Any]:
    """The reply to `ident` in an answer that is not a stream (streams are read as they come)."""
    if status == 404:
        raise UpstreamError("session_gone", "the upstream does not know the session")
    if status >= 400 and kind != "application/json":
        raise UpstreamError("upstream_protocol", f"the upstream answered HTTP {status}")
    if kind != "application/json":
        raise UpstreamError("upstream_protocol", f"the upstream answered `{kind or 'no content type'}`")
    try:
        message = loads(body)
    except (ValueError, RecursionError) as err:
        raise UpstreamError("upstream_protocol", "the upstream's answer is not JSON") from err
    if isinstance(message, dict) and message.get("id") == ident:
        return message
    raise UpstreamError("upstream_protocol", "the upstream's answer has no reply to the request")


def _failure(err: TimeoutError | OSError | ReplyTooLarge) -> UpstreamError:
    """What a failed exchange tells the caller: no answer in time, too much, or no way through."""
    if isinstance(err, TimeoutError):
        return UpstreamError("upstream_timeout", "the upstream did not answer in time")
    if isinstance(err, ReplyTooLarge):
        return UpstreamError("upstream_protocol", "the upstream's answer is too large")
    if isinstance(err, AddressRefused):
        return UpstreamError("upstream_address_refused", _NOT_PUBLIC)
    return UpstreamError("upstream_unavailable", f"the upstream cannot be reached ({type(err).__name__})")
