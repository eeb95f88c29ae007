"""Upstream health: a `ping` to every upstream each interval, and the catalog kept in step.

Discovery happens when an upstream is registered or refreshed; an upstream that goes
down later would otherwise keep its tools listed, and one that was down at
registration would stay empty until someone refreshed it. So each worker pings every
upstream every `HEALTH_CHECK_INTERVAL` seconds:

- after `UNHEALTHY_THRESHOLD` failed pings in a row, the upstream's items become
  unavailable (gone from every list; a call answers `not_available`) and its status
  `unreachable`;
- the first ping that succeeds again rediscovers it through the same sync as a refresh,
  so its items come back only after the pin and content checks.

Both changes are compare-and-set on the status in the store: with several workers
pinging the same upstream, one of them acts on each change and tells the MCP clients.
"""

from __future__ import annotations

import asyncio
import logging

from quart import current_app, g

from engine.federation.sync import mark_unreachable
from engine.federation.upstream import UpstreamError
from engine.store.catalog import Upstream
from engine.store.queries import use_store
from engine.web.gateways import discover, upstream_client
from engine.web.list_changes import scope_of
from engine.web.state import Gateway, notify_lists

__all__ = ["watch_upstreams"]

log = logging.getLogger("policygate")


async def watch_upstreams(gw: Gateway) -> None:
    """Ping every upstream each interval until cancelled; one bad round never ends it.

    Started from the app's start-up, whose app this task inherits; each round has an app
    context of its own, so `g` starts empty every time.
    """
    failures: dict[str, int] = {}
    recovering: set[str] = set()
    while True:
        await asyncio.sleep(gw.settings.health_check_interval)
        async with current_app.app_context():
            use_store(gw.store)
            g.snapshot = gw.engine.current
            rows = await _upstreams()
            present = {row.id for row in rows}
            failures = {k: n for k, n in failures.items() if k in present}
            # Recovering then and now: the worker rediscovering it has gone.
            stuck, recovering = recovering, {row.id for row in rows if row.status == "recovering"}
            stuck &= recovering
            for row in rows:
                try:
                    await _check(gw, row, failures, stuck)
                except Exception as err:  # the store, or credentials that no longer open
                    log.warning("health check of upstream `%s` failed: %s", row.name, type(err).__name__)


async def _upstreams() -> list[Upstream]:
    try:
        return await Upstream.all()
    except Exception as err:  # the store cannot answer; try again next round
        log.warning("upstream health checks skipped a round: %s", type(err).__name__)
        return []


async def _check(gw: Gateway, row: Upstream, failures: dict[str, int], stuck: set[str]) -> None:
    try:
        async with asyncio.timeout(gw.settings.health_check_timeout):
            await upstream_client(gw, row).request("ping", queued=False)
    except (UpstreamError, TimeoutError) as err:
        failures[row.id] = failures.get(row.id, 0) + 1
        if failures[row.id] >= gw.settings.unhealthy_threshold:
            await _went_down(gw, row, _reason(err))
        return
    failures.pop(row.id, None)
    if (row.status == "unreachable" or row.id in stuck) and await _claim_recovery(row):
        report = await discover(row)
        log.info("upstream `%s` answers again: %d tools rediscovered", row.name, report.tools)


def _reason(err: UpstreamError | TimeoutError) -> str:
    """Why the upstream counts as down, as the API and the log show it."""
    if isinstance(err, TimeoutError):
        return "the upstream did not answer the health check in time"
    return err.in_own_words("the health check")


async def _went_down(gw: Gateway, row: Upstream, reason: str) -> None:
    if await mark_unreachable(row, reason):
        log.warning("upstream `%s` is unreachable: %s", row.name, reason)
        notify_lists(gw, (scope_of(row),))


async def _claim_recovery(row: Upstream) -> bool:
    """Whether this worker is the one to rediscover `row` (compare-and-set on its status).

    Called for an `unreachable` row, or one this worker has seen `recovering` for a whole
    round: that one lost the worker rediscovering it, and is claimed again. A row another
    worker has only just claimed is left to it. (Workers that all saw a row stuck may
    each rediscover it; the sync is idempotent, so that costs only time.)
    """
    return bool(await Upstream.filter(id=row.id, status=row.status).update(status="recovering"))
