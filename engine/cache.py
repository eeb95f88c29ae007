"""What an authenticated request needs to know fast: its user and whether it is revoked.

Three ways to answer, chosen by how the gateway runs:

    Directory
    ├── LocalCache   one process, no Redis: every write passes through this process, so an
    │                in-memory copy (users with a TTL, the full revocation set) stays exact
    ├── RedisCache   REDIS_URL set: shared by every worker and instance; one pipelined
    │                round trip answers both questions, writes update it at once
    └── no cache     several workers without Redis: one store query per request

A revocation takes effect on the next request everywhere: it is written to the store and
to the cache before the API answers. A change to a user gives that user a new
generation; a row read from the store is cached under the generation seen before the
read, and a cached row of any other generation is a miss. So a worker that read a row
just before another worker changed it cannot put the old row back for the cache's
lifetime. Redis may evict any of these keys (under an allkeys-* policy) without either
guarantee breaking: what is lost reads as unknown, never as "not revoked" or "current".

When nothing can answer (store and cache down), the lookup reports "unknown" and the
policy's failure mode decides; it never guesses.

A revocation of an API token is kept until a day after the token expired, then pruned
from the store and the cache (`Directory.keep_pruned`), so neither grows for ever.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import secrets
import time
from collections.abc import Callable, Coroutine
from contextlib import suppress
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

from engine.decide import User
from engine.store.queries import fetch_principal, prune_revocations, revoked_jtis

__all__ = ["Cache", "Directory", "LocalCache", "Lookup", "RedisCache"]

log = logging.getLogger("policygate")

_MISS: Final = object()
_COUNTERS_MAX: Final = 100_000


@dataclass(frozen=True, slots=True)
class Lookup:
    """The user (None when unknown) and the revocation answer (None when unknown)."""

    user: User | None
    revoked: bool | None


class Cache(Protocol):
    async def lookup(self, email: str, jti: str | None) -> tuple[Any, bool | None, int]:
        """The cached user (or `_MISS`), the revocation answer (None when not known here)
        and the user's generation, to hand back to `store_user`."""

    async def store_user(self, user: User, generation: int) -> None:
        """Cache `user`, read from the store after `generation` was seen; a row of an
        older generation than the current one is never served."""

    async def forget_user(self, email: str) -> None:
        """The user changed in the store: drop the cached row and start a new generation."""

    async def add_revoked(self, jti: str) -> None: ...
    async def prime(self, jtis: list[str]) -> None: ...
    async def forget_revoked(self, jtis: list[str]) -> None:
        """The store dropped these revocations, of tokens long expired."""

    async def count(self, key: str, window_s: int, now: float, by: int = 1) -> int:
        """Add `by` requests to `key`'s current window; the window's total so far."""

    async def ping(self) -> bool: ...
    async def close(self) -> None: ...


@dataclass
class LocalCache:
    """Exact only while this process is the sole writer (one worker, no Redis)."""

    ttl_s: float
    clock: Callable[[], float] = time.monotonic
    users: dict[str, tuple[float, User]] = field(default_factory=dict)
    generations: dict[str, int] = field(default_factory=dict)
    """Per user changed since the start; one small entry per such user."""
    revoked: set[str] = field(default_factory=set)
    primed: bool = False
    counters: dict[str, tuple[int, float]] = field(default_factory=dict)
    """Each window's count, and when the window ends."""

    async def lookup(self, email: str, jti: str | None) -> tuple[Any, bool | None, int]:
        entry = self.users.get(email)
        user: Any = entry[1] if entry is not None and entry[0] > self.clock() else _MISS
        revoked = (jti in self.revoked if jti else False) if self.primed else None
        return user, revoked, self.generations.get(email, 0)

    async def store_user(self, user: User, generation: int) -> None:
        # The sole writer checks at write time: nothing else can change it in between.
        if self.ttl_s > 0 and self.generations.get(user.email, 0) == generation:
            self.users[user.email] = (self.clock() + self.ttl_s, user)

    async def forget_user(self, email: str) -> None:
        self.users.pop(email, None)
        self.generations[email] = self.generations.get(email, 0) + 1

    async def add_revoked(self, jti: str) -> None:
        self.revoked.add(jti)

    async def prime(self, jtis: list[str]) -> None:
        self.revoked.update(jtis)
        self.primed = True

    async def forget_revoked(self, jtis: list[str]) -> None:
        self.revoked.difference_update(jtis)

    async def count(self, key: str, window_s: int, now: float, by: int = 1) -> int:
        window = int(now) // window_s
        slot = f"{key}:{window}"
        if len(self.counters) > _COUNTERS_MAX and slot not in self.counters:
            # Windows that have ended go first: clearing everything would hand every
            # caller a fresh budget whenever someone sent enough distinct keys.
            self.counters = {k: v for k, v in self.counters.items() if v[1] > now}
            if len(self.counters) > _COUNTERS_MAX:
                self.counters.clear()
        total = self.counters.get(slot, (0, 0.0))[0] + by
        self.counters[slot] = (total, float((window + 1) * window_s))
        return total

    async def ping(self) -> bool:
        return True

    async def close(self) -> None:
        self.users.clear()


_REVOKED: Final = "policygate:revoked"
_PRIMED: Final = "\x00primed"
"""A member of the revocation set saying the set holds every revocation. Kept inside the
set: a Redis that evicts keys (an allkeys-* policy) takes the two together, so an
evicted set reads as unknown (the store is asked), never as empty."""
_PRIMED_KEY: Final = "policygate:revoked:primed"
"""The marker earlier versions keep beside the set, written and read as well: with
either marker missing the set is unknown, so during an upgrade a failed write on a
worker of either version unmarks the set for both."""
_GENERATION: Final = "policygate:user-generation:"
"""Per user, a random number drawn at the first look-up and anew at each change. Random
rather than counted: once the key expires or is evicted, the next look-up draws a fresh
one, which no row cached before can carry (a counter would start again at a value some
old row may hold)."""
_GENERATION_TTL_S: Final = 7 * 86400
"""How long a generation outlives its last change or first look-up. Its loss only costs
one store read, so it expires rather than keeping a key for every email ever seen."""


_FORGOTTEN_PER_CALL: Final = 1000
"""Jtis per SREM: the first prune after an upgrade may drop years of revocations, and one
command that size would hold Redis up for every other client."""


def _fresh_generation() -> int:
    return secrets.randbits(62)


@dataclass
class RedisCache:
    """Redis through `redis.asyncio`; keys are namespaced `policygate:`."""

    client: Any
    ttl_s: int

    async def lookup(self, email: str, jti: str | None) -> tuple[Any, bool | None, int]:
        async with self.client.pipeline(transaction=False) as pipe:
            pipe.get(f"policygate:user:{email}")
            pipe.get(f"{_GENERATION}{email}")
            pipe.sismember(_REVOKED, _PRIMED)
            pipe.exists(_PRIMED_KEY)
            pipe.sismember(_REVOKED, jti or "")
            raw, current, primed, marked, member = await pipe.execute()
        # INVARIANT: without both markers (a restart, an eviction or a failed write lost
        # the set's wholeness) a missing member proves nothing, so the store is asked.
        revoked = (bool(member) if jti else False) if primed and marked else None
        if current is None:
            # Never changed, or evicted: any cached row predates the generation drawn now.
            return _MISS, revoked, await self._start_generation(email)
        generation = int(current)
        user: Any = _MISS if raw is None else _user_from_json(raw, generation)
        return user, revoked, generation

    async def _start_generation(self, email: str) -> int:
        """The user's generation, drawn now unless another worker just drew one."""
        drawn = _fresh_generation()
        async with self.client.pipeline(transaction=False) as pipe:
            pipe.set(f"{_GENERATION}{email}", drawn, nx=True, ex=_GENERATION_TTL_S)
            pipe.get(f"{_GENERATION}{email}")
            _, current = await pipe.execute()
        return int(current) if current is not None else drawn

    async def store_user(self, user: User, generation: int) -> None:
        # Written whatever the generation is now: another worker may bump it at any
        # moment after a check, so readers compare instead (see `_user_from_json`).
        if self.ttl_s > 0:
            await self.client.set(f"policygate:user:{user.email}", _user_to_json(user, generation), ex=self.ttl_s)

    async def forget_user(self, email: str) -> None:
        async with self.client.pipeline(transaction=True) as pipe:
            pipe.set(f"{_GENERATION}{email}", _fresh_generation(), ex=_GENERATION_TTL_S)
            pipe.delete(f"policygate:user:{email}")
            await pipe.execute()

    async def add_revoked(self, jti: str) -> None:
        try:
            await self.client.sadd(_REVOKED, jti)
        except Exception:
            # SECURITY: the set may now miss this jti; without the primed member every
            # look-up asks the store instead, until the set is primed again.
            with suppress(Exception):
                await self.client.delete(_PRIMED_KEY)
            with suppress(Exception):
                await self.client.srem(_REVOKED, _PRIMED)
            raise

    async def prime(self, jtis: list[str]) -> None:
        async with self.client.pipeline(transaction=True) as pipe:
            pipe.sadd(_REVOKED, *jtis, _PRIMED)
            pipe.set(_PRIMED_KEY, "1")
            await pipe.execute()

    async def forget_revoked(self, jtis: list[str]) -> None:
        for first in range(0, len(jtis), _FORGOTTEN_PER_CALL):
            await self.client.srem(_REVOKED, *jtis[first : first + _FORGOTTEN_PER_CALL])

    async def count(self, key: str, window_s: int, now: float, by: int = 1) -> int:
        slot = f"policygate:rate:{key}:{int(now) // window_s}"
        async with self.client.pipeline(transaction=False) as pipe:
            pipe.incrby(slot, by)
            pipe.expire(slot, window_s + 1)
            value, _ = await pipe.execute()
        return int(value)

    async def ping(self) -> bool:
        try:
            return bool(await self.client.ping())
        except Exception:
            return False

    async def close(self) -> None:
        await self.client.aclose()


def _user_to_json(user: User, generation: int) -> str:
    return json.dumps(
        {
            "generation": generation,
            "email": user.email,
            "admin": user.admin,
            "active": user.active,
            "teams": sorted(user.teams),
            "roles": sorted(user.roles),
        }
    )


def _user_from_json(raw: str | bytes, generation: int) -> Any:
    """The cached user, or `_MISS` when the user changed after the row was read (or the
    row was written by a version that did not stamp it)."""
    data = json.loads(raw)
    if data.get("generation") != generation:
        return _MISS
    return User(data["email"], data["admin"], data["active"], frozenset(data["teams"]), frozenset(data["roles"]))


_PRIME_AGAIN_S: Final = 30.0
REVOCATION_OUTLIVES_S: Final = 86400
"""How long a revocation is kept after its token expired."""
PRUNE_EVERY_S: Final = 86400


@dataclass
class Directory:
    """User and revocation look-ups for the guard, through the cache when there is one."""

    cache: Cache | None
    spawn: Callable[[Coroutine[Any, Any, None]], None] | None = None
    """Runs work no request waits for, until it ends or the worker stops (the web layer's
    `in_background`); without it the revocation set is filled only at start."""
    _primed_at: float = field(default=-_PRIME_AGAIN_S, init=False)

    async def start(self) -> None:
        """Load the revocation set into the cache; until then the store is asked."""
        if self.cache is not None:
            await _prime(self.cache)

    async def lookup(self, email: str, jti: str | None) -> Lookup:
        cached_user: Any = _MISS
        revoked: bool | None = None
        generation: int | None = None
        if self.cache is not None:
            try:
                cached_user, revoked, generation = await self.cache.lookup(email, jti)
            except Exception as err:
                log.warning("cache look-up failed, asking the store: %s", type(err).__name__)
            else:
                if revoked is None:
                    self._prime_again(self.cache)
        if cached_user is not _MISS and revoked is not None:
            return Lookup(cached_user, revoked)
        try:
            user, stored_revoked = await fetch_principal(email, jti)
        except Exception as err:
            log.error("store look-up failed: %s", type(err).__name__)
            return Lookup(None if cached_user is _MISS else cached_user, None)
        # INVARIANT: the row is cached under the generation seen before it was read, so a
        # change made while we read leaves it unserved.
        if user is not None and self.cache is not None and generation is not None:
            with suppress(Exception):  # caching is an optimisation only
                await self.cache.store_user(user, generation)
        return Lookup(user, stored_revoked)

    async def prune(self, expired_before: dt.datetime) -> int:
        """Drop the revocations of API tokens that expired before `expired_before`, from
        the store and then the cache; how many. A cache that keeps one is harmless: the
        token is refused for its expiry."""
        jtis = await prune_revocations(expired_before)
        if jtis and self.cache is not None:
            await self.cache.forget_revoked(jtis)
        return len(jtis)

    async def keep_pruned(self) -> None:
        """Prune now and every `PRUNE_EVERY_S`, keeping each revocation a day past its
        token's expiry (far beyond any clock leeway); a failed round waits for the next."""
        while True:
            cutoff = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=REVOCATION_OUTLIVES_S)
            try:
                dropped = await self.prune(cutoff)
            except Exception as err:
                log.warning("could not prune expired revocations: %s", type(err).__name__)
            else:
                if dropped:
                    log.info("pruned %d revocations of tokens that expired before %s", dropped, cutoff.isoformat())
            await asyncio.sleep(PRUNE_EVERY_S)

    def _prime_again(self, cache: Cache) -> None:
        """Fill the revocation set again once the cache answers without it (Redis
        restarted, evicted it, or a failed write emptied it on purpose), at most every
        30 s, in the background: until then each look-up asks the store, which is exact
        but costs a query per request."""
        now = time.monotonic()
        if self.spawn is None or now - self._primed_at < _PRIME_AGAIN_S:
            return
        self._primed_at = now
        self.spawn(_prime_quietly(cache))

    async def user_changed(self, email: str) -> None:
        if self.cache is not None:
            await self.cache.forget_user(email)

    async def revoked(self, jti: str) -> None:
        """Tell the cache; the store already holds the revocation, so a cache failure is
        reported (the caller answers 503) but never leaves the jti usable."""
        if self.cache is not None:
            await self.cache.add_revoked(jti)


async def _prime(cache: Cache) -> None:
    """Fill the cache's revocation set from the store and mark it whole.

    The store is read twice. A revocation stored after the first read whose own cache
    write failed unmarks the set, and if that happened before this priming marked it,
    the mark would stand without the revocation; the second read adds it.
    """
    jtis = await revoked_jtis()
    await cache.prime(jtis)
    for jti in sorted(set(await revoked_jtis()).difference(jtis)):
        await cache.add_revoked(jti)  # unmarks the set again if it fails


async def _prime_quietly(cache: Cache) -> None:
    try:
        await _prime(cache)
    except Exception as err:
        log.warning("could not fill the revocation cache again: %s", type(err).__name__)
