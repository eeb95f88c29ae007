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

__all__ = ["Gateway", "PolicyStatus", "gateway", "in_background", "notify", "notify_upstream_lists", "tell_streams"]

_KEY = "policygate"


@dataclass
class PolicyStatus:
    """What `GET /admin/policies/status` reports."""

    version: str
    loaded_at: float
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
    listeners: set[Any] = field(default_factory=set)
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


def in_background(gw: Gateway, work: Coroutine[Any, Any, None]) -> None:
    """Run `work` on its own task, held until it ends and cancelled at shutdown.

    For work no request waits for (a token-use write, a reload, an event to publish) and
    for the watchers that run as long as the worker (health checks, policy folders, the
    Redis subscription).
    """
    task = asyncio.ensure_future(work)
    gw.background.add(task)
    task.add_done_callback(gw.background.discard)


def notify(gw: Gateway, method: str) -> None:
    """Tell every open MCP event stream that a list changed, in every worker."""
    tell_streams(gw, method)
    if gw.fanout is not None:
        gw.fanout.publish({"kind": "list_changed", "method": method})


def notify_upstream_lists(gw: Gateway) -> None:
    """An upstream's items came or went: its tools, resources and prompts all changed."""
    for kind in ("tools", "resources", "prompts"):
        notify(gw, f"notifications/{kind}/list_changed")


def tell_streams(gw: Gateway, method: str) -> None:
    """Tell this worker's open MCP event streams that a list changed."""
    for queue in list(gw.listeners):
        if not queue.full():
            queue.put_nowait(method)


def gateway() -> Gateway:
    state: Gateway = current_app.extensions[_KEY]
    return state


def attach(app: Any, state: Gateway) -> None:
    app.extensions[_KEY] = state
