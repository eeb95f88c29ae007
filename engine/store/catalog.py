"""Catalog tables: tools, resources, prompts, virtual servers and upstream gateways.

Every item has an owner, an optional team and a visibility (`public`, `team`,
`private`); which of them a caller sees is decided by the policy's truth table and
applied as a query filter, so an invisible item is never even loaded. Items discovered
from an upstream keep the upstream's own name, and tools keep a hash of what the
upstream first said they do, to notice a description that changes later.
"""

from __future__ import annotations

from typing import Any

from tortoise import fields
from tortoise.models import Model

__all__ = ["CatalogItem", "Prompt", "Resource", "Server", "Tool", "Upstream"]


class CatalogItem(Model):
    id = fields.CharField(max_length=64, primary_key=True)
    name = fields.CharField(max_length=255, unique=True)
    description = fields.TextField(default="")
    owner = fields.CharField(max_length=320)
    team_id = fields.CharField(max_length=64, null=True)
    visibility = fields.CharField(max_length=16, default="private")
    upstream_id = fields.CharField(max_length=64, null=True, db_index=True)
    upstream_name = fields.CharField(max_length=255, null=True)
    available = fields.BooleanField(default=True)
    created_at = fields.DatetimeField(auto_now_add=True)
    updated_at = fields.DatetimeField(auto_now=True)

    class Meta:
        abstract = True


class Tool(CatalogItem):
    input_schema: fields.JSONField[dict[str, Any]] = fields.JSONField(default=dict)
    pinned_hash = fields.CharField(max_length=64, default="")
    current_hash = fields.CharField(max_length=64, default="")
    changed = fields.BooleanField(default=False)

    class Meta:
        table = "tools"


class Resource(CatalogItem):
    uri = fields.CharField(max_length=2048)
    mime_type = fields.CharField(max_length=255, default="text/plain")
    content = fields.TextField(default="")
    template = fields.BooleanField(default=False)

    class Meta:
        table = "resources"


class Prompt(CatalogItem):
    template = fields.TextField(default="")
    arguments: fields.JSONField[list[dict[str, Any]]] = fields.JSONField(default=list)

    class Meta:
        table = "prompts"


class Server(CatalogItem):
    tool_ids: fields.JSONField[list[str]] = fields.JSONField(default=list)
    resource_ids: fields.JSONField[list[str]] = fields.JSONField(default=list)
    prompt_ids: fields.JSONField[list[str]] = fields.JSONField(default=list)

    class Meta:
        table = "servers"


class Upstream(CatalogItem):
    """An upstream MCP server (a "gateway" in the API); its credentials are encrypted."""

    url = fields.CharField(max_length=2048)
    prefix = fields.CharField(max_length=64, default="")
    credentials = fields.TextField(default="")
    status = fields.CharField(max_length=32, default="unknown")
    last_error = fields.TextField(default="")

    class Meta:
        table = "gateways"
