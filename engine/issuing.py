"""The claims of tokens the gateway issues: session tokens at login, API tokens on request.

Every issued token carries `exp` and `jti` whatever the policy requires, the audience and
issuer the policy accepts first, and the environment when the policy embeds it, so a
token minted here always passes this gateway's own checks on the way back in.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from engine.decide.tokens import TokenTable

__all__ = ["ABSENT", "token_claims"]

ABSENT: Any = object()
"""Marks a `teams` claim that is left out (as opposed to `null` or a list)."""


def token_claims(
    table: TokenTable,
    *,
    subject: str,
    now: float,
    lifetime_s: int,
    session: bool,
    teams: Any = ABSENT,
    scopes: Mapping[str, Any] | None = None,
    name: str | None = None,
) -> dict[str, Any]:
    issued = int(now)
    claims: dict[str, Any] = {
        "sub": subject,
        "iat": issued,
        "nbf": issued,
        "exp": issued + lifetime_s,
        "jti": uuid.uuid4().hex,
        "aud": table.issue_audience,
        "iss": table.issue_issuer,
        "token_use": "session" if session else "api",
    }
    if teams is not ABSENT:
        claims["teams"] = teams
    if scopes:
        claims["scopes"] = dict(scopes)
    if name:
        claims["name"] = name
    if table.embed_environment:
        claims["env"] = table.environment
    return claims
