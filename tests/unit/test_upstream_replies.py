"""Reading an upstream's answer: JSON or SSE, priming events, errors, wrong replies."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web

from engine.federation import transport
from engine.federation.upstream import UpstreamClient, UpstreamError, _reply
from tests.integration.servers import free_port

RESULT = {"jsonrpc": "2.0", "id": 7, "result": {"tools": []}}


@contextlib.asynccontextmanager
async def _upstream(handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> AsyncIterator[str]:
    """A throw-away HTTP server on loopback answering POST /mcp with `handler`."""
    app = web.Application()
    app.router.add_post("/mcp", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        await runner.cleanup()


def _initialized(message: dict[str, object], session: str) -> web.Response:
    """The upstream's answer to `initialize`, opening MCP session `session`."""
    reply = {"jsonrpc": "2.0", "id": message["id"], "result": {"protocolVersion": "2025-11-25"}}
    return web.json_response(reply, headers={"Mcp-Session-Id": session})


def test_json_reply() -> None:
    assert _reply(200, "application/json", json.dumps(RESULT).encode(), 7) == RESULT


Answer = Callable[[dict[str, Any], web.Request], Awaitable[web.StreamResponse]]


def _call_answered_by(answer: Answer, heard: list[dict[str, object]] | None = None) -> object:
    """The result of a tool call to an upstream whose requests after `initialize` are
    answered by `answer`; notifications relayed on the way go to `heard`."""

    async def mcp(request: web.Request) -> web.StreamResponse:
        message = await request.json()
        if message["method"] == "initialize":
            return _initialized(message, "s1")
        if "id" not in message:
            return web.Response(status=202)
        return await answer(message, request)

    async def relay(message: dict[str, object]) -> None:
        if heard is not None:
            heard.append(message)

    async def scenario() -> object:
        async with _upstream(mcp) as url:
            client = UpstreamClient(url, {})
            try:
                return await client.request("tools/call", {"name": "x"}, on_message=relay)
            finally:
                await client.close()

    return asyncio.run(scenario())


def _streamed(events: Callable[[int], list[str]], heard: list[dict[str, object]] | None = None) -> object:
    """The result the client reads from an SSE answer written in the chunks `events(request
    id)`; notifications relayed on the way go to `heard`."""

    async def stream(message: dict[str, Any], request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for chunk in events(message["id"]):
            await response.write(chunk.encode())
        await response.write_eof()
        return response

    return _call_answered_by(stream, heard)


def test_sse_reply_with_a_priming_event_and_a_notification_first() -> None:
    # SDK servers with an event store send an event with an id and no data first.
    def events(ident: int) -> list[str]:
        return [
            "id: 1\ndata:\n\n"
            'event: message\ndata: {"jsonrpc":"2.0","method":"notifications/message","params":{}}\n\n'
            f"id: 2\nevent: message\ndata: {json.dumps({**RESULT, 'id': ident})}\n\n"
        ]

    assert _streamed(events) == RESULT["result"]


def test_sse_data_split_over_lines_is_joined() -> None:
    def events(ident: int) -> list[str]:
        text = json.dumps({**RESULT, "id": ident}, indent=1)
        return ["event: message\n" + "".join(f"data: {line}\n" for line in text.splitlines()) + "\n"]

    assert _streamed(events) == RESULT["result"]


def test_a_large_json_reply_is_read_whole() -> None:
    """A reply of many reads arrives whole (aiohttp's `read(n)` gave what was buffered)."""
    big = {"content": [{"type": "text", "text": "x" * 3_000_000}]}

    async def whole(message: dict[str, Any], request: web.Request) -> web.StreamResponse:
        return web.json_response({"jsonrpc": "2.0", "id": message["id"], "result": big})

    assert _call_answered_by(whole) == big


@pytest.mark.parametrize(
    ("status", "kind", "body", "code"),
    [
        (500, "text/plain", b"boom", "upstream_protocol"),
        (200, "text/html", b"<html>", "upstream_protocol"),
        (200, "application/json", b"{not json", "upstream_protocol"),
        (200, "application/json", json.dumps({**RESULT, "id": 8}).encode(), "upstream_protocol"),
    ],
)
def test_unusable_replies_are_protocol_errors(status: int, kind: str, body: bytes, code: str) -> None:
    with pytest.raises(UpstreamError) as caught:
        _reply(status, kind, body, 7)
    assert caught.value.code == code


def test_the_streaming_reader_skips_priming_events_and_relays_notifications() -> None:
    note = {"jsonrpc": "2.0", "method": "notifications/progress", "params": {"progress": 1}}

    def events(ident: int) -> list[str]:
        return [
            "id: 1\ndata:\n\n",
            f"event: message\ndata: {json.dumps(note)}\n\n",
            f"data: {json.dumps({**RESULT, 'id': ident})}\n\n",
        ]

    heard: list[dict[str, object]] = []
    assert _streamed(events, heard) == RESULT["result"]
    assert heard == [note]


def test_timeouts_and_refused_connections_have_their_own_codes() -> None:
    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(2)
        return web.json_response({})

    async def scenario() -> tuple[str, str]:
        codes = []
        async with _upstream(slow) as url:
            for target in (url, f"http://127.0.0.1:{free_port()}/mcp"):
                client = UpstreamClient(target, {}, timeout=0.3)
                try:
                    await client.request("ping")
                except UpstreamError as err:
                    codes.append(err.code)
                finally:
                    await client.close()
        return codes[0], codes[1]

    assert asyncio.run(scenario()) == ("upstream_timeout", "upstream_unavailable")


def test_a_handshake_cut_short_is_started_again_on_the_next_call() -> None:
    seen: list[tuple[str, str | None]] = []

    async def mcp(request: web.Request) -> web.StreamResponse:
        message = await request.json()
        seen.append((message["method"], request.headers.get("Mcp-Session-Id")))
        if message["method"] == "initialize":
            return _initialized(message, f"s{len([m for m, _ in seen if m == 'initialize'])}")
        if message["method"] == "notifications/initialized" and request.headers["Mcp-Session-Id"] == "s1":
            await asyncio.sleep(2)  # the first handshake never completes in time
        if "id" not in message:
            return web.Response(status=202)
        return web.json_response({"jsonrpc": "2.0", "id": message["id"], "result": {}})

    async def scenario() -> str:
        async with _upstream(mcp) as url:
            client = UpstreamClient(url, {}, timeout=0.3)
            try:
                with pytest.raises(UpstreamError) as caught:
                    await client.request("ping")
                await client.request("ping")
                return caught.value.code
            finally:
                await client.close(end_session=False)

    assert asyncio.run(scenario()) == "upstream_timeout"
    assert seen == [
        ("initialize", None),
        ("notifications/initialized", "s1"),
        ("initialize", None),
        ("notifications/initialized", "s2"),
        ("ping", "s2"),
    ]


def _asking(
    question: dict[str, object], answers: list[dict[str, object]]
) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """An upstream whose calls ask `question` and reply once it is answered (the answers
    go to `answers`); it also answers pings."""
    answered = asyncio.Event()

    async def mcp(request: web.Request) -> web.StreamResponse:
        message = await request.json()
        if message.get("method") == "initialize":
            return _initialized(message, "s1")
        if message.get("method") == "ping":
            return web.json_response({"jsonrpc": "2.0", "id": message["id"], "result": {}})
        if "method" not in message:  # the client's answer to the question
            answers.append(message)
            answered.set()
            return web.Response(status=202)
        if "id" not in message:
            return web.Response(status=202)
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await response.write(f"data: {json.dumps(question)}\n\n".encode())
        await answered.wait()
        await response.write(f"data: {json.dumps({**RESULT, 'id': message['id']})}\n\n".encode())
        await response.write_eof()
        return response

    return mcp


def test_the_time_a_question_waits_for_its_answer_is_not_the_upstreams() -> None:
    answers: list[dict[str, object]] = []
    question = {"jsonrpc": "2.0", "id": "q1", "method": "elicitation/create", "params": {"message": "go?"}}

    async def slow_person(request: dict[str, object]) -> dict[str, object]:
        await asyncio.sleep(1.0)  # well past the upstream's timeout of 0.3 s
        return {"result": {"action": "accept"}}

    async def scenario() -> object:
        async with _upstream(_asking(question, answers)) as url:
            client = UpstreamClient(url, {}, timeout=0.3)
            try:
                return await client.request("tools/call", {"name": "x"}, on_request=slow_person)
            finally:
                await client.close(end_session=False)

    assert asyncio.run(scenario()) == RESULT["result"]
    assert answers == [{"jsonrpc": "2.0", "id": "q1", "result": {"action": "accept"}}]


@pytest.mark.parametrize("ping_first", [False, True], ids=["answer", "ping"])
def test_answers_and_health_pings_never_wait_behind_the_call_holding_the_connection(
    monkeypatch: pytest.MonkeyPatch, ping_first: bool
) -> None:
    """With room for one connection, a call whose upstream asks a question holds it: the
    answer, or a health ping meanwhile, must go out on a connection of its own. (The
    ping's connection is then idle, so each case tests one of the two.)"""
    monkeypatch.setattr(transport, "_MAX_CONNECTIONS", 1)
    question = {"jsonrpc": "2.0", "id": "q1", "method": "sampling/createMessage", "params": {}}

    async def scenario() -> object:
        asked, pinged = asyncio.Event(), asyncio.Event()

        async def person(request: dict[str, object]) -> dict[str, object]:
            asked.set()
            if ping_first:
                await pinged.wait()  # answers only once the health check got through
            return {"result": {"role": "assistant", "content": {"type": "text", "text": "hi"}}}

        async with _upstream(_asking(question, [])) as url:
            client = UpstreamClient(url, {}, timeout=2)
            try:
                call = asyncio.ensure_future(client.request("tools/call", {"name": "x"}, on_request=person))
                await asyncio.wait_for(asked.wait(), 5)
                if ping_first:
                    await client.request("ping", queued=False)
                    pinged.set()
                return await call
            finally:
                await client.close(end_session=False)

    assert asyncio.run(scenario()) == RESULT["result"]


@pytest.mark.parametrize("kind", ["application/json", "text/event-stream"])
def test_a_reply_that_is_not_utf8_is_a_protocol_error_in_either_form(kind: str) -> None:
    """What is not text never reaches the content checks, streamed or not."""

    async def garbled(message: dict[str, Any], request: web.Request) -> web.StreamResponse:
        reply = json.dumps({"jsonrpc": "2.0", "id": message["id"], "result": {"text": "@@"}}).encode()
        reply = reply.replace(b"@@", b"caf\xe9")  # Latin-1, not UTF-8
        body = b"event: message\ndata: " + reply + b"\n\n" if kind == "text/event-stream" else reply
        return web.Response(body=body, headers={"Content-Type": kind})

    with pytest.raises(UpstreamError) as caught:
        _call_answered_by(garbled)
    assert caught.value.code == "upstream_protocol"
    assert "not JSON" in caught.value.message
