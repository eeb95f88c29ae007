"""The MCP lane stops the work on a message, or its streamed answer, when the client leaves."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from quart import Response

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
