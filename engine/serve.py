"""`policygate serve`: Hypercorn in front of the app, with a graceful shutdown.

Each worker runs its event loop on uvloop: the stdlib loop's Python-level scheduling
and socket handling cost about a tenth of the CPU a forwarded tool call takes.
One worker runs in this process (fastest start, exact in-process cache). Several workers
are child processes that each open their own listening socket on the same port with
SO_REUSEPORT, so the kernel spreads connections evenly across them; with one shared
socket, long-lived keep-alive connections pile onto whichever worker accepted first.
This process validates the policy and settings once, then supervises: SIGTERM and
SIGINT stop the workers gracefully, SIGHUP is passed on so each reloads its policy
without a restart.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import signal
from contextlib import suppress
from pathlib import Path

import uvloop
from hypercorn.asyncio import serve as hypercorn_serve
from hypercorn.config import Config

from engine.policy_files import BuiltPolicy, load_policy
from engine.settings import Settings
from engine.web.startup import check_startup

__all__ = ["run_server"]

log = logging.getLogger("policygate")


def _config(settings: Settings) -> Config:
    config = Config()
    config.bind = [settings.bind]
    config.graceful_timeout = 10.0
    config.accesslog = None
    config.errorlog = logging.getLogger("hypercorn.error")
    config.keep_alive_timeout = 75.0
    # No `Server` header: it tells a scanner which server's flaws to try, and no client
    # needs it. (Also one header fewer to validate and write on every answer.)
    config.include_server_header = False
    return config


def run_server(settings: Settings, policy: BuiltPolicy | None = None) -> int:
    """Serve until SIGTERM or SIGINT, finishing the requests in flight.

    Raises:
        PolicyErrors: the policy does not build.
        SettingsError: the settings are unusable or unsafe for production.
    """
    # Ignored until a serving loop takes it (`start_reload_triggers`): its default action
    # ends the process, and a worker passes reloads on with it.
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    if settings.workers == 1:
        from engine.web.app import create_app

        app = create_app(settings, policy=policy)
        uvloop.run(_serve_until_signalled(app, _config(settings)))
        return 0
    # Fail once, here, rather than in every worker; the web stack is left to the workers.
    check_startup(settings, (policy or load_policy(settings.policy_paths)).snapshot)
    if not settings.redis_url:
        log.warning(
            "%d workers without REDIS_URL: MCP sessions stay with the worker that made them, "
            "rate limits are counted per worker and list_changed reaches one worker's clients",
            settings.workers,
        )
    # Create the schema and the admin once, before workers race to do it.
    asyncio.run(_prepare_store(settings))
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_worker, args=(settings,), daemon=False) for _ in range(settings.workers)]

    def forward(signum: int, _frame: object) -> None:
        for worker in workers:
            if worker.pid is not None and worker.is_alive():
                os.kill(worker.pid, signum)

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, forward)
    # The workers start with SIGHUP ignored, as it is here: that survives their exec,
    # so none can be ended by a reload another passes on while it starts.
    for worker in workers:
        worker.start()
    signal.signal(signal.SIGHUP, forward)
    codes = []
    for worker in workers:
        worker.join()
        codes.append(worker.exitcode or 0)
    return max(codes)


async def _prepare_store(settings: Settings) -> None:
    from engine.federation.sealing import sealer_for
    from engine.store.queries import bootstrap_admin, close_store, open_store

    sealer_for(settings.auth_encryption_secret, Path(settings.data_dir))  # made once, not raced by workers
    store = await open_store(settings.store_url)
    try:
        if await bootstrap_admin(settings.platform_admin_email, settings.platform_admin_password):
            log.info("created the platform admin account")
    finally:
        await close_store(store)


def _worker(settings: Settings) -> None:
    from engine.web.app import create_app

    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config = _config(settings)
    config.workers = settings.workers  # makes Hypercorn set SO_REUSEPORT on this worker's socket
    uvloop.run(_serve_until_signalled(create_app(settings, supervisor=os.getppid()), config))


async def _serve_until_signalled(app: object, config: Config) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for name in (signal.SIGTERM, signal.SIGINT):
        with suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(name, stop.set)
    log.info("serving on http://%s (pid %d)", config.bind[0], os.getpid())
    await hypercorn_serve(app, config, shutdown_trigger=stop.wait)  # type: ignore[arg-type]
