"""Discover what an upstream offers and keep the catalog in step with it.

Discovered tools are namespaced with the upstream's prefix and pinned: the hash of the
description and input schema seen first is kept, and a later difference marks the tool
`changed` (tool poisoning: an upstream that rewrites a tool's instructions after it was
reviewed). What the policy does with a changed tool, flag or block, is decided when it
is called. Discovered text passes the same content checks as anything registered by
hand, and is stored as they leave it (redacted where the policy redacts); an item that
fails them, does not fit the catalog or would take a name already in use is left out
and reported. What is left is written in one transaction, so a sync that fails midway
leaves the catalog as it was. An unreachable upstream marks its items unavailable and
leaves every other upstream alone.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final, Protocol, cast

from tortoise.transactions import in_transaction

from engine.federation.upstream import UpstreamClient, UpstreamError
from engine.json_texts import holds_nul
from engine.store.catalog import CatalogItem, Prompt, Resource, Tool, Upstream
from engine.uri_templates import clashes

__all__ = ["Checker", "SyncReport", "mark_unreachable", "pin_hash", "sync_upstream"]


class Checker(Protocol):
    """The content pipeline, handed in by the web layer: each method returns the value
    to store (redacted where the policy redacts) and raises when it is refused."""

    def text(self, context: str, text: str, field: str) -> str: ...

    def json(self, context: str, value: Any, field: str) -> Any: ...


_SHORT: Final = 255
"""The longest name, upstream name or media type the catalog holds."""
DISCOVERY_S: Final = 60
"""How long reading an upstream's four lists may take in all."""
MAX_LISTED: Final = 5000
"""Items of one kind an upstream may offer."""
_CALLABLE: Final = re.compile(r"[A-Za-z0-9_.:/@+-]+")
"""What a tool or prompt may be called: the characters of the protocol's tool names
(and the `:` `/` `@` `+` upstreams use as separators). A name a client calls by and a
model reads is no place for spaces, markup or line breaks."""
_CONTROL: Final = re.compile(r"[\x00-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff]")
"""Control characters, and the Unicode line breaks and invisible format characters
(zero-width, bidirectional overrides) that make a line read other than it shows."""


class _Refused(Exception):
    def __init__(self, field: str, reason: str) -> None:
        super().__init__(reason)
        self.field = field
        self.reason = reason


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


@dataclass(frozen=True, slots=True)
class _Item:
    """A discovered item as it will be stored, under its upstream's own name for it."""

    model: type[CatalogItem]
    upstream_name: str
    values: dict[str, Any]
    pin: str = ""
    """For a tool, the hash of what the upstream says it does."""


async def _offered(client: UpstreamClient) -> tuple[list[dict[str, Any]], ...]:
    """The upstream's tools, resources, resource templates and prompts.

    Bounded in time and count: an upstream that pages slowly or without end would hold
    a registration, or the health checks rediscovering it, for as long as it liked.

    Raises:
        UpstreamError: a list could not be read whole in time.
    """
    try:
        async with asyncio.timeout(DISCOVERY_S):
            return (
                await _all(client, "tools/list", "tools"),
                await _all(client, "resources/list", "resources"),
                await _all(client, "resources/templates/list", "resourceTemplates"),
                await _all(client, "prompts/list", "prompts"),
            )
    except TimeoutError as err:
        raise UpstreamError("upstream_timeout", f"the upstream's lists took longer than {DISCOVERY_S} s") from err


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
        listed = result.get(key)
        if not isinstance(listed, list):
            raise UpstreamError("upstream_protocol", f"the upstream's `{method}` answer has no `{key}` list")
        items += [i for i in listed if isinstance(i, dict)]
        if len(items) > MAX_LISTED:
            raise UpstreamError("upstream_protocol", f"the upstream lists more than {MAX_LISTED} {key}")
        cursor = result.get("nextCursor")
        if not cursor or not isinstance(cursor, str):
            break
    return items


async def sync_upstream(row: Upstream, client: UpstreamClient, check: Checker, *, new: bool = False) -> SyncReport:
    """Bring `row`'s items in step with what its upstream offers now.

    A `new` row is stored by the sync itself, in the same transaction as its items (or
    as `unreachable` when the upstream cannot be asked), so a registration that fails
    leaves nothing behind.
    """
    report = SyncReport()
    try:
        tools, resources, templates, prompts = await _offered(client)
    except UpstreamError as err:
        reason = err.in_own_words("to list")
        report.error = reason
        if new:
            row.status, row.last_error = "unreachable", reason
            await row.save()
        else:
            await mark_unreachable(row, reason)
        return report
    planned = [_tool(row.prefix, raw, check) for raw in tools]
    planned += [_resource(row.prefix, raw, "uri", check) for raw in resources]
    planned += [_resource(row.prefix, raw, "uriTemplate", check) for raw in templates]
    planned += [_prompt(row.prefix, raw, check) for raw in prompts]
    items = await _named_freely(row, _accepted(planned, report), report)
    async with in_transaction():
        row.status, row.last_error = "ok", ""
        if new:
            await row.save()
        else:
            await Upstream.filter(id=row.id).update(status="ok", last_error="")
        seen: dict[type[CatalogItem], list[str]] = {}
        for model in (Tool, Resource, Prompt):
            existing: dict[str | None, CatalogItem] = {
                i.upstream_name: i for i in await model.filter(upstream_id=row.id)
            }
            seen[model] = [await _upsert(row, item, existing, report) for item in items if item.model is model]
            await model.filter(upstream_id=row.id).exclude(id__in=seen[model]).update(available=False)
    report.tools, report.resources, report.prompts = len(seen[Tool]), len(seen[Resource]), len(seen[Prompt])
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


def _accepted(planned: list[tuple[str, _Item | _Refused]], report: SyncReport) -> list[_Item]:
    items = []
    for name, outcome in planned:
        if isinstance(outcome, _Refused):
            # Capped: it is upstream text, and the registering caller sees the report.
            report.refused.append({"name": name[:_SHORT], "field": outcome.field, "reason": outcome.reason})
        else:
            items.append(outcome)
    return items


async def _named_freely(row: Upstream, items: list[_Item], report: SyncReport) -> list[_Item]:
    """The items whose catalog name is free, or already theirs; the others are reported.

    Names are unique across the catalog: a discovered item never takes over the name of
    one registered by hand or discovered from another upstream.
    """
    kept = []
    for model in (Tool, Resource, Prompt):
        mine = [item for item in items if item.model is model]
        if not mine:
            continue
        held = await model.filter(name__in=[item.values["name"] for item in mine]).values_list(
            "name", "upstream_id", "upstream_name"
        )
        owner = {name: (upstream_id, upstream_name) for name, upstream_id, upstream_name in held}
        claimed: set[str] = set()
        for item in mine:
            name = item.values["name"]
            if name in claimed or owner.get(name, (row.id, item.upstream_name)) != (row.id, item.upstream_name):
                report.refused.append({"name": item.upstream_name, "field": "name", "reason": "name_taken"})
                continue
            claimed.add(name)
            kept.append(item)
    return await _addressed_freely(row, kept, report)


async def _addressed_freely(row: Upstream, items: list[_Item], report: SyncReport) -> list[_Item]:
    """The items that answer for URIs no other resource answers for; the others are reported.

    A read goes to one resource (see `engine.uri_templates`): an upstream listing another's
    URI, or a template over it, would otherwise be served that URI's reads. Within one
    upstream only repeats count: how it splits its own URIs is its own affair.
    """
    if not any(item.model is Resource for item in items):
        return items
    held = await Resource.all().values_list("uri", "template", "upstream_id")
    # An item registered by hand has no upstream; this upstream's own rows are replaced.
    others = [(uri, template) for uri, template, upstream_id in held if upstream_id != row.id]
    own: list[tuple[str, bool]] = []
    kept = []
    for item in items:
        if item.model is Resource:
            address = (item.values["uri"], item.values["template"])
            if clashes(*address, others) or clashes(*address, [o for o in own if o[1] == address[1]]):
                report.refused.append({"name": item.upstream_name, "field": "uri", "reason": "uri_taken"})
                continue
            own.append(address)
        kept.append(item)
    return kept


class _HoldsNul(Exception):
    """Discovered text holding a NUL character, which no backend should store (see `holds_nul`)."""

    code = "nul_character"


def _text(check: Checker, context: str, field_name: str, text: str) -> str:
    def judged() -> str:
        if "\x00" in text:
            raise _HoldsNul()
        return check.text(context, text, field_name)

    return cast(str, _judged(field_name, judged))


def _json(check: Checker, context: str, field_name: str, value: Any) -> Any:
    def judged() -> Any:
        if holds_nul(value):
            raise _HoldsNul()
        return check.json(context, value, field_name)

    return _judged(field_name, judged)


def _judged(field_name: str, check: Callable[[], Any]) -> Any:
    try:
        return check()
    except Exception as err:  # the content pipeline's refusal
        raise _Refused(field_name, getattr(err, "code", "refused")) from err


def _short(field_name: str, value: str, limit: int = _SHORT) -> str:
    if not value:
        raise _Refused(field_name, "missing")
    if len(value) > limit:
        raise _Refused(field_name, "too_long")
    return value


def _callable(value: str) -> str:
    if not _CALLABLE.fullmatch(value):
        raise _Refused("name", "invalid_name")
    return _short("name", value)


def _plain(check: Checker, field_name: str, value: str) -> str:
    """A line of text shown as it is (a name, a URI, a type): no control characters, and
    nothing the content rules refuse. Nor anything they would redact: it names the item
    upstream, and a redacted name would name another."""
    if _CONTROL.search(value):
        raise _Refused(field_name, "control_character")
    if _text(check, "resource", field_name, value) != value:
        raise _Refused(field_name, "content_redacted")
    return value


def _tool(prefix: str, raw: dict[str, Any], check: Checker) -> tuple[str, _Item | _Refused]:
    name = str(raw.get("name") or "")
    try:
        description = str(raw.get("description") or "")
        schema = raw.get("inputSchema") if isinstance(raw.get("inputSchema"), dict) else {"type": "object"}
        values = {
            "name": _plain(check, "name", _callable(prefix + _short("name", name))),
            "description": _text(check, "resource", "description", description),
            "input_schema": _json(check, "resource", "inputSchema", schema),
        }
    except _Refused as refused:
        return name, refused
    return name, _Item(Tool, name, values, pin_hash(description, schema))


def _resource(prefix: str, raw: dict[str, Any], key: str, check: Checker) -> tuple[str, _Item | _Refused]:
    uri = str(raw.get(key) or "")
    try:
        values = {
            "name": _plain(check, "name", _short("name", prefix + str(raw.get("name") or uri))),
            "description": _text(check, "resource", "description", str(raw.get("description") or "")),
            "uri": _plain(check, key, uri),
            "mime_type": _plain(check, "mimeType", _short("mimeType", str(raw.get("mimeType") or "text/plain"))),
            "template": key == "uriTemplate",
        }
        # The URI is the resource's identity upstream, kept where the catalog keeps names.
        return uri, _Item(Resource, _short(key, uri), values)
    except _Refused as refused:
        return uri, refused


def _prompt(prefix: str, raw: dict[str, Any], check: Checker) -> tuple[str, _Item | _Refused]:
    name = str(raw.get("name") or "")
    listed = raw.get("arguments")
    arguments = [a for a in listed if isinstance(a, dict)] if isinstance(listed, list) else []
    try:
        values = {
            "name": _plain(check, "name", _callable(prefix + _short("name", name))),
            "description": _text(check, "prompt", "description", str(raw.get("description") or "")),
            "arguments": _json(check, "prompt", "arguments", arguments),
        }
    except _Refused as refused:
        return name, refused
    return name, _Item(Prompt, name, values)


async def _upsert(row: Upstream, item: _Item, stored: dict[str | None, CatalogItem], report: SyncReport) -> str:
    """Store one item (`stored`: the upstream's items of its kind by upstream name, kept
    up to date: an upstream may list one URI twice); a tool whose description or schema
    moved off its pin is flagged."""
    values = dict(item.values)
    existing = stored.get(item.upstream_name)
    if item.model is Tool:
        values["current_hash"] = item.pin
        if existing is None:
            values["pinned_hash"] = item.pin
        elif isinstance(existing, Tool) and existing.pinned_hash != item.pin:
            values["changed"] = True
            report.changed.append(values["name"])
    if existing is None:
        common: dict[str, Any] = {
            "owner": row.owner, "team_id": row.team_id, "visibility": row.visibility, "upstream_id": row.id
        }  # fmt: skip
        created = await item.model.create(id=uuid.uuid4().hex, upstream_name=item.upstream_name, **common, **values)
        stored[item.upstream_name] = created
        return str(created.id)
    await item.model.filter(id=existing.id).update(available=True, **values)
    return str(existing.id)
