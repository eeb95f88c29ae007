"""Refuse to run production with the settings every tutorial shows.

Outside production the same findings are warnings, so `make run` works on a fresh
machine; with `ENVIRONMENT=production` any of them stops the start.
"""

from __future__ import annotations

import logging
from typing import Final

from engine.policy import Snapshot
from engine.settings import DEFAULT_ADMIN_PASSWORD, Settings, SettingsError
from engine.signing import MIN_SECRET_LENGTH, Keys, load_keys

__all__ = ["check_startup", "unsafe_settings"]

log = logging.getLogger("policygate")

_MIN_PASSWORD: Final = 12
_DEFAULT_ISSUERS: Final = frozenset({"mcpgateway"})
_DEFAULT_AUDIENCES: Final = frozenset({"mcpgateway-api"})


def unsafe_settings(settings: Settings, snapshot: Snapshot) -> list[str]:
    """Every reason these settings are unfit for production; never the secret values."""
    problems = []
    password = settings.platform_admin_password
    if password == DEFAULT_ADMIN_PASSWORD or len(password) < _MIN_PASSWORD:
        problems.append(f"`PLATFORM_ADMIN_PASSWORD` is the default or shorter than {_MIN_PASSWORD} characters")
    secret = settings.jwt_secret_key
    if settings.jwt_algorithm.startswith("HS") and secret is not None and len(secret) < MIN_SECRET_LENGTH:
        problems.append(f"`JWT_SECRET_KEY` is shorter than {MIN_SECRET_LENGTH} characters")
    tokens = snapshot.tokens
    if tokens.issue_issuer in _DEFAULT_ISSUERS or (tokens.issuer or frozenset()) & _DEFAULT_ISSUERS:
        problems.append("the token issuer is the default `mcpgateway` (set `JWT_ISSUER`)")
    if tokens.issue_audience in _DEFAULT_AUDIENCES or (tokens.audience or frozenset()) & _DEFAULT_AUDIENCES:
        problems.append("the token audience is the default `mcpgateway-api` (set `JWT_AUDIENCE`)")
    return problems


def check_startup(settings: Settings, snapshot: Snapshot) -> Keys:
    """Refuse unsafe production settings (warn elsewhere) and load the signing keys.

    Raises:
        SettingsError: production settings are unsafe, or the keys are unusable.
    """
    problems = unsafe_settings(settings, snapshot)
    if problems and settings.production:
        raise SettingsError("refusing to start in production: " + "; ".join(problems))
    for problem in problems:
        log.warning("not safe for production: %s", problem)
    return load_keys(settings)
