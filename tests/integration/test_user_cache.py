"""A user row read just before another worker changed that user is never served from the
cache afterwards, in the process and in a real Redis shared by two workers alike; and no
key a Redis may evict makes the cache serve such a row or forget a revocation."""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from redis.asyncio import Redis

from engine.cache import Cache, Directory, LocalCache, RedisCache
from engine.decide import User
from engine.store.models import ApiToken, Revocation
from engine.store.models import User as UserRow
from engine.store.queries import close_store, open_store

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


REVOKED_JTI = "jti-revoked"


def _database(redis_url: str, number: int) -> Redis:
    """A client of database `number`, which a test may flush without touching the others'."""
    return Redis.from_url(f"{redis_url.rsplit('/', 1)[0]}/{number}", decode_responses=True)


async def _evicted(redis_url: str, evicted: Sequence[str]) -> tuple[Any, bool | None, list[str]]:
    """The answer for a revoked token of a user whose cached row is stale, after Redis
    evicted the keys `evicted` (as an allkeys-* policy may), and the keys there were."""
    client = _database(redis_url, 3)
    reader, changer = RedisCache(client, 30), RedisCache(client, 30)
    try:
        await client.flushdb()
        await reader.prime([REVOKED_JTI])
        _, _, seen = await reader.lookup(ACTIVE.email, None)
        await changer.forget_user(ACTIVE.email)
        await reader.store_user(ACTIVE, seen)  # a row read before the change lands after it
        keys = sorted(await client.keys("*"))
        if evicted:
            await client.delete(*evicted)
        user, revoked, _ = await reader.lookup(ACTIVE.email, REVOKED_JTI)
        return user, revoked, keys
    finally:
        await client.aclose()


def test_no_eviction_makes_the_cache_serve_a_stale_user_or_forget_a_revocation(redis_url: str) -> None:
    """Every subset of the keys the cache wrote is evicted in turn: the stale row is never
    served, and the revoked token is reported revoked or unknown (then the store is
    asked), never as valid."""
    user, revoked, names = asyncio.run(_evicted(redis_url, []))
    assert not isinstance(user, User), "the stale row is a miss while every key is there"
    assert revoked is True
    assert len(names) >= 3
    for size in range(1, len(names) + 1):
        for subset in itertools.combinations(names, size):
            user, revoked, _ = asyncio.run(_evicted(redis_url, subset))
            assert not isinstance(user, User), f"a stale row was served after evicting {subset}"
            assert revoked is not False, f"a revoked token passed after evicting {subset}"


def test_a_revocation_an_older_worker_failed_to_cache_is_never_read_as_valid(redis_url: str) -> None:
    """Workers of the previous version mark the set whole with a key of their own and,
    when their write of a revocation fails, delete only that key. Until every worker is
    upgraded that must unmark the set for the new workers too."""

    async def run() -> bool | None:
        client = _database(redis_url, 4)
        try:
            await client.flushdb()
            cache = RedisCache(client, 30)
            await cache.prime([])
            assert (await cache.lookup(ACTIVE.email, "jti-new"))[1] is False
            await client.delete("policygate:revoked:primed")  # an older worker's failed revocation
            return (await cache.lookup(ACTIVE.email, "jti-new"))[1]
        finally:
            await client.aclose()

    assert asyncio.run(run()) is None


def test_a_generation_expires_and_its_loss_only_costs_a_read(redis_url: str) -> None:
    """Generation keys expire rather than pile up for every email ever looked up; once one
    is gone, a row cached under it is a miss, never served."""

    async def run() -> tuple[list[int], Any]:
        client = _database(redis_url, 5)
        try:
            await client.flushdb()
            cache = RedisCache(client, 30)
            await cache.lookup("drawn@example.com", None)
            await cache.forget_user(ACTIVE.email)
            _, _, current = await cache.lookup(ACTIVE.email, None)
            await cache.store_user(ACTIVE, current)
            assert (await cache.lookup(ACTIVE.email, None))[0] == ACTIVE
            lives = [
                await client.ttl(f"policygate:user-generation:{email}") for email in ("drawn@example.com", ACTIVE.email)
            ]
            await client.delete(f"policygate:user-generation:{ACTIVE.email}")  # as if it expired
            return lives, (await cache.lookup(ACTIVE.email, None))[0]
        finally:
            await client.aclose()

    lives, after = asyncio.run(run())
    assert all(0 < life <= 7 * 86400 for life in lives), lives
    assert not isinstance(after, User), "a row cached under a lost generation was served"


async def _pruned(url: str | None, folder: Path) -> tuple[int, list[str], list[bool | None]]:
    """Revocations of four tokens: two API tokens long expired, one still valid, and one
    the gateway never issued. What a prune drops, what the store keeps, and what the cache
    then says of each."""
    store = await open_store(f"sqlite://{folder / 'store.db'}")
    client = Redis.from_url(url, decode_responses=True) if url else None
    cache: Cache = RedisCache(client, 30) if client else LocalCache(30)
    try:
        if client is not None:
            await client.flushdb()
        owner = await UserRow.create(email=ACTIVE.email, password_hash="x")
        now = dt.datetime.now(dt.UTC)
        lives = {"old-1": -3, "old-2": -2, "valid": 30}
        for jti, days in lives.items():
            await ApiToken.create(jti=jti, owner=owner, name=jti, expires_at=now + dt.timedelta(days=days))
        jtis = [*lives, "foreign"]
        for jti in jtis:
            await Revocation.create(jti=jti, revoked_by="admin@example.com")
        directory = Directory(cache)
        await directory.start()
        dropped = await directory.prune(now - dt.timedelta(days=1))
        kept = sorted(await Revocation.all().values_list("jti", flat=True))
        revoked = [(await cache.lookup(ACTIVE.email, jti))[1] for jti in jtis]
        return dropped, kept, revoked
    finally:
        if client is not None:
            await client.flushdb()
            await client.aclose()
        await close_store(store)


def test_revocations_of_long_expired_tokens_are_pruned(shared_url: str | None, tmp_path: Path) -> None:
    """The store and the cache drop them; a valid token's revocation and one of a token
    the gateway never issued (its expiry unknown) stay."""
    dropped, kept, revoked = asyncio.run(_pruned(shared_url, tmp_path))
    assert (dropped, kept) == (2, ["foreign", "valid"])
    assert revoked == [False, False, True, True]
