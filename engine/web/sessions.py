"""Reverse-proxy sessions: admins see all, users their own, ids made by the server.

A client-supplied id is ignored so nobody can pick (or guess) another user's session id;
a session the caller may not see answers 404.

Seeing and closing everyone's sessions takes what the admin API's user routes take: a
platform admin (fresh from the store) whose request holds `admin.user_management`. An
admin's API token narrowed to other permissions is an ordinary user's here, as it is
refused by the admin API. The route itself needs no permission, so a token narrowed to
none can still open sessions: each user keeps at most `MAX_PER_OWNER` open, and one
more is refused (409) rather than the oldest closed, so such a token cannot close the
user's sessions in use by opening new ones.
"""

from __future__ import annotations

import uuid
from typing import Any, Final

from quart import Blueprint, Response, jsonify
from tortoise.transactions import in_transaction

from engine.store.models import ProxySession
from engine.store.models import User as UserRow
from engine.web.audit import audit
from engine.web.bodies import read_body
from engine.web.identity import admin_power, caller
from engine.web.responses import ApiError, created

__all__ = ["MAX_PER_OWNER", "blueprint"]

blueprint = Blueprint("sessions", __name__, url_prefix="/reverse-proxy/sessions")

MAX_PER_OWNER: Final = 64
_CREATE: Final = {"name": {"type": "string", "maxlength": 200}, "id": {"type": "string"}}


def _json(row: ProxySession, owner: str) -> dict[str, Any]:
    return {"id": str(row.id), "name": row.name, "owner": owner, "created_at": row.created_at.isoformat()}


@blueprint.get("")
async def list_sessions() -> Response:
    """Sessions: all of them for admins, the caller's own otherwise."""
    user = caller()
    everyone = admin_power(user, "admin.user_management")
    query = ProxySession.all() if everyone else ProxySession.filter(owner__email=user.email)
    rows = await query.prefetch_related("owner").order_by("created_at")
    return jsonify({"items": [_json(r, r.owner.email) for r in rows]})


@blueprint.post("")
async def create_session() -> Response:
    """Open a session; its id is generated here, whatever the body says."""
    user = caller()
    body = await read_body(_CREATE)
    async with in_transaction():
        # The owner's row, locked, orders two sessions opened at once: the second counts
        # the first, so the cap holds.
        owner = await UserRow.select_for_update().get(email=user.email)
        if await ProxySession.filter(owner=owner).count() >= MAX_PER_OWNER:
            raise ApiError(409, "session_limit", f"at most {MAX_PER_OWNER} sessions may be open; close one first")
        row = await ProxySession.create(id=uuid.uuid4(), owner=owner, name=body.get("name", ""))
        await audit(user.email, "proxy_session.create", str(row.id))
    return created(_json(row, user.email))


@blueprint.delete("/<session_id>")
async def close_session(session_id: str) -> Response:
    """Close a session the caller owns (or any, for admins)."""
    user = caller()
    try:
        key = uuid.UUID(session_id)
    except ValueError as err:
        raise ApiError(404, "not_found", f"no session `{session_id}`") from err
    row = await ProxySession.filter(id=key).prefetch_related("owner").first()
    if row is None or (row.owner.email != user.email and not admin_power(user, "admin.user_management")):
        raise ApiError(404, "not_found", f"no session `{session_id}`")
    await row.delete()
    await audit(user.email, "proxy_session.close", session_id)
    return Response("", status=204)
