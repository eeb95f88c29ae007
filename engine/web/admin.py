"""The admin API: users, revocations, the audit log and the policy in force.

The guard has already required a platform admin (fresh from the store, not from the
token), refused server-scoped tokens and checked the route's admin permission; these
handlers only act. Every change is audited in the transaction that makes it and takes
effect on the next request: user changes drop the user from the look-up cache once
stored. No change may leave the gateway without an active admin.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Final

from quart import Blueprint, Response, g, jsonify, request
from tortoise.exceptions import IntegrityError
from tortoise.expressions import Q
from tortoise.transactions import in_transaction

from engine.passwords import hash_password
from engine.store.models import AuditEvent, Revocation
from engine.store.models import User as UserRow
from engine.web.audit import audit
from engine.web.bodies import read_body
from engine.web.identity import NEW_EMAIL, caller
from engine.web.paging import cursor_for, page
from engine.web.reloading import reload_everywhere, reload_policies
from engine.web.responses import ApiError, created
from engine.web.state import gateway
from engine.web.tokens import revoke_jti

__all__ = ["blueprint"]

blueprint = Blueprint("admin", __name__, url_prefix="/admin")

_NEW_USER: Final = {
    "email": NEW_EMAIL,
    "password": {"type": "string", "required": True, "minlength": 12, "maxlength": 1024},
    "full_name": {"type": "string", "maxlength": 200},
    "is_admin": {"type": "boolean", "default": False},
    "roles": {"type": "list", "schema": {"type": "string"}, "default": []},
}
_CHANGE_USER: Final = {
    "is_admin": {"type": "boolean"},
    "is_active": {"type": "boolean"},
    "roles": {"type": "list", "schema": {"type": "string"}},
}
_REVOKE: Final = {
    "jti": {"type": "string", "required": True, "empty": False, "maxlength": 64},
    "reason": {"type": "string", "maxlength": 500, "default": ""},
}


def _user_json(row: UserRow) -> dict[str, Any]:
    return {
        "email": row.email,
        "full_name": row.full_name,
        "is_admin": row.is_admin,
        "is_active": row.is_active,
        "roles": row.roles,
        "created_at": row.created_at.isoformat(),
    }


@blueprint.get("/users")
async def list_users() -> Response:
    """Every user."""
    rows = await UserRow.all().order_by("email")
    return jsonify({"items": [_user_json(r) for r in rows]})


@blueprint.post("/users")
async def create_user() -> Response:
    """Create a user."""
    body = await read_body(_NEW_USER)
    _check_roles(body)
    password_hash = await asyncio.to_thread(hash_password, body["password"])
    try:
        # The audit row is written with the user, never one without the other.
        async with in_transaction():
            row = await UserRow.create(
                email=body["email"],
                password_hash=password_hash,
                full_name=body.get("full_name", ""),
                is_admin=body["is_admin"],
                roles=body["roles"],
            )
            await audit(caller().email, "user.create", row.email, {"is_admin": row.is_admin, "roles": row.roles})
    except IntegrityError as err:
        raise ApiError(409, "user_exists", f"a user `{body['email']}` exists") from err
    return created(_user_json(row))


@blueprint.patch("/users/<email>")
async def change_user(email: str) -> Response:
    """Activate or deactivate a user, grant or withdraw admin, set roles.

    Only the fields sent are written, to the row locked for the change, so two admins
    changing different fields at once both take effect; the audit row is written with
    the change, and the cache told only once both are stored.
    """
    body = await read_body(_CHANGE_USER)
    if not body:
        raise ApiError(422, "invalid_body", "nothing to change")
    actor = caller().email
    if email == actor and (body.get("is_active") is False or body.get("is_admin") is False):
        raise ApiError(409, "self_lockout", "admins cannot deactivate or demote themselves")
    _check_roles(body)
    async with in_transaction():
        # INVARIANT: the gateway keeps an active admin. The active admins' rows are locked
        # before the target's, so of two admins demoting each other at once the second
        # waits for the first and then finds itself the last one.
        admins = await _lock_active_admins() if _withdraws_admin(body) else frozenset[str]()
        row = await UserRow.filter(email=email).select_for_update().first()
        if row is None:
            raise ApiError(404, "not_found", f"no user `{email}`")
        for name, value in body.items():
            setattr(row, name, value)
        if email in admins and not _active_admin(row) and not admins - {email}:
            raise ApiError(409, "last_admin", "the gateway must keep at least one active admin")
        await row.save(update_fields=list(body))
        await audit(actor, "user.change", email, body)
    await gateway().directory.user_changed(email)
    return jsonify(_user_json(row))


def _check_roles(body: Mapping[str, Any]) -> None:
    unknown = sorted(set(body.get("roles", ())) - set(g.snapshot.access.roles))
    if unknown:
        raise ApiError(422, "invalid_body", f"`roles`: unknown role `{unknown[0]}`")


def _withdraws_admin(body: Mapping[str, Any]) -> bool:
    return body.get("is_admin") is False or body.get("is_active") is False


def _active_admin(row: UserRow) -> bool:
    return row.is_admin and row.is_active


async def _lock_active_admins() -> frozenset[str]:
    """The active admins' emails, their rows locked until the transaction ends: in id
    order, so that two changes taking the same locks never deadlock. (SQLite ignores the
    lock, and runs one transaction at a time anyway.)"""
    rows = await UserRow.filter(is_admin=True, is_active=True).order_by("id").select_for_update()
    return frozenset(r.email for r in rows)


@blueprint.get("/revocations")
async def list_revocations() -> Response:
    """Revoked token ids, newest first, a page at a time (`?limit=`, `?cursor=`)."""
    limit, after = page(request.args.get("limit"), request.args.get("cursor"), default=100, most=1000)
    query = Revocation.all()
    if after is not None:
        at, jti = _revocation_key(after)
        query = query.filter(Q(revoked_at__lt=at) | Q(revoked_at=at, jti__lt=jti))
    rows = await query.order_by("-revoked_at", "-jti").limit(limit + 1)
    body: dict[str, Any] = {
        "items": [
            {"jti": r.jti, "revoked_by": r.revoked_by, "reason": r.reason, "revoked_at": r.revoked_at.isoformat()}
            for r in rows[:limit]
        ]
    }
    if len(rows) > limit:
        last = rows[limit - 1]
        body["next_cursor"] = cursor_for(f"{last.revoked_at.isoformat()} {last.jti}")
    return jsonify(body)


_JTI_MAX: Final = 64
"""The longest jti the store holds (`Revocation.jti`)."""


def _revocation_key(after: str) -> tuple[datetime, str]:
    """A revocation's place in the listing: its time, then its jti (a time has no space)."""
    at, _, jti = after.partition(" ")
    try:
        parsed = datetime.fromisoformat(at)
        # In UTC, as stored: an offset that carries the time past the calendar's ends is
        # refused here rather than by the database driver, as is a jti no row can hold.
        when = parsed.astimezone(UTC) if parsed.tzinfo is not None else None
    except (ValueError, OverflowError):
        when = None
    if when is None or "\x00" in jti or len(jti) > _JTI_MAX:
        raise ApiError(400, "bad_request", "`cursor` must be one this API returned")
    return when, jti


@blueprint.post("/revocations")
async def revoke() -> Response:
    """Revoke any token by its jti, including tokens this gateway did not record."""
    body = await read_body(_REVOKE)
    body_out = {"jti": body["jti"], "revoked": True}
    if await revoke_jti(body["jti"], caller().email, body["reason"]):
        return created(body_out)
    return jsonify(body_out)


@blueprint.get("/audit")
async def audit_log() -> Response:
    """Audit events, newest first, a page at a time (`?limit=`, `?cursor=`)."""
    limit, after = page(request.args.get("limit"), request.args.get("cursor"), default=100, most=1000)
    query = AuditEvent.all()
    if after is not None:
        query = query.filter(id__lt=_audit_key(after))
    rows = await query.order_by("-id").limit(limit + 1)
    body: dict[str, Any] = {
        "items": [
            {
                "at": r.at.isoformat(),
                "actor": r.actor,
                "action": r.action,
                "target": r.target,
                "detail": r.detail,
                "request_id": r.request_id,
            }
            for r in rows[:limit]
        ]
    }
    if len(rows) > limit:
        body["next_cursor"] = cursor_for(str(rows[limit - 1].id))
    return jsonify(body)


def _audit_key(after: str) -> int:
    """An event's place in the log: its id, which the store holds in 32 bits."""
    if not (after.isascii() and after.isdigit() and len(after) <= 10 and int(after) < 2**31):
        raise ApiError(400, "bad_request", "`cursor` must be one this API returned")
    return int(after)


@blueprint.post("/policies/reload")
async def reload() -> Response:
    """Rebuild the policy from its files, here and then in every other worker; a bad
    policy keeps the running one everywhere, as this worker refuses it before passing on."""
    errors = await reload_policies(gateway(), trigger="admin-api")
    if errors:
        details = [
            {"file": e.where.file, "line": e.where.line, "col": e.where.col, "code": e.code, "message": e.message}
            for e in errors
        ]
        raise ApiError(422, "policy_invalid", f"{len(errors)} policy error(s): {errors[0]}", details=details)
    reload_everywhere(gateway())
    await audit(caller().email, "policy.reload", gateway().engine.current.version)
    return jsonify(_status())


@blueprint.get("/policies/status")
async def status() -> Response:
    """The policy version in force, when it was loaded and the last reload error."""
    return jsonify(_status())


def _status() -> dict[str, Any]:
    state = gateway().status
    return {
        "version": state.version,
        "loaded_at": state.loaded_at,
        "reloads": state.reloads,
        "last_attempt_at": state.last_attempt_at,
        "last_error": [{"where": str(e.where), "code": e.code, "message": e.message} for e in state.last_error],
    }
