"""Who hears that a list changed: streams whose caller can see a changed item, one per session.

A `list_changed` notification about an item the caller cannot see still tells them
that a hidden item exists and just changed, so every change carries the scopes
(visibility, team, owner) of what changed, before and after, and a stream passes it on
only when its caller sees one of them. The stream judges that when it is about to
send, with the caller's rights as they are then (see `mcp_endpoint.notifications`).

The MCP transport sends each server message on one of a session's streams, never on
all of them; a session that opened two GET streams hears a change once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any, Final, NamedTuple

from engine.decide import Visibility

__all__ = [
    "SESSION_CLOSED",
    "Change",
    "Scope",
    "change_from_event",
    "event_of",
    "recheck",
    "scope_of",
    "tell_streams",
]

Scope = tuple[str, str | None, str | None]
"""An item's (visibility, team_id, owner)."""


class Change(NamedTuple):
    method: str
    """The notification to send, such as `notifications/tools/list_changed`."""
    scopes: tuple[Scope, ...]
    server: str | None = None
    """A virtual server whose own lists changed: only the streams of its endpoint hear it."""

    def concerns(self, endpoint_server: str | None) -> bool:
        """Whether the lists of the endpoint serving `endpoint_server` (None: `/mcp`) may
        have changed, before anything is asked about the caller."""
        return self.server is None or self.server == endpoint_server

    def seen_by(self, sight: Visibility, viewer: str | None) -> bool:
        return any(sight.shows(*scope, viewer) for scope in self.scopes)


def scope_of(item: Any) -> Scope:
    """The scope of a catalog item, upstream or virtual server row."""
    return (item.visibility, item.team_id, item.owner)


def tell_streams(listeners: Mapping[asyncio.Queue[Change], str], change: Change) -> None:
    """Queue `change` on one open stream of each session listening in this worker."""
    told: set[str] = set()
    for queue, session in list(listeners.items()):
        if session not in told and not queue.full():
            queue.put_nowait(change)
            told.add(session)


_RECHECK: Final = Change("", ())
"""Seen by nobody: it only wakes a stream to ask whether its caller may still listen."""


SESSION_CLOSED: Final = "session_closed"
"""The fanout event that has the other workers `recheck` a session's streams."""


def recheck(listeners: Mapping[asyncio.Queue[Change], str], session: str) -> None:
    """Make every stream of `session` in this worker ask now, not at its next keep-alive,
    whether its caller may still listen: the session was just closed."""
    for queue, listening in list(listeners.items()):
        if listening == session and not queue.full():
            queue.put_nowait(_RECHECK)


def event_of(change: Change) -> dict[str, Any]:
    """`change` as the event published to the other workers."""
    return {"kind": "list_changed", "method": change.method, "scopes": change.scopes, "server": change.server}


def change_from_event(event: Mapping[str, Any]) -> Change | None:
    """The change another worker published; None when the event is not one."""
    method, scopes, server = event.get("method"), event.get("scopes"), event.get("server")
    if not isinstance(method, str) or not isinstance(scopes, list) or not isinstance(server, str | None):
        return None
    read: list[Scope] = []
    for scope in scopes:
        if not (isinstance(scope, list) and len(scope) == 3 and isinstance(scope[0], str)):
            return None
        if not all(isinstance(part, str | None) for part in scope[1:]):
            return None
        read.append((scope[0], scope[1], scope[2]))
    return Change(method, tuple(read), server)
