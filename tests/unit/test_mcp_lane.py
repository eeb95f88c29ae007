"""The MCP lane stops the work on a message, or its streamed answer, when the client leaves."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from quart import Response

from engine.web import mcp_lane
from engine.web.mcp_endpoint import _call_events
from engine.web.mcp_lane import _cancelled_if_the_client_leaves, _Gone, _stream


async def _streamed(client_leaves_after: int | None) -> tuple[list[dict[str, Any]], bool]:
    """Stream a call that says two things and then, unless its client left, finishes."""
    closed = asyncio.Event()
    sent: list[dict[str, Any]] = []

    async def events() -> AsyncIterator[bytes]:
        try:
            yield b"progress"
            yield b"log"
            if client_leaves_after is not None:
                await asyncio.Event().wait()  # a call that would never end by itself
            yield b"result"
        finally:
            closed.set()

    async def send(message: Any) -> None:
        sent.append(message)

    async def receive() -> Any:
        while client_leaves_after is None or len(sent) < client_leaves_after:
            await asyncio.sleep(0.01)
        return {"type": "http.disconnect"}

    response = Response(events(), content_type="text/event-stream")
    await asyncio.wait_for(_stream(response, send, receive), timeout=5)
    return sent, closed.is_set()


def test_a_stream_is_sent_chunk_by_chunk_and_ended() -> None:
    sent, closed = asyncio.run(_streamed(None))
    assert [(m["type"], m.get("body"), m.get("more_body")) for m in sent] == [
        ("http.response.start", None, None),
        ("http.response.body", b"progress", True),
        ("http.response.body", b"log", True),
        ("http.response.body", b"result", True),
        ("http.response.body", b"", False),
    ]
    assert closed


def test_a_stream_stops_and_its_call_ends_when_the_client_leaves() -> None:
    sent, closed = asyncio.run(_streamed(client_leaves_after=3))
    assert [m.get("body") for m in sent] == [None, b"progress", b"log"]
    assert closed, "the call behind the stream outlived its client"


async def _stalled() -> tuple[list[Any], bool]:
    """Stream notes without end to a client that takes the headers, then nothing more
    and never leaves; what was sent, and whether the call behind the stream ended."""
    closed = asyncio.Event()
    sent: list[Any] = []

    async def events() -> AsyncIterator[bytes]:
        try:
            while True:
                yield b"progress"
        finally:
            closed.set()

    async def send(message: Any) -> None:
        sent.append(message)
        if message["type"] == "http.response.body":
            await asyncio.Event().wait()  # the client's window stays full: the write never ends

    async def receive() -> Any:
        await asyncio.Event().wait()  # connected for ever

    await asyncio.wait_for(_stream(Response(events(), content_type="text/event-stream"), send, receive), timeout=5)
    return sent, closed.is_set()


def test_a_stream_whose_client_stops_reading_is_cut_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(mcp_lane, "SEND_TIMEOUT_S", 0.05)
    sent, closed = asyncio.run(_stalled())
    assert [m.get("body") for m in sent] == [None, b"progress"]
    assert closed, "the call behind the stream outlived a client that stopped reading"


async def _call_left_while_its_headers_go_out() -> bool:
    """A streamed call whose client leaves as the stream's headers are sent, so the body
    is closed before it was ever read; whether the call behind it ended."""
    call = asyncio.ensure_future(asyncio.Event().wait())  # a call that would never end by itself
    notes: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    notes.put_nowait({"jsonrpc": "2.0", "method": "notifications/progress", "params": {"progress": 1}})
    left = asyncio.Event()

    async def send(message: Any) -> None:
        if message["type"] == "http.response.start":
            left.set()
            await asyncio.sleep(0.01)  # the headers take a moment to go out

    async def receive() -> Any:
        await left.wait()
        return {"type": "http.disconnect"}

    async def request() -> None:  # one task, as a server runs one per request
        await _stream(Response(_call_events(call, notes), content_type="text/event-stream"), send, receive)

    await asyncio.wait_for(request(), timeout=5)
    await asyncio.wait({call}, timeout=1)
    return call.cancelled()


def test_a_call_ends_when_its_client_leaves_before_the_first_event() -> None:
    assert asyncio.run(_call_left_while_its_headers_go_out()), "the call outlived its client"


async def _leaving(work_seconds: float, leaves_after: float) -> tuple[str, bool]:
    """Run work under the watcher while the client leaves; what happened, and whether
    the task can still await afterwards (no stray cancellation left behind)."""

    async def receive() -> Any:
        await asyncio.sleep(leaves_after)
        return {"type": "http.disconnect"}

    try:
        async with _cancelled_if_the_client_leaves(receive):
            await asyncio.sleep(work_seconds)
        outcome = "finished"
    except _Gone:
        outcome = "gone"
    await asyncio.sleep(leaves_after + 0.05)  # past the moment the client leaves
    return outcome, True


def test_work_stops_when_its_client_leaves() -> None:
    assert asyncio.run(asyncio.wait_for(_leaving(30, 0.05), timeout=5)) == ("gone", True)


def test_work_that_ends_first_is_never_cancelled_afterwards() -> None:
    assert asyncio.run(asyncio.wait_for(_leaving(0.01, 0.05), timeout=5)) == ("finished", True)
