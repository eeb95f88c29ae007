"""MCP sessions: ids made by the gateway, bound to the credential and endpoint that opened them.

A session id is 128 random bits; presenting it with another credential (even another
token of the same user) or at another endpoint is the same as presenting an unknown one
(404), so ids cannot be borrowed, and a session ends for good with its token. Sessions
live in Redis when the gateway has it (shared by every worker), otherwise in the process.

A user holds at most `PER_USER` sessions: opening one more closes their oldest, so one
account cannot fill the store, and a client whose session went that way is answered 404
and initializes again, as the protocol has it.

Closing a session ends the streamed calls it has running in this process, with the
questions they wait on, rather than leaving them to run out their timeouts.
"""

from __future__ import annotations

import asyncio
import functools
import json
import secrets
import time
from dataclasses import dataclass
from typing import Any, Final

__all__ = ["PER_USER", "McpSession", "SessionStore"]

_TTL: Final = 24 * 3600
PER_USER: Final = 64


@dataclass(frozen=True, slots=True)
class McpSession:
    id: str
    email: str
    endpoint: str
    version: str
    holder: str
    """The credential that opened it, which alone may use it (see mcp_endpoint `_holder`)."""


class SessionStore:
    def __init__(self, redis: Any = None) -> None:
        self._redis = redis
        self._local: dict[str, tuple[float, McpSession]] = {}
        self._owned: dict[str, list[str]] = {}
        """Each user's session ids in the process, oldest first."""
        self._calls: dict[str, set[asyncio.Task[Any]]] = {}
        """Each session's calls running in this process, to end with it."""

    async def open(self, email: str, endpoint: str, version: str, holder: str) -> McpSession:
        session = McpSession(secrets.token_hex(16), email, endpoint, version, holder)
        if self._redis is not None:
            value = json.dumps({"email": email, "endpoint": endpoint, "version": version, "holder": holder})
            owned = _owned_key(email)
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.set(_key(session.id), value, ex=_TTL)
                pipe.rpush(owned, session.id)
                pipe.lrange(owned, 0, -PER_USER - 1)
                pipe.ltrim(owned, -PER_USER, -1)
                pipe.expire(owned, _TTL)
                results = await pipe.execute()
            if results[2]:
                await self._redis.delete(*(_key(old) for old in results[2]))
        else:
            if len(self._local) > 100_000:
                self._evict()
            self._local[session.id] = (time.monotonic() + _TTL, session)
            owned_ids = self._owned.setdefault(email, [])
            owned_ids.append(session.id)
            while len(owned_ids) > PER_USER:
                self._local.pop(owned_ids.pop(0), None)
        return session

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
                session = McpSession(
                    session_id, data["email"], data["endpoint"], data["version"], data.get("holder", "")
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
        for call in self._calls.pop(session.id, set()):
            call.cancel()
        if self._redis is not None:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.delete(_key(session.id))
                pipe.lrem(_owned_key(session.email), 0, session.id)
                await pipe.execute()
        else:
            self._local.pop(session.id, None)
            self._disown(session.email, session.id)

    def _evict(self) -> None:
        now = time.monotonic()
        for key, (expires, session) in list(self._local.items()):
            if expires <= now:
                del self._local[key]
                self._disown(session.email, key)

    def _disown(self, email: str, session_id: str) -> None:
        owned = self._owned.get(email)
        if owned is not None and session_id in owned:
            owned.remove(session_id)
            if not owned:
                del self._owned[email]


def _key(session_id: str) -> str:
    return f"policygate:mcp:{session_id}"


def _owned_key(email: str) -> str:
    return f"policygate:mcp-user:{email}"
