"""The gateway's own subcommands: `serve` and `token create`.

Kept apart from the policy tools so that `policygate lint` in CI never imports Quart,
tortoise or Hypercorn; these modules load only when a gateway command runs.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from typing import Any

__all__ = ["add_commands"]

OK, FAILED, USAGE = 0, 1, 2


def add_commands(commands: Any) -> None:
    serve = commands.add_parser("serve", help="run the gateway (Hypercorn serving the Quart app)")
    serve.add_argument("--bind", help="HOST:PORT to listen on (default: 127.0.0.1:4444, or BIND)")
    serve.add_argument("--workers", type=int, help="worker processes (default: 1, or WORKERS)")
    serve.add_argument("--policies", action="append", help="policy folder; repeat to lay one over another")
    serve.set_defaults(run=_serve)

    token = commands.add_parser("token", help="development tokens")
    actions = token.add_subparsers(dest="action", required=True, metavar="ACTION")
    create = actions.add_parser("create", help="print a signed token (bypasses the API's containment checks)")
    create.add_argument("--username", required=True, help="the user's email (the `sub` claim)")
    create.add_argument("--admin", action="store_true", help="give the token `teams: null` (admin bypass)")
    create.add_argument("--teams", help="comma-separated team ids for the `teams` claim")
    create.add_argument("--scopes", help="the `scopes` claim as JSON")
    create.add_argument("--expires-minutes", type=int, default=60)
    create.add_argument("--policies", action="append", help="policy folder (for audience, issuer, environment)")
    create.set_defaults(run=_token_create)


def _settings(args: argparse.Namespace) -> Any:
    from engine.settings import load_settings

    return load_settings(
        os.environ,
        bind=getattr(args, "bind", None),
        workers=getattr(args, "workers", None),
        policy_paths=tuple(args.policies) if args.policies else None,
    )


def _serve(args: argparse.Namespace) -> int:
    from concurrent.futures import ThreadPoolExecutor

    from engine.policy_files import load_policy
    from engine.settings import SettingsError

    try:
        settings = _settings(args)
    except SettingsError as err:
        print(f"policygate: {err}", file=sys.stderr)
        return USAGE
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # The driver logs each failed reconnect with a traceback; during a store outage that
    # floods the log with what /ready and the 503 answers already say in one line.
    logging.getLogger("asyncpg.pool").addFilter(_without_traceback)
    with ThreadPoolExecutor(max_workers=1) as pool:
        # Build the policy while the web stack is imported; the result (or its errors)
        # is collected before anything is served.
        pending = pool.submit(load_policy, settings.policy_paths)
        from engine.serve import run_server

        if settings.workers == 1:
            import engine.web.app  # noqa: F401 - imported now, in parallel with the build

        policy = pending.result()
    try:
        return run_server(settings, policy)
    except SettingsError as err:
        print(f"policygate: {err}", file=sys.stderr)
        return FAILED


def _without_traceback(record: logging.LogRecord) -> bool:
    if record.exc_info and record.exc_info[1] is not None:
        record.msg = f"{record.msg} ({type(record.exc_info[1]).__name__})"
        record.exc_info = None
    return True


def _token_create(args: argparse.Namespace) -> int:
    from engine.issuing import ABSENT, token_claims
    from engine.policy_files import load_policy
    from engine.settings import SettingsError
    from engine.signing import load_keys, sign

    try:
        settings = _settings(args)
        scopes = json.loads(args.scopes) if args.scopes else None
        if scopes is not None and not isinstance(scopes, dict):
            raise ValueError("--scopes must be a JSON object")
        snapshot = load_policy(settings.policy_paths).snapshot
        keys = load_keys(settings)
        teams: Any = None if args.admin else [t for t in args.teams.split(",") if t] if args.teams else ABSENT
        claims = token_claims(
            snapshot.tokens,
            subject=args.username,
            now=time.time(),
            lifetime_s=args.expires_minutes * 60,
            session=False,
            teams=teams,
            scopes=scopes,
        )
        token = sign(keys, claims)
    except (SettingsError, ValueError) as err:
        print(f"policygate: {err}", file=sys.stderr)
        return USAGE
    print("warning: this token bypasses the API's containment checks; use it for development only", file=sys.stderr)
    print(token)
    return OK
