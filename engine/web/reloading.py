"""Hot reload: rebuild the policy off the event loop and swap it in, or keep the old one.

Four triggers lead here: `POST /admin/policies/reload`, SIGHUP, a change in the policy
folders (watchfiles), and a reload asked of another worker. Builds are serialised by a
lock so two triggers at once do not race; requests keep being served by the current
snapshot while a build runs.

An operator who reloads through the API means the gateway, not the one worker the
request happened to reach: a worker left on the old policy would go on enforcing it.
So a reload the API asked for, once it succeeded here, is passed on: to the `serve`
process, which signals every worker of this instance, and through Redis to the workers
of other instances. Each rebuilds from its own files; the asking worker's own signal
finds its files unchanged and costs one read of them.
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
import os
import signal
import time
from contextlib import suppress
from typing import Final

from engine.errors import Location, PolicyError, PolicyErrors
from engine.policy_files import build_policy, read_policy, sources_digest
from engine.sources import MissingPath
from engine.web.state import Gateway, in_background

__all__ = [
    "RELOAD_EVENT",
    "release_free_memory",
    "reload_everywhere",
    "reload_policies",
    "start_reload_triggers",
]

log = logging.getLogger("policygate")

RELOAD_EVENT: Final = "reload"
"""The fanout event kind that asks the other instances' workers to reload."""


async def reload_policies(gw: Gateway, *, trigger: str) -> tuple[PolicyError, ...]:
    """Rebuild from the configured folders; the errors, or () when the files' policy is in force."""
    async with gw.reload_lock:
        gw.status.last_attempt_at = time.time()
        try:
            layers = await asyncio.to_thread(read_policy, gw.settings.policy_paths)
            digest = sources_digest(layers)
            if digest == gw.status.digest:
                gw.status.last_error = ()
                log.info("policy reload (%s): files unchanged, keeping %s", trigger, gw.status.version[:12])
                return ()
            snapshot = await asyncio.to_thread(build_policy, layers)
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
        gw.status.digest = digest
        gw.status.last_error = ()
        gw.status.reloads += 1
        gw.verified.clear()
        release_free_memory()
        log.info("policy reloaded (%s): version %s", trigger, gw.status.version[:12])
        return ()


def reload_everywhere(gw: Gateway) -> None:
    """Pass a reload that succeeded here on to every other worker (see the module's doc)."""
    # A supervisor that died leaves this worker with another parent; its old pid may
    # belong to an unrelated process by now, which must not get a signal.
    if gw.supervisor is not None and os.getppid() == gw.supervisor:
        os.kill(gw.supervisor, signal.SIGHUP)
    if gw.fanout is not None:
        gw.fanout.publish({"kind": RELOAD_EVENT})


def release_free_memory() -> None:
    """Hand memory freed after a build back to the system (glibc keeps it otherwise).

    Building a snapshot allocates and frees several MiB (YAML trees, Hyperscan's compile);
    without this each worker carries them as resident memory for its whole life.
    """
    with suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def start_reload_triggers(gw: Gateway) -> None:
    """SIGHUP (when the loop can take signals) and, if enabled, a watch on the folders.

    Until now the process ignored SIGHUP (`engine.serve`), whose default action would
    have ended a worker still starting when another one passed a reload on. One look at
    the files now catches what such a signal announced; unchanged, they cost one read.
    """
    loop = asyncio.get_running_loop()
    try:
        loop.add_signal_handler(signal.SIGHUP, lambda: in_background(gw, reload_policies(gw, trigger="SIGHUP")))
    except (NotImplementedError, RuntimeError, ValueError) as err:
        # Not the main thread (a host embeds the app) or no signals on this platform: an
        # operator's SIGHUP would go unheard, so say so once rather than stay silent.
        log.warning("SIGHUP cannot reload the policy in this process (%s); use the admin API", type(err).__name__)
    else:
        in_background(gw, reload_policies(gw, trigger="start"))
    if gw.settings.policy_watch:
        in_background(gw, _watch(gw))


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
