"""API tokens: create (within what the caller holds), list one's own, revoke.

Containment is the point: a token can never do more than its creator. Its permissions
must be a subset of the caller's effective permissions (already narrowed by the caller's
own token), its teams a subset of the caller's memberships, and its lifetime within the
policy maximum. The signed token is returned once; only its `jti` is stored.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import time
from typing import Any, Final

from quart import Blueprint, Response, g, jsonify
from tortoise.transactions import in_transaction

from engine.decide import PUBLIC_ONLY, Decision, Token
from engine.issuing import token_claims
from engine.store.models import ApiToken, Revocation
from engine.store.models import User as UserRow
from engine.store.queries import list_api_tokens
from engine.web.audit import audit
from engine.web.bodies import read_body
from engine.web.identity import admin_power, caller, signed
from engine.web.responses import ApiError, created
from engine.web.state import gateway

__all__ = ["blueprint", "revoke_jti"]

blueprint = Blueprint("tokens", __name__)

_DEFAULT_S: Final = 30 * 24 * 3600
_TIME: Final = {"type": "string", "regex": r"^([01]\d|2[0-3]):[0-5]\d$|^24:00$"}
_CREATE: Final = {
    "name": {"type": "string", "required": True, "empty": False, "maxlength": 200},
    "expires_in_minutes": {"type": "integer", "min": 1},
    "teams": {"type": "list", "nullable": True, "schema": {"type": "string", "empty": False}},
    "scopes": {
        "type": "dict",
        "schema": {
            "server_id": {"type": "string", "empty": False, "nullable": True},
            "permissions": {"type": "list", "schema": {"type": "string"}},
            "ip_restrictions": {"type": "list", "schema": {"type": "string"}},
            "time_restrictions": {
                "type": "list",
                "schema": {
                    "type": "dict",
                    "schema": {
                        "start_time": _TIME,
                        "end_time": _TIME,
                        "weekdays": {
                            "type": "list",
                            "allowed": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"],
                        },
                        "timezone": {"type": "string", "allowed": ["UTC"]},
                    },
                },
            },
        },
    },
}


@blueprint.post("/tokens")
async def create_token() -> Response:
    """Create an API token scoped within the caller's own rights; the token is shown once."""
    user = caller()
    decision: Decision = g.decision
    body = await read_body(_CREATE)
    scopes: dict[str, Any] = {k: v for k, v in body.get("scopes", {}).items() if v is not None}
    for cidr in scopes.get("ip_restrictions", []):
        try:
            ipaddress.ip_network(cidr, strict=False)
        except ValueError as err:
            raise ApiError(422, "invalid_body", f"`scopes.ip_restrictions`: `{cidr}` is not a network") from err
    wanted = set(scopes.get("permissions", []))
    if "*" in wanted:
        raise ApiError(422, "invalid_body", "`scopes.permissions`: list the permissions; `*` is not accepted")
    beyond = sorted(wanted - decision.permissions)
    if beyond:
        raise ApiError(403, "scope_exceeds_caller", f"you do not hold {', '.join(f'`{p}`' for p in beyond)}")
    parent: Token | None = g.get("token")
    if parent is not None:
        # Sessions too: the gateway's own carry no scopes, but an accepted issuer's may.
        _within_parent(parent, body, scopes)
        if parent.permissions is not None and "permissions" not in scopes:
            # Left out, the child would hold everything the user's roles give.
            scopes["permissions"] = sorted(decision.permissions)
    # SECURITY: a new token reaches no team its creating request does not reach, whatever
    # kind of token made the request: an API token's `teams`, a public-only token's
    # none, and a session's that an accepted issuer narrowed with a listed `teams` claim.
    limit = (decision.visibility or PUBLIC_ONLY).reach
    teams = body.get("teams", sorted(user.teams if limit is None else user.teams & limit))
    if limit is not None and (teams is None or not set(teams) <= limit):
        raise ApiError(403, "scope_exceeds_caller", "a token cannot reach teams its creating token cannot")
    if teams is None:
        # On the flag: a null claim is a reach, and the request already reaches every team.
        if not user.admin:
            raise ApiError(403, "scope_exceeds_caller", "only platform admins may create tokens with `teams: null`")
    else:
        foreign = sorted(set(teams) - user.teams)
        if foreign:
            raise ApiError(
                403, "scope_exceeds_caller", f"you are not a member of {', '.join(f'`{t}`' for t in foreign)}"
            )
    tokens = g.snapshot.tokens
    # Unasked, a token lives 30 days or as long as the policy allows, whichever is less.
    lifetime = body.get("expires_in_minutes", 0) * 60 or min(_DEFAULT_S, tokens.max_lifetime_s)
    if lifetime > tokens.max_lifetime_s:
        raise ApiError(
            422, "lifetime_exceeded", f"the longest allowed lifetime is {tokens.max_lifetime_s // 60} minutes"
        )
    now = time.time()
    if parent is not None and parent.exp is not None:
        # A token made with another token expires no later than it.
        lifetime = min(lifetime, max(int(parent.exp - now), 0))
    claims = token_claims(
        tokens, subject=user.email, now=now, lifetime_s=lifetime, session=False, teams=teams, scopes=scopes,
        name=body["name"],
    )  # fmt: skip
    token = signed(claims)
    owner = await UserRow.get(email=user.email)
    expires = dt.datetime.fromtimestamp(claims["exp"], tz=dt.UTC)
    await ApiToken.create(
        jti=claims["jti"], owner=owner, name=body["name"], scopes=scopes, teams=teams, expires_at=expires
    )
    await audit(user.email, "token.create", claims["jti"], {"name": body["name"], "scopes": scopes, "teams": teams})
    return created(
        {
            "token": token,
            "jti": claims["jti"],
            "name": body["name"],
            "expires_at": expires.isoformat(),
            "scopes": scopes,
            "teams": teams,
        }
    )


def _within_parent(parent: Token, body: dict[str, Any], scopes: dict[str, Any]) -> None:
    """Carry the creating token's address and time limits over; never widen them."""
    limits = parent.claims.get("scopes") or {}
    if parent.networks is not None:
        requested = [ipaddress.ip_network(c, strict=False) for c in scopes.get("ip_restrictions", [])]
        if not requested:
            scopes["ip_restrictions"] = list(limits.get("ip_restrictions", []))
        elif not all(any(_inside(n, p) for p in parent.networks) for n in requested):
            raise ApiError(403, "scope_exceeds_caller", "`ip_restrictions` must lie within the creating token's")
    if parent.windows is not None:
        if scopes.get("time_restrictions") not in (None, limits.get("time_restrictions")):
            raise ApiError(403, "scope_exceeds_caller", "`time_restrictions` must be the creating token's")
        scopes["time_restrictions"] = limits.get("time_restrictions")
    if parent.server_id is not None:
        if scopes.get("server_id") not in (None, parent.server_id):
            raise ApiError(403, "scope_exceeds_caller", "`server_id` must be the creating token's")
        scopes["server_id"] = parent.server_id


def _inside(network: Any, parent: Any) -> bool:
    return bool(network.version == parent.version and network.subnet_of(parent))


@blueprint.get("/tokens")
async def list_tokens() -> Response:
    """The caller's own API tokens (never the token values)."""
    return jsonify({"items": await list_api_tokens(caller().email)})


@blueprint.delete("/tokens/<jti>")
async def revoke_token(jti: str) -> Response:
    """Revoke one of the caller's tokens; it stops working on the next request.

    Anyone else's takes what `/admin/revocations` takes, `admin.user_management`; to a
    caller without it, another user's token answers as one that does not exist.
    """
    user = caller()
    row = await ApiToken.filter(jti=jti).prefetch_related("owner").first()
    if row is None or (row.owner.email != user.email and not admin_power(user, "admin.user_management")):
        raise ApiError(404, "not_found", f"no token `{jti}`")
    await revoke_jti(jti, user.email, "revoked by owner" if row.owner.email == user.email else "revoked by admin")
    return Response("", status=204)


async def revoke_jti(jti: str, actor: str, reason: str) -> bool:
    """Record a revocation in the store and the cache; False when it was already revoked."""
    # The audit entry is written with the revocation: should the cache fail next, the
    # retry finds the revocation stored and would not write it.
    async with in_transaction():
        _, created = await Revocation.get_or_create(jti=jti, defaults={"revoked_by": actor, "reason": reason})
        if created:
            await audit(actor, "token.revoke", jti, {"reason": reason})
    await gateway().directory.revoked(jti)
    return bool(created)
