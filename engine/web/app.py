"""`create_app(settings)`: the gateway as a Quart application, with no module-level state.

The policy is built and the keys are loaded here, before any socket is opened, so a bad
policy or an unsafe production setting stops the start with a clear message. The store,
the cache and the reload triggers are process-wide resources opened in `before_serving`
and closed in `after_serving`.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import socket
import time
from pathlib import Path
from typing import Any

from quart import Quart

from engine.cache import Cache, Directory, LocalCache, RedisCache
from engine.federation.sealing import sealer_for
from engine.policy_files import BuiltPolicy, load_policy
from engine.reload import Engine
from engine.settings import Settings
from engine.store.queries import bootstrap_admin, close_store, open_store
from engine.store.reading import file_reader
from engine.web import (
    admin,
    bulk,
    catalog,
    gateways,
    identity,
    invoke,
    mcp_endpoint,
    public,
    sessions,
    teams,
    tokens,
)
from engine.web.failures import failure_response
from engine.web.fanout import Fanout
from engine.web.guard import after_request, guard
from engine.web.list_changes import SESSION_CLOSED, change_from_event, recheck, tell_streams
from engine.web.mcp_asking import give_answer
from engine.web.mcp_lane import McpLane
from engine.web.mcp_sessions import SessionStore
from engine.web.reloading import RELOAD_EVENT, release_free_memory, reload_policies, start_reload_triggers
from engine.web.startup import check_startup
from engine.web.state import Gateway, PolicyStatus, attach, gateway, in_background
from engine.web.upstream_health import watch_upstreams

__all__ = ["MAX_BODY_BYTES", "create_app"]

log = logging.getLogger("policygate")

MAX_BODY_BYTES = 1 << 20
"""REST bodies are small; MCP bodies get their own limit from the policy."""


def create_app(settings: Settings, *, policy: BuiltPolicy | None = None, supervisor: int | None = None) -> Quart:
    """Build the app for `settings`; `policy`, built already, skips reading the policy folders.

    `supervisor` is the pid of the `serve` process when this app is one of its workers:
    a reload asked of one worker reaches the others through it.

    Raises:
        PolicyErrors: the policy does not build.
        SettingsError: keys are missing or production settings are unsafe.
    """
    snapshot, digest = policy or load_policy(settings.policy_paths)
    keys = check_startup(settings, snapshot)
    app = Quart("policygate")
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY_BYTES
    app.config["PROVIDE_AUTOMATIC_OPTIONS"] = False
    state = Gateway(
        settings=settings,
        engine=Engine(snapshot),
        keys=keys,
        directory=Directory(None),
        cache=None,
        status=PolicyStatus(version=snapshot.version, loaded_at=time.time(), digest=digest),
        supervisor=supervisor,
    )
    attach(app, state)
    for module in (mcp_endpoint, public, identity, tokens, teams, admin, sessions, catalog, bulk, gateways, invoke):
        app.register_blueprint(module.blueprint)
    app.before_request(guard)
    app.after_request(after_request)
    app.register_error_handler(Exception, failure_response)
    app.before_serving(_start)
    app.after_serving(_stop)
    # Quart's documented place for ASGI middleware: servers and test clients both call it.
    app.asgi_app = McpLane(app, app.asgi_app)  # type: ignore[method-assign]
    return app


async def _start() -> None:
    gw = gateway()
    settings = gw.settings
    gw.store = await open_store(settings.store_url)
    gw.reader = file_reader(settings.store_url)
    if await bootstrap_admin(settings.platform_admin_email, settings.platform_admin_password):
        log.info("created the platform admin account")
    gw.sealer = sealer_for(settings.auth_encryption_secret, Path(settings.data_dir))
    gw.cache = await _open_cache(settings)
    gw.directory = Directory(gw.cache, functools.partial(in_background, gw))
    gw.sessions = SessionStore(gw.cache.client if isinstance(gw.cache, RedisCache) else None)
    if settings.redis_url:
        gw.fanout = await _open_fanout(gw, settings.redis_url)
    await gw.directory.start()
    in_background(gw, gw.directory.keep_pruned())
    start_reload_triggers(gw)
    if settings.health_check_interval:
        in_background(gw, watch_upstreams(gw))
    release_free_memory()


async def _open_cache(settings: Settings) -> Cache | None:
    if settings.redis_url:
        from redis.asyncio import Redis

        client: Any = Redis.from_url(settings.redis_url, decode_responses=True, socket_timeout=2)
        await client.ping()
        return RedisCache(client, settings.cache_ttl_seconds)
    if settings.workers == 1 and settings.store_url.startswith("sqlite://"):
        # Exact only while this process is the store's sole writer: one worker on a local
        # SQLite file. A shared PostgreSQL may be written by other instances.
        return LocalCache(settings.cache_ttl_seconds)
    log.warning("no REDIS_URL: every authenticated request asks the store (no shared cache)")
    return None


async def _open_fanout(gw: Gateway, redis_url: str) -> Fanout:
    from redis.asyncio import Redis

    def deliver(event: dict[str, Any]) -> None:
        if event.get("kind") == "list_changed" and (change := change_from_event(event)) is not None:
            tell_streams(gw.listeners, change)
        elif event.get("kind") == "answer" and isinstance(event.get("session"), str):
            give_answer(gw, event["session"], event.get("message"))
        elif event.get("kind") == SESSION_CLOSED and isinstance(event.get("session"), str):
            gw.sessions.end_calls(event["session"])
            recheck(gw.listeners, event["session"])
        elif event.get("kind") == RELOAD_EVENT:
            in_background(gw, reload_policies(gw, trigger="another instance"))

    # Its own connection, without the cache's socket timeout: a subscription is quiet
    # for as long as nothing changes.
    # TCP keep-alives: a connection a NAT or failover drops without a reset would
    # otherwise leave the subscription waiting for ever, silently deaf.
    keepalive = {socket.TCP_KEEPIDLE: 30, socket.TCP_KEEPINTVL: 10, socket.TCP_KEEPCNT: 3}
    client = Redis.from_url(redis_url, decode_responses=True, socket_keepalive=True, socket_keepalive_options=keepalive)
    fanout = Fanout(client, deliver, lambda work: in_background(gw, work))
    subscribed = asyncio.Event()
    in_background(gw, fanout.listen(subscribed))
    await asyncio.wait_for(subscribed.wait(), timeout=5)
    return fanout


async def _stop() -> None:
    gw = gateway()
    # Every task of ours ends before what it uses is closed: a token-use write or a
    # reload must not meet a closed store, nor be destroyed while still pending.
    running = list(gw.background)
    for task in running:
        task.cancel()
    await asyncio.gather(*running, return_exceptions=True)
    if gw.fanout is not None:
        await gw.fanout.close()
    for client in gw.upstreams.values():
        await client.close()
    if gw.cache is not None:
        await gw.cache.close()
    if gw.reader is not None:
        gw.reader.close()
    if gw.store is not None:
        await close_store(gw.store)
