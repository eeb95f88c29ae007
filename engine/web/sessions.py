"""Reverse-proxy sessions: admins see all, users their own, ids made by the server.

A client-supplied id is ignored so nobody can pick (or guess) another user's session id;
a session the caller may not see answers 404.
"""

from __future__ import annotations

import uuid
from typing import Any, Final

from quart import Blueprint, Response, jsonify

from engine.store.models import ProxySession
from engine.store.models import User as UserRow
from engine.web.audit import audit
from engine.web.bodies import read_body
from engine.web.identity import caller
from engine.web.responses import ApiError, created

__all__ = ["blueprint"]

blueprint = Blueprint("sessions", __name__, url_prefix="/reverse-proxy/sessions")

_CREATE: Final = {"name": {"type": "string", "maxlength": 200}, "id": {"type": "string"}}


def _json(row: ProxySession, owner: str) -> dict[str, Any]:
    return {"id": str(row.id), "name": row.name, "owner": owner, "created_at": row.created_at.isoformat()}


@blueprint.get("")
async def list_sessions() -> Response:
    """Sessions: all of them for admins, the caller's own otherwise."""
    user = caller()
    query = ProxySession.all() if user.admin else ProxySession.filter(owner__email=user.email)
    rows = await query.prefetch_related("owner").order_by("created_at")
    return jsonify({"items": [_json(r, r.owner.email) for r in rows]})


@blueprint.post("")
async def create_session() -> Response:
    """Open a session; its id is generated here, whatever the body says."""
    user = caller()
    body = await read_body(_CREATE)
    owner = await UserRow.get(email=user.email)
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
    if row is None or (row.owner.email != user.email and not user.admin):
        raise ApiError(404, "not_found", f"no session `{session_id}`")
    await row.delete()
    await audit(user.email, "proxy_session.close", session_id)
    return Response("", status=204)
