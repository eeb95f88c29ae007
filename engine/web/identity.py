"""Login, self-registration and "who am I" for the caller the guard let through, and
which of a platform admin's powers this request may use."""

from __future__ import annotations

import asyncio
import time
from typing import Any, Final, Literal

from quart import Blueprint, Response, g, jsonify
from tortoise.exceptions import IntegrityError

from engine.decide import Decision, User
from engine.issuing import token_claims
from engine.passwords import TIMING_HASH, hash_password, verify_password
from engine.settings import SettingsError
from engine.signing import sign
from engine.store.models import User as UserRow
from engine.web.audit import audit
from engine.web.bodies import read_body
from engine.web.responses import ApiError, created
from engine.web.state import gateway

__all__ = ["NEW_EMAIL", "AdminPower", "admin_power", "blueprint", "caller"]

blueprint = Blueprint("identity", __name__)

_EMAIL: Final = {"type": "string", "regex": r"^[^@\s]{1,64}@[^@\s]{1,255}$", "required": True}
NEW_EMAIL: Final = {**_EMAIL, "regex": r"^[^@\s/\\?#%]{1,64}@[^@\s/\\?#%]{1,255}$"}
"""The email of a user being created: one that `/admin/users/<email>` can address, so
without a character a URL path splits on or decodes (`/`, `\\`, `?`, `#`, `%`). Login
keeps the wider `_EMAIL`, so accounts made before the rule was narrowed still sign in."""
_LOGIN: Final = {"email": _EMAIL, "password": {"type": "string", "required": True, "maxlength": 1024}}
_REGISTER: Final = {
    "email": NEW_EMAIL,
    "password": {"type": "string", "required": True, "minlength": 12, "maxlength": 1024},
    "full_name": {"type": "string", "maxlength": 200},
}


def caller() -> User:
    """The authenticated user of this request; the guard has already refused anonymous ones."""
    user: User | None = g.get("user")
    if user is None:
        raise ApiError(401, "auth_required", "authentication is required")
    return user


AdminPower = Literal["admin.user_management", "admin.system_config"]
"""The admin permissions that also stand for a platform admin's power outside `/admin`:
user management over other users' tokens, sessions and teams; system configuration
over other owners' catalog items and gateways, and changed upstream tools."""


def admin_power(user: User, permission: AdminPower) -> bool:
    """Whether this request may use the platform admin's power that `permission` guards.

    SECURITY: `user.admin` alone is the store's flag, which an admin's API token keeps
    however far its `scopes.permissions` narrow it; the permission in the decision is
    what that scope leaves of the admin's grant. The admin API asks for both, so must
    every other route: a token the admin API refuses is an ordinary user's here too.
    """
    decision: Decision = g.decision
    return user.admin and permission in decision.permissions


@blueprint.post("/auth/login")
async def login() -> Response:
    """Exchange email and password for a session token."""
    body = await read_body(_LOGIN)
    row = await UserRow.filter(email=body["email"]).first()
    # scrypt is deliberately slow; off the event loop it does not stall other requests.
    valid = await asyncio.to_thread(verify_password, body["password"], row.password_hash if row else TIMING_HASH)
    if not valid or row is None:
        raise ApiError(401, "invalid_credentials", "the email or password is wrong")
    if not row.is_active:
        raise ApiError(403, "account_disabled", "the account is disabled")
    gw = gateway()
    tokens = g.snapshot.tokens
    lifetime = min(gw.settings.token_expiry_minutes * 60, tokens.max_lifetime_s)
    claims = token_claims(tokens, subject=row.email, now=time.time(), lifetime_s=lifetime, session=True)
    token = signed(claims)
    await audit(row.email, "login")
    return jsonify({"access_token": token, "token_type": "bearer", "expires_in": lifetime})


def signed(claims: dict[str, Any]) -> str:
    """The token for `claims`, signed before anything about it is recorded: a gateway
    given only a public key verifies tokens but cannot issue them."""
    try:
        return sign(gateway().keys, claims)
    except SettingsError as err:
        raise ApiError(503, "token_issuing_unavailable", "this gateway has no key to issue tokens with") from err


@blueprint.post("/auth/register")
async def register() -> Response:
    """Create an account (only when the policy enables public registration)."""
    body = await read_body(_REGISTER)
    try:
        row = await UserRow.create(
            email=body["email"],
            password_hash=await asyncio.to_thread(hash_password, body["password"]),
            full_name=body.get("full_name", ""),
        )
    except IntegrityError as err:
        raise ApiError(409, "user_exists", "an account with this email exists") from err
    await audit(row.email, "register", row.email)
    return created({"email": row.email, "is_admin": False, "is_active": True})


@blueprint.get("/auth/me")
async def me() -> Response:
    """The caller as the policy sees them: teams, permissions and what they may see."""
    user = caller()
    decision: Decision = g.decision
    body: dict[str, Any] = {
        "email": user.email,
        "is_admin": user.admin,
        "teams": sorted(user.teams),
        "roles": sorted(user.roles),
        "permissions": sorted(decision.permissions),
    }
    if decision.visibility is not None and decision.visibility_rule is not None:
        body["visibility"] = {
            "access": str(decision.visibility.access),
            "teams": sorted(decision.visibility.teams),
            "rule": decision.visibility_rule.id,
        }
    return jsonify(body)
