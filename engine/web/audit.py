"""Audit events: who changed what, kept in the store and never holding a secret."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from quart import g

from engine.store.models import AuditEvent

__all__ = ["audit"]


async def audit(actor: str, action: str, target: str = "", detail: Mapping[str, Any] | None = None) -> None:
    await AuditEvent.create(
        actor=actor, action=action, target=target, detail=dict(detail or {}), request_id=g.get("request_id", "")
    )
