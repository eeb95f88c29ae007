"""`policygate serve`: Hypercorn in front of the app, with a graceful shutdown.

One worker runs in this process (fastest start, exact in-process cache). Several workers
are Hypercorn's own processes sharing the listening socket; each builds the app from the
environment, which this process has already validated, so a bad policy fails here once
instead of in every worker.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from contextlib import suppress

from hypercorn.asyncio import serve as hypercorn_serve
from hypercorn.config import Config

from engine.settings import Settings
from engine.web.app import create_app
from engine.web.reloading import build_snapshot

__all__ = ["run_server"]

log = logging.getLogger("policygate")


def _config(settings: Settings) -> Config:
    config = Config()
    config.bind = [settings.bind]
    config.graceful_timeout = 10.0
    config.accesslog = None
    config.errorlog = logging.getLogger("hypercorn.error")
    config.keep_alive_timeout = 75.0
    return config


def run_server(settings: Settings) -> int:
    """Serve until SIGTERM or SIGINT, finishing the requests in flight.

    Raises:
        PolicyErrors: the policy does not build.
        SettingsError: the settings are unusable or unsafe for production.
    """
    config = _config(settings)
    if settings.workers == 1:
        app = create_app(settings)
        asyncio.run(_serve_until_signalled(app, config))
        return 0
    from hypercorn.run import run

    build_snapshot(settings.policy_paths)  # fail once, here, rather than in every worker
    os.environ.update(
        {
            "BIND": settings.bind,
            "WORKERS": str(settings.workers),
            "POLICY_PATHS": ",".join(settings.policy_paths),
            "ENVIRONMENT": settings.environment,
        }
    )
    config.workers = settings.workers
    config.application_path = "engine.web.asgi:from_environment()"
    return run(config)


async def _serve_until_signalled(app: object, config: Config) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for name in (signal.SIGTERM, signal.SIGINT):
        with suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(name, stop.set)
    log.info("serving on http://%s", config.bind[0])
    await hypercorn_serve(app, config, shutdown_trigger=stop.wait)  # type: ignore[arg-type]
