"""Admissions `decide` has already made, so that a repeated request is not worked out again.

A gateway hears the same request over and over: one client, one token, one endpoint,
call after call, and the guard and the MCP endpoint each ask about it. Admission (the
route, the credentials, the token rules, the scopes, the permission) is a pure function
of the snapshot and those facts, so a memo kept with the snapshot gives it back without
walking the routes, the token rules and the truth table again. A reload builds a new
snapshot, and with it an empty memo. Rate counters and content change from one request
to the next; `decide` judges them after admission every time, so they are not part of
the key.

What makes this safe is the key: every other fact of the context, except the time. Time
enters admission through the token's `exp`, `nbf`, `iat` and lifetime, and an admitted
token stays admitted over one interval, which is kept with the answer and checked on
every hit. A token with time windows is never kept. Only admissions are kept, never
refusals. Tokens are compared by identity (the shell keeps each verified token once) and
users by identity or, for a user the store rebuilt, by value.
"""

from __future__ import annotations

from math import inf
from typing import Any, Final

from engine.decide.model import Decision, RequestContext, Token, User
from engine.decide.tokens import TokenTable, admitted_between

__all__ = ["KEYED_FIELDS", "DecisionMemo"]

KEYED_FIELDS: Final = frozenset(
    {"method", "path", "now", "client_ip", "auth", "token", "user", "revoked", "mcp_method", "content", "rate"}
)
"""The context fields the memo accounts for; a test fails when `RequestContext` grows."""

_Key = tuple[Any, ...]
_Entry = tuple[Token | None, User | None, float, float, Decision]


class DecisionMemo:
    """A bounded map from a request's facts to the admission they got.

    Bounded by forgetting everything once full: a caller that sprays distinct paths or
    tokens only ever costs a miss, never memory.
    """

    __slots__ = ("_entries", "_limit")

    def __init__(self, limit: int = 4096) -> None:
        self._entries: dict[_Key, _Entry] = {}
        self._limit = limit

    def __len__(self) -> int:
        return len(self._entries)

    @staticmethod
    def key(ctx: RequestContext) -> _Key:
        """The facts admission depends on, but for the time, which `recall` checks."""
        user = ctx.user
        # Enum members hash through a Python-level method; they are singletons, so their
        # identity is as good a key and far cheaper.
        return (
            ctx.method,
            ctx.path,
            ctx.mcp_method,
            id(ctx.auth),
            ctx.client_ip,
            ctx.revoked,
            id(ctx.token),
            None if user is None else user.email,
        )

    def recall(self, key: _Key, ctx: RequestContext) -> Decision | None:
        """The admission kept under `key`, if it still holds at this context's time."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        token, user, earliest, latest, decision = entry
        if token is not ctx.token or not (user is ctx.user or user == ctx.user):
            return None
        if not earliest <= ctx.now <= latest:
            return None
        return decision

    def keep(self, key: _Key, ctx: RequestContext, tokens: TokenTable, decision: Decision) -> None:
        """Remember an admission for as long as its token passes the time checks."""
        token = ctx.token
        if not decision.allow:
            return
        if token is None:
            earliest, latest = -inf, inf
        elif token.windows is not None:
            return
        else:
            earliest, latest = admitted_between(tokens, token)
        if len(self._entries) >= self._limit:
            self._entries.clear()
        self._entries[key] = (token, ctx.user, earliest, latest, decision)
