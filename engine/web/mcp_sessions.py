"""MCP sessions: ids made by the gateway, bound to the credential and endpoint that opened them.

A session id is 128 random bits; presenting it with another credential (even another
token of the same user) or at another endpoint is the same as presenting an unknown one
(404), so ids cannot be borrowed, and a session ends for good with its token. Sessions
live in Redis when the gateway has it (shared by every worker), otherwise in the process.

A user holds at most `PER_USER` sessions: opening one more closes their oldest, so one
account cannot fill the store, and a client whose session went that way is answered 404
and initializes again, as the protocol has it; a client that never closes its sessions
keeps working. A worker without Redis holds at most `LOCAL_TOTAL` in all (Redis has its
own memory limit): past that, a new session closes the oldest of the user holding the
most, so that many accounts flooding the store lock nobody else out.

A session keeps what its client declared it can take among the questions an upstream
may put to it (engine.web.mcp_asking), so that a question it cannot answer is refused
at once instead of waiting on it.

Closing a session ends the streamed calls it has running, in every worker sharing it,
with the questions they wait on, rather than leaving them to run out their timeouts.
"""

from __future__ import annotations

import asyncio
import functools
import json
import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Final

__all__ = ["LOCAL_TOTAL", "PER_USER", "McpSession", "SessionStore"]

_TTL: Final = 24 * 3600

PER_USER: Final = 64
"""Sessions one user may hold at once, as reverse-proxy sessions allow an owner
(engine.web.sessions): a client needs one per connection it keeps to an endpoint."""

LOCAL_TOTAL: Final = 50_000
"""Sessions the in-process store holds at most, all users together. A session takes
under 1 KiB there (about 940 bytes measured with tracemalloc), so the store stays under
50 MiB, and a gateway without Redis serves far fewer clients than this."""


@dataclass(frozen=True, slots=True)
class McpSession:
    id: str
    email: str
    endpoint: str
    version: str
    holder: str
    """The credential that opened it, which alone may use it (see mcp_endpoint `_holder`)."""
    capabilities: frozenset[str] | None
    """What its client declared it takes (mcp_asking `declared`); None for a session
    stored in Redis before sessions kept it, whose client is asked anything, as then."""


class SessionStore:
    def __init__(self, redis: Any = None) -> None:
        self._redis = redis
        self._local: OrderedDict[str, tuple[float, McpSession]] = OrderedDict()
        """The process's sessions with their expiry, oldest first."""
        self._owned: dict[str, list[str]] = {}
        """Each user's session ids in the process, oldest first."""
        self._calls: dict[str, set[asyncio.Task[Any]]] = {}
        """Each session's calls running in this process, to end with it."""

    async def open(
        self, email: str, endpoint: str, version: str, holder: str, capabilities: frozenset[str]
    ) -> McpSession:
        """A new session for `holder`, closing the user's oldest past `PER_USER`, and in a
        process holding `LOCAL_TOTAL` the oldest of the user holding the most."""
        session = McpSession(secrets.token_hex(16), email, endpoint, version, holder, capabilities)
        if self._redis is not None:
            record = {
                "email": email,
                "endpoint": endpoint,
                "version": version,
                "holder": holder,
                "capabilities": sorted(capabilities),
            }
            owned = _owned_key(email)
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.set(_key(session.id), json.dumps(record), ex=_TTL)
                pipe.rpush(owned, session.id)
                pipe.lrange(owned, 0, -PER_USER - 1)
                pipe.ltrim(owned, -PER_USER, -1)
                pipe.expire(owned, _TTL)
                results = await pipe.execute()
            if results[2]:
                await self._redis.delete(*(_key(old) for old in results[2]))
                for old in results[2]:
                    self.end_calls(old)
            return session
        self._sweep(time.monotonic())
        if len(self._owned.get(email, ())) >= PER_USER:
            self._close_oldest(email)
        elif len(self._local) >= LOCAL_TOTAL:
            # Room is made at the expense of whoever holds the most: nobody is refused,
            # and accounts that flood the store lose their own sessions first.
            self._close_oldest(max(self._owned, key=lambda user: len(self._owned[user])))
        self._local[session.id] = (time.monotonic() + _TTL, session)
        self._owned.setdefault(email, []).append(session.id)
        return session

    def _close_oldest(self, email: str) -> None:
        oldest = self._owned[email][0]
        self.end_calls(oldest)
        self._forget(oldest, email)

    async def find(self, session_id: str, email: str, endpoint: str, holder: str) -> McpSession | None:
        """The session, if `holder` opened it as `email` at `endpoint`; None otherwise,
        exactly as for an id never made, so a refusal does not confirm the id exists."""
        session: McpSession | None = None
        if self._redis is not None:
            raw = await self._redis.get(_key(session_id))
            if raw is not None:
                data = json.loads(raw)
                # SECURITY: a session stored without a holder (before sessions had one)
                # is bound to nobody and found by nobody; its client initializes again.
                kept = data.get("capabilities")
                session = McpSession(
                    session_id,
                    data["email"],
                    data["endpoint"],
                    data["version"],
                    data.get("holder", ""),
                    frozenset(kept) if isinstance(kept, list) else None,
                )
        else:
            entry = self._local.get(session_id)
            if entry is not None and entry[0] > time.monotonic():
                session = entry[1]
        if session is None or (session.email, session.endpoint, session.holder) != (email, endpoint, holder):
            return None
        return session

    def hold(self, session_id: str, call: asyncio.Task[Any]) -> None:
        """Keep `call` until it ends, so that closing its session ends it too."""
        self._calls.setdefault(session_id, set()).add(call)
        call.add_done_callback(functools.partial(self._release, session_id))

    def _release(self, session_id: str, call: asyncio.Task[Any]) -> None:
        calls = self._calls.get(session_id)
        if calls is not None:
            calls.discard(call)
            if not calls:
                del self._calls[session_id]

    async def close(self, session: McpSession) -> None:
        """Forget `session` and end the calls it has running in this process."""
        self.end_calls(session.id)
        if self._redis is not None:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.delete(_key(session.id))
                pipe.lrem(_owned_key(session.email), 0, session.id)
                await pipe.execute()
        else:
            self._forget(session.id, session.email)

    def end_calls(self, session_id: str) -> None:
        """End the calls the session has running in this process: it was closed here, or
        in another worker, which says so over the fanout."""
        for call in self._calls.pop(session_id, set()):
            call.cancel()

    def _sweep(self, now: float) -> None:
        """Forget the sessions that have expired, which are the oldest ones.

        Each session is looked at once, when it has expired: the store holds at most
        `LOCAL_TOTAL`, and every open would otherwise pay for them all.
        """
        # INVARIANT: every session lives `_TTL` from its opening on the monotonic clock,
        # so the order they were opened in is the order they expire in.
        while self._local:
            expires, session = next(iter(self._local.values()))
            if expires > now:
                return
            self._forget(session.id, session.email)

    def _forget(self, session_id: str, email: str) -> None:
        self._local.pop(session_id, None)
        owned = self._owned.get(email)
        if owned is not None and session_id in owned:
            owned.remove(session_id)
            if not owned:
                del self._owned[email]


def _key(session_id: str) -> str:
    return f"policygate:mcp:{session_id}"


def _owned_key(email: str) -> str:
    return f"policygate:mcp-user:{email}"
