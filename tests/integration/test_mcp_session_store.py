"""MCP sessions per user are capped, in the process and in a real Redis alike."""

from __future__ import annotations

import asyncio

from redis.asyncio import Redis

from engine.web.mcp_sessions import PER_USER, SessionStore


async def _flood(url: str | None) -> tuple[list[bool], bool, bool]:
    client = Redis.from_url(url, decode_responses=True) if url is not None else None
    try:
        store = SessionStore(client)
        other = await store.open("other@example.com", "/mcp", "2025-11-25")
        opened = [await store.open("flood@example.com", "/mcp", "2025-11-25") for _ in range(PER_USER + 3)]
        alive = [await store.find(s.id, s.email, s.endpoint) is not None for s in opened]
        await store.close(opened[-1])
        closed_gone = await store.find(opened[-1].id, opened[-1].email, "/mcp") is None
        replacement = await store.open("flood@example.com", "/mcp", "2025-11-25")
        # Closing freed its place: the oldest survivor stays when one more opens.
        survivor_kept = await store.find(opened[3].id, opened[3].email, "/mcp") is not None
        other_kept = await store.find(other.id, other.email, "/mcp") is not None
        assert await store.find(replacement.id, replacement.email, "/mcp") is not None
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
