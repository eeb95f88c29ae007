"""An MCP event stream ends when its consumer is cancelled, even as a message arrives,
and when its caller may no longer hear it; it passes on only changes its caller can see,
once per session."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable

from engine.decide import Access, Visibility
from engine.web.list_changes import Change, change_from_event, event_of, tell_streams
from engine.web.mcp_endpoint import Listening, notifications

RED = Visibility(Access.TEAM_AND_PUBLIC, frozenset({"red"}))
PUBLIC = ("public", None, "owner@example.com")


def _change(method: str, *scopes: tuple[str, str | None, str | None]) -> Change:
    return Change(method, scopes or (PUBLIC,))


async def _always() -> Visibility | None:
    return RED


def _listening(sight: Callable[[], Awaitable[Visibility | None]] = _always, server: str | None = None) -> Listening:
    return Listening("session-1", "viewer@example.com", server, sight)


async def _cancelled_as_a_message_lands() -> tuple[bool, bool, dict[asyncio.Queue[Change], str]]:
    queue: asyncio.Queue[Change] = asyncio.Queue()
    listeners: dict[asyncio.Queue[Change], str] = {}
    heard: list[bytes] = []

    async def consume() -> None:
        async for chunk in notifications(queue, listeners, _listening(), keep_alive=0.05):
            heard.append(chunk)

    consumer = asyncio.ensure_future(consume())
    while not heard:
        await asyncio.sleep(0)
    joined = queue in listeners
    await asyncio.sleep(0)  # the stream now waits on the queue
    queue.put_nowait(_change("notifications/tools/list_changed"))
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
    queue: asyncio.Queue[Change] = asyncio.Queue()
    stream = notifications(queue, {}, _listening(), keep_alive=0.01)
    chunks = [await anext(stream), await anext(stream)]
    queue.put_nowait(_change("notifications/prompts/list_changed"))
    chunks.append(await anext(stream))
    await stream.aclose()
    return chunks


def test_an_idle_stream_sends_keep_alives_then_the_message() -> None:
    connected, keep_alive, message = asyncio.run(_idle_then_message())
    assert connected == b": connected\n\n"
    assert keep_alive == b": keep-alive\n\n"
    assert b'"method":"notifications/prompts/list_changed"' in message


async def _entitlement_lost() -> tuple[list[bytes], dict[asyncio.Queue[Change], str]]:
    queue: asyncio.Queue[Change] = asyncio.Queue()
    listeners: dict[asyncio.Queue[Change], str] = {}
    entitled = [True]

    async def sight() -> Visibility | None:
        return RED if entitled[0] else None

    stream = notifications(queue, listeners, _listening(sight), keep_alive=60)
    heard = [await anext(stream)]
    queue.put_nowait(_change("notifications/tools/list_changed"))
    heard.append(await anext(stream))
    entitled[0] = False  # the session was deleted or the token revoked meanwhile
    queue.put_nowait(_change("notifications/prompts/list_changed"))
    heard.extend([chunk async for chunk in stream])
    return heard, listeners


def test_a_stream_ends_at_the_first_message_its_caller_may_no_longer_hear() -> None:
    heard, listeners = asyncio.run(_entitlement_lost())
    assert len(heard) == 2
    assert b"tools/list_changed" in heard[1]
    assert not listeners


async def _heard(changes: list[Change], server: str | None = None) -> list[bytes]:
    """What a stream of a caller who sees public and `red` items sends for `changes`."""
    queue: asyncio.Queue[Change] = asyncio.Queue()
    stream = notifications(queue, {}, _listening(server=server), keep_alive=60)
    await anext(stream)
    for change in changes:
        queue.put_nowait(change)
    queue.put_nowait(_change("end"))
    heard = []
    while b'"end"' not in (chunk := await anext(stream)):
        heard.append(chunk)
    await stream.aclose()
    return heard


def test_a_stream_passes_on_only_changes_its_caller_can_see() -> None:
    heard = asyncio.run(
        _heard(
            [
                _change("notifications/tools/list_changed", ("team", "blue", "a@example.com")),
                _change("notifications/prompts/list_changed", ("private", None, "someone@example.com")),
                # Moved out of the caller's sight: they saw it before, so they hear it.
                _change(
                    "notifications/resources/list_changed", ("team", "red", "a@example.com"), ("team", "blue", None)
                ),
                _change("notifications/tools/list_changed", ("private", None, "viewer@example.com")),
            ]
        )
    )
    assert [b"resources" in chunk for chunk in heard] == [True, False]
    assert b"tools/list_changed" in heard[1]


def test_a_virtual_servers_own_change_reaches_only_its_endpoint() -> None:
    change = Change("notifications/tools/list_changed", (PUBLIC,), server="srv-1")
    assert asyncio.run(_heard([change], server="srv-2")) == []
    assert asyncio.run(_heard([change])) == [], "the all-items endpoint lists no server's own membership"
    assert len(asyncio.run(_heard([change], server="srv-1"))) == 1


def test_a_change_is_queued_on_one_stream_of_each_session() -> None:
    first, second, other = (asyncio.Queue[Change]() for _ in range(3))
    listeners = {first: "session-1", second: "session-1", other: "session-2"}
    tell_streams(listeners, _change("notifications/tools/list_changed"))
    assert (first.qsize() + second.qsize(), other.qsize()) == (1, 1)


def test_a_change_survives_the_trip_to_another_worker_and_junk_does_not() -> None:
    change = Change("notifications/tools/list_changed", (("team", "red", "a@example.com"), PUBLIC), "srv-1")
    assert change_from_event(json.loads(json.dumps(event_of(change)))) == change
    for junk in ({"method": 1, "scopes": []}, {"method": "m", "scopes": [["team", 2, None]]}, {"method": "m"}):
        assert change_from_event(junk) is None
