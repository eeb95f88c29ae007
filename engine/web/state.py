"""The one object a gateway process holds: settings, current policy, keys and look-ups.

Kept on `app.extensions` rather than in module globals, so two apps (two tests, or two
policy sets) can live in one process without sharing anything.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any

from quart import current_app

from engine.cache import Cache, Directory, LocalCache
from engine.errors import PolicyError
from engine.reload import Engine
from engine.settings import Settings
from engine.signing import Keys
from engine.store.reading import FileReader
from engine.web.list_changes import SESSION_CLOSED, Change, Scope, event_of, recheck, tell_streams

__all__ = [
    "Gateway",
    "PolicyStatus",
    "close_session_streams",
    "gateway",
    "in_background",
    "notify",
    "notify_lists",
]

_KEY = "policygate"


@dataclass
class PolicyStatus:
    """What `GET /admin/policies/status` reports."""

    version: str
    loaded_at: float
    digest: str
    """The fingerprint of the files the policy in force was built from."""
    last_error: tuple[PolicyError, ...] = ()
    last_attempt_at: float | None = None
    reloads: int = 0


@dataclass
class Gateway:
    settings: Settings
    engine: Engine
    keys: Keys
    directory: Directory
    cache: Cache | None
    status: PolicyStatus
    store: Any = None
    reader: FileReader | None = None
    sealer: Any = None
    upstreams: dict[str, Any] = field(default_factory=dict)
    sessions: Any = None
    listeners: dict[asyncio.Queue[Change], str] = field(default_factory=dict)
    """This worker's open MCP event streams, each with its session's id."""
    last_used: dict[str, float] = field(default_factory=dict)
    counters: Any = field(default_factory=lambda: LocalCache(0))
    background: set[Any] = field(default_factory=set)
    """Every task of ours that outlives a request: held so it is not collected, and
    cancelled and awaited at shutdown (see in_background)."""
    verified: dict[str, Any] = field(default_factory=dict)
    asked: dict[tuple[str, str], Any] = field(default_factory=dict)
    """Questions put to MCP clients for an upstream, by (session, id): see mcp_asking."""
    fanout: Any = None
    """Events for the other workers, when they share a Redis: see engine.web.fanout."""
    supervisor: int | None = None
    """The pid of the `serve` process that started this worker among others, if any."""
    reload_lock: asyncio.Lock = field(default_factory=asyncio.Lock)


def in_background(gw: Gateway, work: Coroutine[Any, Any, object]) -> None:
    """Run `work` on its own task, held until it ends and cancelled at shutdown.

    For work no request waits for (a token-use write, a reload, an event to publish) and
    for the watchers that run as long as the worker (health checks, policy folders, the
    Redis subscription).
    """
    task = asyncio.ensure_future(work)
    gw.background.add(task)
    task.add_done_callback(gw.background.discard)


def notify(gw: Gateway, change: Change) -> None:
    """Tell the MCP event streams that may hear `change` that a list changed, in every worker."""
    tell_streams(gw.listeners, change)
    if gw.fanout is not None:
        gw.fanout.publish(event_of(change))


def close_session_streams(gw: Gateway, session_id: str) -> None:
    """The session was closed: its streams in every worker, and its calls in the other
    workers (`SessionStore.close` ended this one's), end now rather than at their next
    keep-alive or their own end (each stream asks again whether its caller may listen)."""
    recheck(gw.listeners, session_id)
    if gw.fanout is not None:
        gw.fanout.publish({"kind": SESSION_CLOSED, "session": session_id})


def notify_lists(gw: Gateway, scopes: tuple[Scope, ...], server: str | None = None) -> None:
    """Tools, resources and prompts all changed: an upstream's items came or went (they
    share its scope), or a virtual server's members changed (heard on its endpoint)."""
    for kind in ("tools", "resources", "prompts"):
        notify(gw, Change(f"notifications/{kind}/list_changed", scopes, server))


def gateway() -> Gateway:
    state: Gateway = current_app.extensions[_KEY]
    return state


def attach(app: Any, state: Gateway) -> None:
    app.extensions[_KEY] = state
