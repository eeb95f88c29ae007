"""Teams, memberships, join requests and invitations.

Team owners (and platform admins) manage a team's members; each self-service flow is a
route behind its own feature flag, so the policy, not this code, decides whether it
exists. A team the caller does not belong to answers 404, never 403, so team names do
not leak to outsiders. A platform admin reaches and manages every team only with
`admin.user_management`, as on the admin API's user routes; an admin's token narrowed
to other permissions is a member like any other here.
"""

from __future__ import annotations

import datetime as dt
import re
import uuid
from typing import Final

from quart import Blueprint, Response, g, jsonify
from tortoise.exceptions import IntegrityError
from tortoise.transactions import in_transaction

from engine.decide import User, Visibility
from engine.decide.access import role_grant
from engine.store.models import Invitation, JoinRequest, Membership, Team
from engine.store.models import User as UserRow
from engine.web.audit import audit
from engine.web.bodies import read_body
from engine.web.identity import admin_power, caller
from engine.web.responses import ApiError, created
from engine.web.state import gateway

__all__ = ["blueprint"]

blueprint = Blueprint("teams", __name__)

_ROLES: Final = ["owner", "member"]
_ANY_TEAM: Final = "admin.user_management"
_INVITATION_LIFETIME: Final = dt.timedelta(days=7)
_CREATE: Final = {
    "name": {"type": "string", "required": True, "regex": r"^[\w .-]{1,100}$"},
    "description": {"type": "string", "maxlength": 2000},
}
_MEMBER: Final = {
    "email": {"type": "string", "required": True, "maxlength": 320, "regex": r"^[^@\s]+@[^@\s]+$"},
    "role": {"type": "string", "allowed": _ROLES, "default": "member"},
}


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:40] or "team"


def _reach(user: User) -> frozenset[str] | None:
    """The teams this request reaches (None: every team), as for the catalog: an API
    token reaches only the teams its `teams` claim leaves of the user's memberships, and
    a public-only token none, whatever the user belongs to. Beyond the user's own
    memberships only with the admin power: the truth table lets an admin's token reach
    teams by the flag alone, and a narrowed token must not list or read them here."""
    seen: Visibility = g.decision.visibility
    if admin_power(user, _ANY_TEAM):
        return seen.reach
    return user.teams if seen.reach is None else seen.reach & user.teams


async def _team_for(user: User, team_id: str, *, manage: bool = False) -> Team:
    team = await Team.filter(id=team_id).first()
    reach = _reach(user)
    if team is None or (reach is not None and team_id not in reach):
        raise ApiError(404, "not_found", f"no team `{team_id}`")
    if manage and not admin_power(user, _ANY_TEAM):
        owner = await Membership.filter(team_id=team_id, user__email=user.email, role="owner").exists()
        if not owner:
            raise ApiError(403, "team_owner_required", "only the team's owners manage its members")
    return team


async def _members(team_id: str) -> list[dict[str, str]]:
    rows = await Membership.filter(team_id=team_id).prefetch_related("user").order_by("id")
    return [{"email": m.user.email, "role": m.role} for m in rows]


@blueprint.get("/teams")
async def list_teams() -> Response:
    """The caller's teams (all teams for platform admins holding `admin.user_management`)."""
    reach = _reach(caller())
    query = Team.all() if reach is None else Team.filter(id__in=sorted(reach))
    rows = await query.order_by("name")
    return jsonify({"items": [{"id": t.id, "name": t.name, "description": t.description} for t in rows]})


@blueprint.post("/teams")
async def create_team() -> Response:
    """Create a team; the creator becomes its owner."""
    user = caller()
    body = await read_body(_CREATE)
    owner = await UserRow.get(email=user.email)
    team_id = f"{_slug(body['name'])}-{uuid.uuid4().hex[:8]}"
    try:
        async with in_transaction():
            team = await Team.create(
                id=team_id, name=body["name"], description=body.get("description", ""), created_by=user.email
            )
            await Membership.create(team=team, user=owner, role="owner")
    except IntegrityError as err:
        raise ApiError(409, "team_exists", f"a team named `{body['name']}` exists") from err
    await gateway().directory.user_changed(user.email)
    await audit(user.email, "team.create", team.id)
    return created({"id": team.id, "name": team.name, "description": team.description})


@blueprint.get("/teams/<team_id>")
async def read_team(team_id: str) -> Response:
    """One team and its members."""
    team = await _team_for(caller(), team_id)
    return jsonify(
        {"id": team.id, "name": team.name, "description": team.description, "members": await _members(team.id)}
    )


@blueprint.post("/teams/<team_id>/members")
async def add_member(team_id: str) -> Response:
    """Add a user to the team (team owners and platform admins)."""
    user = caller()
    team = await _team_for(user, team_id, manage=True)
    body = await read_body(_MEMBER)
    member = await UserRow.filter(email=body["email"]).first()
    if member is None:
        raise ApiError(404, "not_found", f"no user `{body['email']}`")
    try:
        await Membership.create(team=team, user=member, role=body["role"])
    except IntegrityError as err:
        raise ApiError(409, "already_member", f"`{body['email']}` is already a member") from err
    await gateway().directory.user_changed(member.email)
    await audit(user.email, "team.member.add", team.id, {"member": member.email, "role": body["role"]})
    return created({"members": await _members(team.id)})


@blueprint.delete("/teams/<team_id>/members/<email>")
async def remove_member(team_id: str, email: str) -> Response:
    """Remove a member; a team always keeps at least one owner."""
    user = caller()
    team = await _team_for(user, team_id, manage=True)
    async with in_transaction():
        # The owners' rows stay locked until the end (PostgreSQL; SQLite writes one at a
        # time): two owners removing each other at once would each find the other left.
        owners = await Membership.filter(team_id=team.id, role="owner").select_for_update()
        row = await Membership.filter(team_id=team.id, user__email=email).first()
        if row is None:
            raise ApiError(404, "not_found", f"`{email}` is not a member")
        if row.role == "owner" and len(owners) == 1:
            raise ApiError(409, "last_owner", "a team must keep at least one owner")
        await row.delete()
    await gateway().directory.user_changed(email)
    await audit(user.email, "team.member.remove", team.id, {"member": email})
    return Response("", status=204)


@blueprint.post("/teams/<team_id>/join-requests")
async def request_to_join(team_id: str) -> Response:
    """Ask to join a team (when the policy enables join requests)."""
    user = caller()
    team = await Team.filter(id=team_id).first()
    if team is None:
        raise ApiError(404, "not_found", f"no team `{team_id}`")
    if team_id in user.teams:
        raise ApiError(409, "already_member", "you are already a member")
    async with in_transaction():
        # The requester's row, locked, orders two requests sent at once: the second
        # finds the first one pending.
        requester = await UserRow.select_for_update().get(email=user.email)
        if await JoinRequest.filter(team=team, user=requester, status="pending").exists():
            raise ApiError(409, "request_pending", "a request to join is already pending")
        row = await JoinRequest.create(id=uuid.uuid4().hex, team=team, user=requester)
    await audit(user.email, "team.join_request", team.id)
    return created({"id": row.id, "team_id": team.id, "status": row.status})


@blueprint.get("/teams/<team_id>/join-requests/pending")
async def pending_requests(team_id: str) -> Response:
    """Pending join requests of a team (team owners and platform admins)."""
    team = await _team_for(caller(), team_id, manage=True)
    rows = await JoinRequest.filter(team=team, status="pending").prefetch_related("user")
    return jsonify({"items": [{"id": r.id, "email": r.user.email} for r in rows]})


@blueprint.post("/teams/<team_id>/join-requests/<request_id>/approve")
async def approve_request(team_id: str, request_id: str) -> Response:
    """Approve a pending join request; the requester becomes a member."""
    user = caller()
    team = await _team_for(user, team_id, manage=True)
    row = await JoinRequest.filter(id=request_id, team=team, status="pending").prefetch_related("user").first()
    if row is None:
        raise ApiError(404, "not_found", f"no pending request `{request_id}`")
    async with in_transaction():
        row.status = "approved"
        await row.save()
        await Membership.get_or_create(team=team, user=row.user, defaults={"role": "member"})
    await gateway().directory.user_changed(row.user.email)
    await audit(user.email, "team.join_request.approve", team.id, {"member": row.user.email})
    return jsonify({"id": row.id, "status": row.status})


@blueprint.post("/teams/<team_id>/invitations")
async def invite(team_id: str) -> Response:
    """Invite someone by email (team owners, when the policy enables invitations)."""
    user = caller()
    team = await _team_for(user, team_id, manage=True)
    body = await read_body(_MEMBER)
    row = await Invitation.create(
        id=uuid.uuid4().hex, team=team, email=body["email"], role=body["role"], invited_by=user.email
    )
    await audit(user.email, "team.invite", team.id, {"email": body["email"]})
    return created({"id": row.id, "team_id": team.id, "email": row.email, "status": row.status})


@blueprint.get("/teams/<team_id>/invitations")
async def pending_invitations(team_id: str) -> Response:
    """The team's invitations still waiting for an answer (team owners and platform admins)."""
    team = await _team_for(caller(), team_id, manage=True)
    pending = await Invitation.filter(team=team, status="pending").order_by("created_at")
    # As acceptance would find them; the team's invitations come from a few senders, so
    # each sender is asked about once rather than once per invitation.
    senders: dict[str, bool] = {}
    rows = []
    for row in pending:
        if not _young(row):
            continue
        if row.invited_by not in senders:
            senders[row.invited_by] = await _sender_stands(row)
        if senders[row.invited_by]:
            rows.append(row)
    fields = ("id", "email", "role", "invited_by")
    items = [{**{name: getattr(r, name) for name in fields}, "created_at": r.created_at.isoformat()} for r in rows]
    return jsonify({"items": items})


@blueprint.delete("/teams/<team_id>/invitations/<invitation_id>")
async def withdraw_invitation(team_id: str, invitation_id: str) -> Response:
    """Withdraw a pending invitation (team owners and platform admins)."""
    user = caller()
    team = await _team_for(user, team_id, manage=True)
    withdrawn = await Invitation.filter(id=invitation_id, team=team, status="pending").update(status="withdrawn")
    if not withdrawn:
        raise ApiError(404, "not_found", f"no pending invitation `{invitation_id}`")
    await audit(user.email, "team.invite.withdraw", team.id, {"invitation": invitation_id})
    return Response("", status=204)


@blueprint.post("/invitations/<invitation_id>/accept")
async def accept_invitation(invitation_id: str) -> Response:
    """Accept an invitation addressed to the caller's email.

    An invitation speaks for whoever sent it, so it holds only while they still could
    send it (an owner of the team, or a platform admin whose grant holds
    `admin.user_management`) and for a week: an owner who is removed cannot leave an
    invitation behind to let an accomplice back in as owner.
    """
    user = caller()
    row = await Invitation.filter(id=invitation_id, status="pending").prefetch_related("team").first()
    if row is None or row.email != user.email:
        raise ApiError(404, "not_found", f"no pending invitation `{invitation_id}`")
    member = await UserRow.get(email=user.email)
    async with in_transaction():
        stands = await _still_stands(row, lock=True)
        # Taken only if still pending here: a withdrawal may have landed since the read.
        taken = await Invitation.filter(id=row.id, status="pending").update(status="accepted" if stands else "expired")
        if stands and taken:
            await Membership.get_or_create(team=row.team, user=member, defaults={"role": row.role})
    if not (stands and taken):
        raise ApiError(404, "not_found", f"no pending invitation `{invitation_id}`")
    await gateway().directory.user_changed(user.email)
    await audit(user.email, "team.invite.accept", row.team.id)
    return jsonify({"team_id": row.team.id, "role": row.role})


async def _still_stands(invitation: Invitation, *, lock: bool = False) -> bool:
    """Whether the invitation is young enough and its sender could still send it; with
    `lock`, the sender's owner row stays locked to the end of the transaction (PostgreSQL),
    so the sender's removal waits for the acceptance rather than slipping in between."""
    return _young(invitation) and await _sender_stands(invitation, lock=lock)


def _young(invitation: Invitation) -> bool:
    return dt.datetime.now(dt.UTC) - invitation.created_at <= _INVITATION_LIFETIME


async def _sender_stands(invitation: Invitation, *, lock: bool = False) -> bool:
    """Whether the invitation's sender could still send it."""
    sender = invitation.invited_by
    # The sender's request is long gone: what counts is whether they could send it now,
    # with all that their roles and the admin flag grant them.
    admin = await UserRow.filter(email=sender, is_admin=True, is_active=True).first()
    if admin is not None and _ANY_TEAM in role_grant(g.snapshot.access, frozenset(admin.roles), True):
        return True
    owner = Membership.filter(team_id=invitation.team_id, user__email=sender, user__is_active=True, role="owner")
    return await (owner.select_for_update() if lock else owner).first() is not None
