"""Hot reload: rebuild the policy off the event loop and swap it in, or keep the old one.

Three triggers lead here: `POST /admin/policies/reload`, SIGHUP, and a change in the
policy folders (watchfiles). Builds are serialised by a lock so two triggers at once do
not race; requests keep being served by the current snapshot while a build runs.
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
import os
import signal
import time
from contextlib import suppress

from engine.errors import Location, PolicyError, PolicyErrors
from engine.policy_files import gateway_snapshot
from engine.sources import MissingPath
from engine.web.state import Gateway, in_background

__all__ = ["release_free_memory", "reload_policies", "start_reload_triggers"]

log = logging.getLogger("policygate")
_LOCK = "reload_lock"


async def reload_policies(gw: Gateway, *, trigger: str) -> tuple[PolicyError, ...]:
    """Rebuild from the configured folders; the errors, or () when the new policy is in force."""
    lock: asyncio.Lock = gw.__dict__.setdefault(_LOCK, asyncio.Lock())
    async with lock:
        gw.status.last_attempt_at = time.time()
        try:
            snapshot = await asyncio.to_thread(gateway_snapshot, gw.settings.policy_paths)
        except PolicyErrors as err:
            gw.status.last_error = err.errors
            log.error("policy reload (%s) refused, keeping %s: %s", trigger, gw.status.version[:12], err.errors[0])
            return err.errors
        except MissingPath as err:
            gw.status.last_error = (PolicyError(Location(str(err)), "file.missing", str(err)),)
            log.error("policy reload (%s) refused: %s", trigger, err)
            return gw.status.last_error
        # INVARIANT: one assignment; each request already holds the snapshot it started with.
        gw.engine.swap(snapshot)
        gw.status.version = gw.engine.current.version
        gw.status.loaded_at = time.time()
        gw.status.last_error = ()
        gw.status.reloads += 1
        gw.verified.clear()
        release_free_memory()
        log.info("policy reloaded (%s): version %s", trigger, gw.status.version[:12])
        return ()


def release_free_memory() -> None:
    """Hand memory freed after a build back to the system (glibc keeps it otherwise).

    Building a snapshot allocates and frees several MiB (YAML trees, Hyperscan's compile);
    without this each worker carries them as resident memory for its whole life.
    """
    with suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def start_reload_triggers(gw: Gateway) -> None:
    """SIGHUP (when the loop can take signals) and, if enabled, a watch on the folders."""
    loop = asyncio.get_running_loop()
    with suppress(NotImplementedError, RuntimeError, ValueError):
        loop.add_signal_handler(signal.SIGHUP, lambda: in_background(gw, _on_signal(gw)))
    if gw.settings.policy_watch:
        in_background(gw, _watch(gw))


async def _on_signal(gw: Gateway) -> None:
    await reload_policies(gw, trigger="SIGHUP")


async def _watch(gw: Gateway) -> None:
    from watchfiles import awatch

    paths = [p for p in gw.settings.policy_paths if os.path.exists(p)]
    if not paths:
        return
    async for _changes in awatch(*paths, debounce=300, recursive=True):
        try:
            await reload_policies(gw, trigger="file change")
        except Exception:  # the watch outlives any one reload; the policy in force stays
            log.exception("policy reload (file change) failed, keeping %s", gw.status.version[:12])
