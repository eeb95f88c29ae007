"""The MCP lane's streamed answers: sent as they come, and stopped when the client leaves."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from quart import Response

from engine.web.mcp_lane import _stream


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
