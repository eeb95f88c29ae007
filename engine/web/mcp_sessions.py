"""MCP sessions: ids made by the gateway, bound to the user and endpoint that opened them.

A session id is 128 random bits; presenting it from another user or another endpoint
is the same as presenting an unknown one (404), so ids cannot be borrowed. Sessions live
in Redis when the gateway has it (shared by every worker), otherwise in the process.
"""

from __future__ import annotations

import json
import secrets
import time
from dataclasses import dataclass
from typing import Any, Final

__all__ = ["McpSession", "SessionStore"]

_TTL: Final = 24 * 3600


@dataclass(frozen=True, slots=True)
class McpSession:
    id: str
    email: str
    endpoint: str
    version: str


class SessionStore:
    def __init__(self, redis: Any = None) -> None:
        self._redis = redis
        self._local: dict[str, tuple[float, McpSession]] = {}

    async def open(self, email: str, endpoint: str, version: str) -> McpSession:
        session = McpSession(secrets.token_hex(16), email, endpoint, version)
        if self._redis is not None:
            value = json.dumps({"email": email, "endpoint": endpoint, "version": version})
            await self._redis.set(f"policygate:mcp:{session.id}", value, ex=_TTL)
        else:
            if len(self._local) > 100_000:
                self._evict()
            self._local[session.id] = (time.monotonic() + _TTL, session)
        return session

    async def find(self, session_id: str, email: str, endpoint: str) -> McpSession | None:
        session: McpSession | None = None
        if self._redis is not None:
            raw = await self._redis.get(f"policygate:mcp:{session_id}")
            if raw is not None:
                data = json.loads(raw)
                session = McpSession(session_id, data["email"], data["endpoint"], data["version"])
        else:
            entry = self._local.get(session_id)
            if entry is not None and entry[0] > time.monotonic():
                session = entry[1]
        if session is None or session.email != email or session.endpoint != endpoint:
            return None
        return session

    async def close(self, session: McpSession) -> None:
        if self._redis is not None:
            await self._redis.delete(f"policygate:mcp:{session.id}")
        else:
            self._local.pop(session.id, None)

    def _evict(self) -> None:
        now = time.monotonic()
        for key in [k for k, (expires, _) in self._local.items() if expires <= now]:
            del self._local[key]
