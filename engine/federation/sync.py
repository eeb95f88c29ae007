"""Discover what an upstream offers and keep the catalog in step with it.

Discovered tools are namespaced with the upstream's prefix and pinned: the hash of the
description and input schema seen first is kept, and a later difference marks the tool
`changed` (tool poisoning: an upstream that rewrites a tool's instructions after it was
reviewed). What the policy does with a changed tool, flag or block, is decided when it
is called. Discovered text passes the same content checks as anything registered by
hand; an item that fails them is left out and reported. An unreachable upstream marks
its items unavailable and leaves every other upstream alone.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from engine.federation.upstream import UpstreamClient, UpstreamError
from engine.json_bytes import dumps_text
from engine.store.catalog import Prompt, Resource, Tool, Upstream

__all__ = ["SyncReport", "mark_unreachable", "pin_hash", "sync_upstream"]

Checker = Callable[[str, str, str], str]
"""(content context, text, field) -> text to store; raises when the text is refused."""


@dataclass
class SyncReport:
    tools: int = 0
    resources: int = 0
    prompts: int = 0
    changed: list[str] = field(default_factory=list)
    refused: list[dict[str, str]] = field(default_factory=list)
    error: str = ""


def pin_hash(description: str, schema: Any) -> str:
    canonical = json.dumps({"description": description, "inputSchema": schema}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


async def _all(client: UpstreamClient, method: str, key: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    cursor: str | None = None
    for _ in range(100):
        try:
            result = await client.request(method, {"cursor": cursor} if cursor else {})
        except UpstreamError as err:
            if err.code == "upstream_error" and err.rpc_code == -32601:
                return items  # the upstream does not offer this kind
            raise
        items += [i for i in result.get(key, []) if isinstance(i, dict)]
        cursor = result.get("nextCursor")
        if not cursor:
            break
    return items


async def sync_upstream(row: Upstream, client: UpstreamClient, check: Checker) -> SyncReport:
    report = SyncReport()
    try:
        tools = await _all(client, "tools/list", "tools")
        resources = await _all(client, "resources/list", "resources")
        templates = await _all(client, "resources/templates/list", "resourceTemplates")
        prompts = await _all(client, "prompts/list", "prompts")
    except UpstreamError as err:
        await mark_unreachable(row, err.message)
        report.error = err.message
        return report
    prefix = _prefix(row)
    seen_tools = await _sync_tools(row, prefix, tools, check, report)
    seen_resources = await _sync_resources(row, prefix, resources, templates, check, report)
    seen_prompts = await _sync_prompts(row, prefix, prompts, check, report)
    for model, seen in ((Tool, seen_tools), (Resource, seen_resources), (Prompt, seen_prompts)):
        await model.filter(upstream_id=row.id).exclude(id__in=seen).update(available=False)
    row.status, row.last_error = "ok", ""
    await row.save()
    return report


async def mark_unreachable(row: Upstream, message: str) -> bool:
    """Take an upstream's items out of every list; False when it was already marked.

    The status changes by compare-and-set in the store, so of several workers that see
    the same upstream fail, one learns it made the change.
    """
    down = Upstream.filter(id=row.id).exclude(status="unreachable")
    changed = await down.update(status="unreachable", last_error=message)
    row.status, row.last_error = "unreachable", message
    if not changed:
        # Already down, so its items already are: only a successful sync brings them back.
        await Upstream.filter(id=row.id).update(last_error=message)
        return False
    for model in (Tool, Resource, Prompt):
        await model.filter(upstream_id=row.id).update(available=False)
    return True


def _prefix(row: Upstream) -> str:
    return row.prefix


def _checked(check: Checker, report: SyncReport, name: str, texts: list[tuple[str, str]]) -> bool:
    for field_name, text in texts:
        try:
            check("resource", text, field_name)
        except Exception as err:
            report.refused.append({"name": name, "field": field_name, "reason": getattr(err, "code", "refused")})
            return False
    return True


async def _upsert(model: Any, row: Upstream, upstream_name: str, values: dict[str, Any]) -> Any:
    existing = await model.filter(upstream_id=row.id, upstream_name=upstream_name).first()
    if existing is None:
        common = {"owner": row.owner, "team_id": row.team_id, "visibility": row.visibility, "upstream_id": row.id}
        return await model.create(id=uuid.uuid4().hex, upstream_name=upstream_name, **common, **values)
    for key, value in values.items():
        setattr(existing, key, value)
    existing.available = True
    await existing.save()
    return existing


async def _sync_tools(
    row: Upstream, prefix: str, tools: list[dict[str, Any]], check: Checker, report: SyncReport
) -> list[str]:
    seen = []
    for tool in tools:
        name, description = str(tool.get("name", "")), str(tool.get("description") or "")
        schema = tool.get("inputSchema") if isinstance(tool.get("inputSchema"), dict) else {"type": "object"}
        if not name or not _checked(
            check, report, name, [("description", description), ("inputSchema", dumps_text(schema))]
        ):
            continue
        digest = pin_hash(description, schema)
        existing = await Tool.filter(upstream_id=row.id, upstream_name=name).first()
        values: dict[str, Any] = {"name": prefix + name, "description": description, "input_schema": schema,
                                  "current_hash": digest}  # fmt: skip
        if existing is None:
            values["pinned_hash"] = digest
        elif existing.pinned_hash != digest:
            values["changed"] = True
            report.changed.append(prefix + name)
        item = await _upsert(Tool, row, name, values)
        seen.append(item.id)
        report.tools += 1
    return seen


async def _sync_resources(
    row: Upstream,
    prefix: str,
    resources: list[dict[str, Any]],
    templates: list[dict[str, Any]],
    check: Checker,
    report: SyncReport,
) -> list[str]:
    seen = []
    entries = [(r, str(r.get("uri", "")), False) for r in resources]
    entries += [(t, str(t.get("uriTemplate", "")), True) for t in templates]
    for raw, uri, template in entries:
        description = str(raw.get("description") or "")
        if not uri or not _checked(check, report, uri, [("description", description)]):
            continue
        values = {
            "name": prefix + str(raw.get("name") or uri),
            "description": description,
            "uri": uri,
            "mime_type": str(raw.get("mimeType") or "text/plain"),
            "template": template,
        }
        item = await _upsert(Resource, row, uri, values)
        seen.append(item.id)
        report.resources += 1
    return seen


async def _sync_prompts(
    row: Upstream, prefix: str, prompts: list[dict[str, Any]], check: Checker, report: SyncReport
) -> list[str]:
    seen = []
    for raw in prompts:
        name, description = str(raw.get("name", "")), str(raw.get("description") or "")
        if not name or not _checked(check, report, name, [("description", description)]):
            continue
        arguments = [a for a in raw.get("arguments") or [] if isinstance(a, dict)]
        item = await _upsert(
            Prompt, row, name, {"name": prefix + name, "description": description, "arguments": arguments}
        )
        seen.append(item.id)
        report.prompts += 1
    return seen
