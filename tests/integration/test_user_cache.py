"""A user row read just before another worker changed that user is never served from the
cache afterwards, in the process and in a real Redis shared by two workers alike."""

from __future__ import annotations

import asyncio

from redis.asyncio import Redis

from engine.cache import Cache, LocalCache, RedisCache
from engine.decide import User

ACTIVE = User("dev@example.com", False, True, frozenset({"team-a"}), frozenset({"developer"}))


async def _race(url: str | None) -> tuple[bool, bool]:
    """Worker A misses and reads the row; worker B changes the user (store first, then the
    cache); A then caches the row it read. Whether A's row is served afterwards, and
    whether a row read after the change is."""
    clients = [Redis.from_url(url, decode_responses=True) for _ in range(2)] if url else []
    reader: Cache
    changer: Cache
    if url:
        reader, changer = RedisCache(clients[0], 30), RedisCache(clients[1], 30)
    else:
        reader = changer = LocalCache(30)
    try:
        await changer.forget_user(ACTIVE.email)  # a clean start for this run
        user, _, seen = await reader.lookup(ACTIVE.email, None)
        assert user is not ACTIVE
        await changer.forget_user(ACTIVE.email)  # say, the account was just disabled
        await reader.store_user(ACTIVE, seen)
        stale_served = (await reader.lookup(ACTIVE.email, None))[0] == ACTIVE
        _, _, now = await reader.lookup(ACTIVE.email, None)
        await reader.store_user(ACTIVE, now)
        fresh_served = (await changer.lookup(ACTIVE.email, None))[0] == ACTIVE
        return stale_served, fresh_served
    finally:
        for client in clients:
            await client.aclose()


def test_a_row_read_before_a_change_is_never_served_after_it(shared_url: str | None) -> None:
    stale_served, fresh_served = asyncio.run(_race(shared_url))
    assert not stale_served, "the cache served a user row older than the user's last change"
    assert fresh_served, "a row read after the change is cached as usual"
