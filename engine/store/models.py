"""Tables of the gateway's store.

Secrets are never stored in a form that can be read back: passwords as memory-hard
hashes, API tokens only by their `jti` (the signed token is shown once and then
forgotten). Rows are never returned to the decision core; `queries` turns them into
frozen values first.
"""

from __future__ import annotations

from typing import Any

from tortoise import fields
from tortoise.models import Model

__all__ = [
    "ApiToken",
    "AuditEvent",
    "Invitation",
    "JoinRequest",
    "Membership",
    "ProxySession",
    "Revocation",
    "Team",
    "User",
]


class User(Model):
    id = fields.IntField(primary_key=True)
    email = fields.CharField(max_length=320, unique=True)
    password_hash = fields.CharField(max_length=255)
    full_name = fields.CharField(max_length=200, default="")
    is_admin = fields.BooleanField(default=False)
    is_active = fields.BooleanField(default=True)
    roles: fields.JSONField[list[str]] = fields.JSONField(default=list)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "users"


class Team(Model):
    id = fields.CharField(max_length=64, primary_key=True)
    name = fields.CharField(max_length=200, unique=True)
    description = fields.TextField(default="")
    created_by = fields.CharField(max_length=320)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "teams"


class Membership(Model):
    id = fields.IntField(primary_key=True)
    team: fields.ForeignKeyRelation[Team] = fields.ForeignKeyField(
        "models.Team", related_name="memberships", on_delete=fields.CASCADE
    )
    user: fields.ForeignKeyRelation[User] = fields.ForeignKeyField(
        "models.User", related_name="memberships", on_delete=fields.CASCADE
    )
    role = fields.CharField(max_length=32, default="member")
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "memberships"
        unique_together = (("team", "user"),)


class JoinRequest(Model):
    id = fields.CharField(max_length=64, primary_key=True)
    team: fields.ForeignKeyRelation[Team] = fields.ForeignKeyField(
        "models.Team", related_name="join_requests", on_delete=fields.CASCADE
    )
    user: fields.ForeignKeyRelation[User] = fields.ForeignKeyField(
        "models.User", related_name="join_requests", on_delete=fields.CASCADE
    )
    status = fields.CharField(max_length=16, default="pending")
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "join_requests"


class Invitation(Model):
    id = fields.CharField(max_length=64, primary_key=True)
    team: fields.ForeignKeyRelation[Team] = fields.ForeignKeyField(
        "models.Team", related_name="invitations", on_delete=fields.CASCADE
    )
    team_id: str  # the key's column, set by the ORM
    email = fields.CharField(max_length=320)
    role = fields.CharField(max_length=32, default="member")
    invited_by = fields.CharField(max_length=320)
    status = fields.CharField(max_length=16, default="pending")
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "invitations"


class ApiToken(Model):
    jti = fields.CharField(max_length=64, primary_key=True)
    owner: fields.ForeignKeyRelation[User] = fields.ForeignKeyField(
        "models.User", related_name="tokens", on_delete=fields.CASCADE
    )
    name = fields.CharField(max_length=200)
    scopes: fields.JSONField[dict[str, Any]] = fields.JSONField(default=dict)
    teams: fields.JSONField[list[str] | None] = fields.JSONField(null=True)
    expires_at = fields.DatetimeField()
    created_at = fields.DatetimeField(auto_now_add=True)
    last_used_at = fields.DatetimeField(null=True)

    class Meta:
        table = "api_tokens"


class Revocation(Model):
    jti = fields.CharField(max_length=64, primary_key=True)
    revoked_by = fields.CharField(max_length=320)
    reason = fields.CharField(max_length=500, default="")
    revoked_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "token_revocations"


class ProxySession(Model):
    id = fields.UUIDField(primary_key=True)
    owner: fields.ForeignKeyRelation[User] = fields.ForeignKeyField(
        "models.User", related_name="proxy_sessions", on_delete=fields.CASCADE
    )
    name = fields.CharField(max_length=200, default="")
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "reverse_proxy_sessions"


class AuditEvent(Model):
    id = fields.IntField(primary_key=True)
    at = fields.DatetimeField(auto_now_add=True)
    actor = fields.CharField(max_length=320)
    action = fields.CharField(max_length=64)
    target = fields.CharField(max_length=320, default="")
    detail: fields.JSONField[dict[str, Any]] = fields.JSONField(default=dict)
    request_id = fields.CharField(max_length=64, default="")

    class Meta:
        table = "audit_events"
