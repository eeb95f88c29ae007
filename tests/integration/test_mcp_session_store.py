"""MCP sessions per user are capped, bound to the credential that opened them, and end
their calls when closed, in the process and in a real Redis alike."""

from __future__ import annotations

import asyncio
import json

from redis.asyncio import Redis

from engine.web.mcp_sessions import PER_USER, SessionStore

HOLDER = "jti:opener"


async def _flood(url: str | None) -> tuple[list[bool], bool, bool]:
    client = Redis.from_url(url, decode_responses=True) if url is not None else None
    try:
        store = SessionStore(client)
        other = await store.open("other@example.com", "/mcp", "2025-11-25", "jti:other")
        opened = [await store.open("flood@example.com", "/mcp", "2025-11-25", HOLDER) for _ in range(PER_USER + 3)]
        alive = [await store.find(s.id, s.email, s.endpoint, HOLDER) is not None for s in opened]
        await store.close(opened[-1])
        closed_gone = await store.find(opened[-1].id, opened[-1].email, "/mcp", HOLDER) is None
        replacement = await store.open("flood@example.com", "/mcp", "2025-11-25", HOLDER)
        # Closing freed its place: the oldest survivor stays when one more opens.
        survivor_kept = await store.find(opened[3].id, opened[3].email, "/mcp", HOLDER) is not None
        other_kept = await store.find(other.id, other.email, "/mcp", "jti:other") is not None
        assert await store.find(replacement.id, replacement.email, "/mcp", HOLDER) is not None
        return alive, closed_gone and survivor_kept, other_kept
    finally:
        if client is not None:
            await client.flushdb()
            await client.aclose()


def test_a_user_opening_sessions_without_end_loses_the_oldest_only(shared_url: str | None) -> None:
    alive, close_frees_a_place, other_kept = asyncio.run(_flood(shared_url))
    assert alive == [False] * 3 + [True] * PER_USER
    assert close_frees_a_place
    assert other_kept


async def _found_by(url: str | None) -> dict[str, bool]:
    """Which credentials find a session `HOLDER` opened, and whether a session stored
    before sessions had a holder is found at all."""
    client = Redis.from_url(url, decode_responses=True) if url is not None else None
    try:
        store = SessionStore(client)
        session = await store.open("user@example.com", "/mcp", "2025-11-25", HOLDER)
        found = {
            holder: await store.find(session.id, "user@example.com", "/mcp", holder) is not None
            for holder in (HOLDER, "jti:another-of-the-same-user", "user:user@example.com")
        }
        if client is not None:
            legacy = {"email": "user@example.com", "endpoint": "/mcp", "version": "2025-11-25"}
            await client.set(f"policygate:mcp:{'0' * 32}", json.dumps(legacy))
            found["legacy"] = (
                await store.find("0" * 32, "user@example.com", "/mcp", "user:user@example.com") is not None
            )
        return found
    finally:
        if client is not None:
            await client.flushdb()
            await client.aclose()


def test_a_session_is_found_only_with_the_credential_that_opened_it(shared_url: str | None) -> None:
    found = asyncio.run(_found_by(shared_url))
    assert found.pop(HOLDER)
    assert not any(found.values()), found


async def _calls_after_close() -> tuple[bool, bool]:
    """Whether closing a session cancels its call, and leaves another session's alone."""
    store = SessionStore()
    closing = await store.open("user@example.com", "/mcp", "2025-11-25", HOLDER)
    staying = await store.open("user@example.com", "/mcp", "2025-11-25", HOLDER)
    ended, running = (asyncio.ensure_future(asyncio.Event().wait()) for _ in range(2))
    store.hold(closing.id, ended)
    store.hold(staying.id, running)
    await store.close(closing)
    await asyncio.wait({ended}, timeout=1)
    outcome = ended.cancelled(), not running.done()
    running.cancel()
    return outcome


def test_closing_a_session_ends_its_calls_only() -> None:
    assert asyncio.run(_calls_after_close()) == (True, True)
