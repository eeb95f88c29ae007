"""MCP sessions are capped per user and in the process (the oldest closes),
bound to the credential that opened them, remember what their client declared, and end
their calls when closed, in the process and in a real Redis alike."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from types import SimpleNamespace

import pytest
from redis.asyncio import Redis

from engine.web import mcp_sessions
from engine.web.mcp_sessions import LOCAL_TOTAL, PER_USER, SessionStore

HOLDER = "jti:opener"
NONE: frozenset[str] = frozenset()


@asynccontextmanager
async def _store(url: str | None) -> AsyncIterator[tuple[SessionStore, Redis | None]]:
    """A session store in the process (None) or in the Redis at `url`, emptied after,
    with its Redis client."""
    client = Redis.from_url(url, decode_responses=True) if url is not None else None
    try:
        yield SessionStore(client), client
    finally:
        if client is not None:
            await client.flushdb()
            await client.aclose()


async def _open(store: SessionStore, holder: str = HOLDER, email: str = "flood@example.com") -> mcp_sessions.McpSession:
    return await store.open(email, "/mcp", "2025-11-25", holder, NONE)


async def _alive(store: SessionStore, session: mcp_sessions.McpSession) -> bool:
    return await store.find(session.id, session.email, session.endpoint, session.holder) is not None


async def _flood(url: str | None) -> tuple[list[bool], bool, bool]:
    async with _store(url) as (store, _):
        other = await _open(store, "jti:other", "other@example.com")
        opened = [await _open(store)]
        call = asyncio.ensure_future(asyncio.Event().wait())
        store.hold(opened[0].id, call)
        opened += [await _open(store) for _ in range(PER_USER + 2)]
        await asyncio.wait({call}, timeout=1)
        assert call.cancelled(), "a session closed to make room ends its calls"
        alive = [await _alive(store, s) for s in opened]
        await store.close(opened[-1])
        closed_gone = not await _alive(store, opened[-1])
        replacement = await _open(store)
        # Closing freed its place: the oldest survivor stays when one more opens.
        survivor_kept = await _alive(store, opened[3])
        assert await _alive(store, replacement)
        return alive, closed_gone and survivor_kept, await _alive(store, other)


def test_a_user_opening_sessions_without_end_loses_the_oldest_only(shared_url: str | None) -> None:
    """A client that never closes its sessions keeps working; only its own oldest go."""
    alive, close_frees_a_place, other_kept = asyncio.run(_flood(shared_url))
    assert alive == [False] * 3 + [True] * PER_USER
    assert close_frees_a_place
    assert other_kept


async def _fill_the_process(clock: SimpleNamespace) -> dict[str, bool]:
    """A full process makes room at the expense of the user holding the most, ending that
    session's calls; nobody is refused, and expired sessions go first."""
    async with _store(None) as (store, _):
        light = await _open(store, email="light@example.com")
        heavy = [await _open(store, email="heavy@example.com") for _ in range(PER_USER)]
        call = asyncio.ensure_future(asyncio.Event().wait())
        store.hold(heavy[0].id, call)
        for n in range(LOCAL_TOTAL - PER_USER - 1):
            await _open(store, email=f"u{n // (PER_USER - 1)}@example.com")
        newcomer = await _open(store, email="newcomer@example.com")
        await asyncio.wait({call}, timeout=1)
        outcome = {
            "newcomer": await _alive(store, newcomer),
            "light kept": await _alive(store, light),
            "heaviest lost its oldest": not await _alive(store, heavy[0]),
            "heaviest kept the rest": await _alive(store, heavy[1]),
            "its call ended": call.cancelled(),
        }
        clock.offset = 24 * 3600 + 1
        late = await _open(store, email="late@example.com")
        outcome["late, after expiry"] = await _alive(store, late)
        outcome["expired gone"] = not await _alive(store, newcomer)
        return outcome


def test_a_full_process_makes_room_at_the_expense_of_the_heaviest_user(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = SimpleNamespace(offset=0.0)
    monkeypatch.setattr(mcp_sessions, "time", SimpleNamespace(monotonic=lambda: time.monotonic() + clock.offset))
    outcome = asyncio.run(_fill_the_process(clock))
    assert outcome == dict.fromkeys(outcome, True), outcome


async def _found_by(url: str | None) -> dict[str, object]:
    """Which credentials find a session `HOLDER` opened, what it remembers its client
    declared, and how sessions stored by older gateways are found."""
    async with _store(url) as (store, client):
        declared = frozenset({"sampling", "elicitation.form"})
        session = await store.open("user@example.com", "/mcp", "2025-11-25", HOLDER, declared)
        found: dict[str, object] = {
            holder: await store.find(session.id, "user@example.com", "/mcp", holder) is not None
            for holder in (HOLDER, "jti:another-of-the-same-user", "user:user@example.com")
        }
        again = await store.find(session.id, "user@example.com", "/mcp", HOLDER)
        found["capabilities"] = again.capabilities if again is not None else None
        if client is not None:
            legacy = {"email": "user@example.com", "endpoint": "/mcp", "version": "2025-11-25"}
            await client.set(f"policygate:mcp:{'0' * 32}", json.dumps(legacy))
            found["no holder"] = await store.find("0" * 32, "user@example.com", "/mcp", "user:user@example.com")
            older = {**legacy, "holder": HOLDER}
            await client.set(f"policygate:mcp:{'1' * 32}", json.dumps(older))
            kept = await store.find("1" * 32, "user@example.com", "/mcp", HOLDER)
            found["no capabilities"] = kept.capabilities if kept is not None else "not found"
        return found


def test_a_session_is_found_only_with_the_credential_that_opened_it(shared_url: str | None) -> None:
    found = asyncio.run(_found_by(shared_url))
    assert found.pop(HOLDER) is True
    assert found.pop("capabilities") == {"sampling", "elicitation.form"}
    # A session stored before sessions kept capabilities is asked anything, as it was then.
    assert found.pop("no capabilities", None) is None
    assert not any(found.values()), found


async def _calls_after_close() -> tuple[bool, bool]:
    """Whether closing a session cancels its call, and leaves another session's alone."""
    store = SessionStore()
    closing = await _open(store, email="user@example.com")
    staying = await _open(store, email="user@example.com")
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
