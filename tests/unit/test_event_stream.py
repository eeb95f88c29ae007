"""An MCP event stream ends when its consumer is cancelled, even as a message arrives,
and when its caller may no longer hear it."""

from __future__ import annotations

import asyncio

from engine.web.mcp_endpoint import notifications


async def _always() -> bool:
    return True


async def _cancelled_as_a_message_lands() -> tuple[bool, bool, set[object]]:
    queue: asyncio.Queue[str] = asyncio.Queue()
    listeners: set[object] = set()
    heard: list[bytes] = []

    async def consume() -> None:
        async for chunk in notifications(queue, listeners, _always, keep_alive=0.05):
            heard.append(chunk)

    consumer = asyncio.ensure_future(consume())
    while not heard:
        await asyncio.sleep(0)
    joined = queue in listeners
    await asyncio.sleep(0)  # the stream now waits on the queue
    queue.put_nowait("notifications/tools/list_changed")
    await asyncio.sleep(0)  # the queue's getter has its message; the stream has not resumed
    consumer.cancel()
    await asyncio.wait({consumer}, timeout=1)
    ended = consumer.done()
    consumer.cancel()
    return joined, ended, listeners


def test_a_stream_whose_client_left_ends_even_when_a_message_meets_the_cancellation() -> None:
    joined, ended, listeners = asyncio.run(_cancelled_as_a_message_lands())
    assert joined, "a running stream must hear notifications"
    assert ended, "the stream outlived its consumer"
    assert not listeners


async def _idle_then_message() -> list[bytes]:
    queue: asyncio.Queue[str] = asyncio.Queue()
    stream = notifications(queue, set(), _always, keep_alive=0.01)
    chunks = [await anext(stream), await anext(stream)]
    queue.put_nowait("notifications/prompts/list_changed")
    chunks.append(await anext(stream))
    await stream.aclose()
    return chunks


def test_an_idle_stream_sends_keep_alives_then_the_message() -> None:
    connected, keep_alive, message = asyncio.run(_idle_then_message())
    assert connected == b": connected\n\n"
    assert keep_alive == b": keep-alive\n\n"
    assert b'"method":"notifications/prompts/list_changed"' in message


async def _entitlement_lost() -> tuple[list[bytes], set[object]]:
    queue: asyncio.Queue[str] = asyncio.Queue()
    listeners: set[object] = set()
    entitled = [True]

    async def alive() -> bool:
        return entitled[0]

    stream = notifications(queue, listeners, alive, keep_alive=60)
    heard = [await anext(stream)]
    queue.put_nowait("notifications/tools/list_changed")
    heard.append(await anext(stream))
    entitled[0] = False  # the session was deleted or the token revoked meanwhile
    queue.put_nowait("notifications/prompts/list_changed")
    heard.extend([chunk async for chunk in stream])
    return heard, listeners


def test_a_stream_ends_at_the_first_message_its_caller_may_no_longer_hear() -> None:
    heard, listeners = asyncio.run(_entitlement_lost())
    assert len(heard) == 2
    assert b"tools/list_changed" in heard[1]
    assert not listeners
