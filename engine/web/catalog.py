"""REST CRUD for tools, resources, prompts and virtual servers, filtered by visibility.

The guard has checked the verb's permission (`tools.read`, `tools.create`, ...); this
module applies the truth table's answer to the data: a caller only ever loads items
they may see, so an invisible item answers 404 and never appears in a list. Changing an
item takes its owner or a platform admin, and a token only writes into the teams it
reaches. An admin's powers here (over others' items, teams they are not in, changed
upstream tools) take `admin.system_config` besides the flag, as the admin API does.
Stored text goes through the content pipeline first, and nothing is written when any
check fails.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from quart import Blueprint, Response, g, jsonify, request
from tortoise.exceptions import IntegrityError
from tortoise.expressions import Q
from tortoise.models import Model
from tortoise.queryset import QuerySet
from tortoise.transactions import in_transaction

from engine.decide import PUBLIC_ONLY, Decision, User
from engine.store.catalog import CatalogItem, Prompt, Resource, Server, Tool
from engine.uri_templates import clashes
from engine.web.bodies import read_body
from engine.web.identity import admin_power, caller
from engine.web.inspection import ContentRefused, check_json, check_text, sanitize_markup
from engine.web.list_changes import Change, Scope, scope_of
from engine.web.paging import cursor_for, page
from engine.web.responses import ApiError, created
from engine.web.state import gateway, notify, notify_lists

__all__ = [
    "KINDS",
    "blueprint",
    "check_team",
    "checked_fields",
    "item_json",
    "notify_changed",
    "visible",
    "visible_filter",
]

blueprint = Blueprint("catalog", __name__)

_NAME: Final = {"type": "string", "regex": r"^[A-Za-z0-9_.-]{1,128}$"}
_COMMON: Final = {
    "name": {**_NAME, "required": True},
    "description": {"type": "string", "maxlength": 65536, "default": ""},
    "team_id": {"type": "string", "maxlength": 64, "nullable": True, "default": None},
    "visibility": {"type": "string", "allowed": ["public", "team", "private"], "default": "private"},
}
_IDS: Final = {"type": "list", "schema": {"type": "string"}, "default": []}
_MEDIA_TYPE: Final = r"[\w!#$&^.+-]+/[\w!#$&^.+-]+(?:\s*;\s*[\w!#$&^.+-]+=(?:[\w!#$&^.+-]+|\"[^\"\\]*\"))*"
"""A media type and its parameters (RFC 6838, RFC 9110): served as `mimeType`, it is
not a place for text."""


@dataclass(frozen=True, slots=True)
class Kind:
    name: str
    model: type[CatalogItem]
    schema: Mapping[str, Any]
    texts: tuple[tuple[str, str], ...]
    """(field, content context) pairs that pass the content pipeline before storing; a
    JSON field (an input schema, prompt arguments) is checked as its JSON text."""
    details: Callable[[Any], dict[str, Any]]


KINDS: Final = {
    "tools": Kind(
        "tools", Tool, {**_COMMON, "input_schema": {"type": "dict", "default": {"type": "object"}}},
        (("description", "resource"), ("input_schema", "resource")),
        lambda t: {"input_schema": t.input_schema, "changed": t.changed},
    ),
    "resources": Kind(
        "resources", Resource,
        {**_COMMON, "uri": {"type": "string", "required": True, "maxlength": 2048, "regex": r"^[a-zA-Z][\w+.-]*:.+"},
         "mime_type": {"type": "string", "maxlength": 255, "default": "text/plain", "regex": _MEDIA_TYPE},
         "content": {"type": "string", "default": ""}},
        (("description", "resource"), ("uri", "resource"), ("content", "resource")),
        lambda r: {"uri": r.uri, "mime_type": r.mime_type, "content": sanitize_markup(r.mime_type, r.content)},
    ),
    "prompts": Kind(
        "prompts", Prompt,
        {**_COMMON, "template": {"type": "string", "required": True},
         "arguments": {"type": "list", "default": [], "schema": {"type": "dict", "schema": {
             "name": {"type": "string", "required": True}, "description": {"type": "string"},
             "required": {"type": "boolean"}}}}},
        (("description", "prompt"), ("template", "prompt"), ("arguments", "prompt")),
        lambda p: {"template": p.template, "arguments": p.arguments},
    ),
    "servers": Kind(
        "servers", Server, {**_COMMON, "tool_ids": _IDS, "resource_ids": _IDS, "prompt_ids": _IDS},
        (("description", "resource"),),
        lambda s: {"tool_ids": s.tool_ids, "resource_ids": s.resource_ids, "prompt_ids": s.prompt_ids},
    ),
}  # fmt: skip


def visible_filter(decision: Decision, user: User | None) -> Q | None:
    """The truth table's answer as a query filter; None means everything."""
    seen = decision.visibility or PUBLIC_ONLY
    reach = seen.reach
    if reach is None:
        return None
    condition = Q(visibility="public")
    if reach:
        condition |= Q(visibility="team", team_id__in=sorted(reach))
    if seen.sees_own_private and user is not None:
        condition |= Q(visibility="private", owner=user.email)
    return condition


def visible(model: type[Model], decision: Decision | None = None) -> QuerySet[Any]:
    chosen = decision if decision is not None else g.decision
    condition = visible_filter(chosen, g.get("user"))
    query = model.all()
    return query if condition is None else query.filter(condition)


def item_json(kind: Kind, item: Any) -> dict[str, Any]:
    return {
        "id": item.id,
        "name": item.name,
        "description": item.description,
        "owner": item.owner,
        "team_id": item.team_id,
        "visibility": item.visibility,
        "upstream_id": item.upstream_id,
        "available": item.available,
        **kind.details(item),
    }


def check_team(user: User, body: Mapping[str, Any], item: Any = None) -> None:
    """An item goes into a team only by a member (or a platform admin holding
    `admin.system_config`) and only with a token that reaches it; a private item only
    with a token that sees its owner's private items. `body` is what was sent; `item`,
    when given, the stored item it changes.

    Raises:
        ApiError: 422 for a team item without its team, 403 for a team or a private item
            the caller or its token may not write.
    """
    merged = body if item is None else {"team_id": item.team_id, "visibility": item.visibility, **body}
    if merged.get("visibility") == "team" and not merged.get("team_id"):
        raise ApiError(422, "invalid_body", "`team_id`: a team item needs its team")
    seen = g.decision.visibility or PUBLIC_ONLY
    if merged.get("visibility") == "private" and seen.reach is not None and not seen.sees_own_private:
        # Like a team the token does not reach: what it wrote, it could not read back.
        raise ApiError(403, "private_not_in_token", "this token sees public items only: give `visibility: public`")
    team = merged.get("team_id")
    if team is None:
        return
    if team not in user.teams and not admin_power(user, "admin.system_config"):
        raise ApiError(403, "not_team_member", f"you are not a member of `{team}`")
    if seen.reach is not None and team not in seen.reach:
        raise ApiError(403, "team_not_in_token", f"this token does not reach team `{team}`")


async def _check_uri_free(kind: Kind, body: Mapping[str, Any], item_id: str | None = None) -> None:
    """Raises: ApiError 409 `uri_taken` when the resource's URI is another's (see `uri_taken`)."""
    uri = body.get("uri") if kind.model is Resource else None
    if uri is not None and await uri_taken(uri, item_id):
        raise ApiError(409, "uri_taken", f"a resource already answers for the URI `{uri}`")


async def uri_taken(uri: str, item_id: str | None = None) -> bool:
    """Whether another resource than `item_id` answers reads of `uri`: one at that very
    URI, or an upstream's template that covers it. `resources/read` could serve only one."""
    others = Resource.exclude(id=item_id or "")
    if await others.filter(uri=uri).exists():
        return True
    return clashes(uri, False, await others.filter(template=True).values_list("uri", "template"))


_MEMBERS: Final = (("tool_ids", Tool), ("resource_ids", Resource), ("prompt_ids", Prompt))


async def _visible_ids(model: type[CatalogItem], ids: set[str]) -> set[str]:
    if not ids:
        return set()
    return {str(x) for x in await visible(model).filter(id__in=sorted(ids)).values_list("id", flat=True)}


async def _check_members(body: dict[str, Any]) -> None:
    """A virtual server may only bundle items its creator can see."""
    for field, model in _MEMBERS:
        wanted = set(body.get(field, []))
        missing = sorted(wanted - await _visible_ids(model, wanted))
        if missing:
            raise ApiError(422, "invalid_body", f"`{field}`: no such item `{missing[0]}`")


async def _shown(kind: Kind, rows: list[Any]) -> list[dict[str, Any]]:
    """Items as the caller may see them: a server lists only the members the caller can
    see, since the id of a hidden item is itself something hidden.

    A tool's `current_hash` is for the admins who approve changes only: it is taken
    over the upstream's text before redaction, so anyone else could test guesses at
    what was redacted against it.
    """
    items = [item_json(kind, row) for row in rows]
    user: User | None = g.get("user")
    if kind.model is Tool and user is not None and admin_power(user, "admin.system_config"):
        for item, row in zip(items, rows, strict=True):
            item["current_hash"] = row.current_hash
    if kind.model is Server:
        for field, model in _MEMBERS:
            seen = await _visible_ids(model, {i for item in items for i in item[field]})
            for item in items:
                item[field] = [i for i in item[field] if i in seen]
    return items


def checked_fields(kind: Kind, body: dict[str, Any], item: Any = None) -> dict[str, Any]:
    """Run the content pipeline on every text and JSON field; returns the values to store.
    `item`, when given, is the stored item the body changes."""
    for field, context in kind.texts:
        value = body.get(field)
        if isinstance(value, str):
            body[field] = check_text(context, value, field=field)
        elif isinstance(value, dict | list):
            body[field] = check_json(context, value, field=field)
    if kind.model is Resource and ("content" in body or "mime_type" in body):
        _check_served(body.get("content", item.content if item else ""),
                      body.get("mime_type", item.mime_type if item else "text/plain"))  # fmt: skip
    return body


def _check_served(content: str, mime_type: str) -> None:
    """A resource is served sanitized, and sanitizing decodes character references and
    drops unknown tags: either can join text that passed (`123&#45;45&#45;6789`) into
    text that would not. What will be served must pass as well, as it is.

    Raises:
        ContentRefused: the served text breaks a blocking rule, or one that would redact it.
    """
    served = sanitize_markup(mime_type, content)
    if served != content and check_text("resource", served, field="content") != served:
        raise ContentRefused(422, "content_blocked", "`content`: sanitized, it holds text the content rules redact")


def _register(kind: Kind) -> None:
    prefix = f"/{kind.name}"

    async def list_items() -> Response:
        limit, after = page(request.args.get("limit"), request.args.get("cursor"), default=50, most=500)
        query = visible(kind.model)
        if after is not None:
            query = query.filter(id__gt=after)
        rows = await query.order_by("id").limit(limit + 1)
        body: dict[str, Any] = {"items": await _shown(kind, rows[:limit])}
        if len(rows) > limit:
            body["next_cursor"] = cursor_for(rows[limit - 1].id)
        return jsonify(body)

    async def create_item() -> Response:
        user = caller()
        body = checked_fields(kind, await read_body(kind.schema))
        check_team(user, body)
        if kind.model is Server:
            await _check_members(body)
        await _check_uri_free(kind, body)
        try:
            item = await kind.model.create(id=uuid.uuid4().hex, owner=user.email, **body)
        except IntegrityError as err:
            raise ApiError(409, "name_taken", f"a {kind.name[:-1]} named `{body['name']}` exists") from err
        notify_changed(kind, [scope_of(item)])
        return created((await _shown(kind, [item]))[0])

    async def read_item(item_id: str) -> Response:
        return jsonify((await _shown(kind, [await _find(kind, item_id)]))[0])

    async def update_item(item_id: str) -> Response:
        user = caller()
        item = await _find(kind, item_id)
        _require_owner(user, item)
        partial = {k: {**v, "required": False} for k, v in kind.schema.items()}
        for rule in partial.values():
            rule.pop("default", None)
        if kind.model is Tool:
            # The `current_hash` the admin reviewed: what is approved is what was read.
            partial["approve_change"] = {"type": "string", "regex": "^[0-9a-f]{64}$"}
        body = checked_fields(kind, await read_body(partial), item)
        approve: str | None = body.pop("approve_change", None)
        if approve is not None and not admin_power(user, "admin.system_config"):
            raise ApiError(403, "admin_required", "only platform admins approve a changed upstream tool")
        check_team(user, body, item)
        if kind.model is Server:
            await _check_members(body)
        await _check_uri_free(kind, body, item.id)
        before = scope_of(item)
        for name, value in body.items():
            setattr(item, name, value)
        # Only what was sent is written: an upstream sync may have flagged the tool or
        # changed its description while the body was on its way.
        try:
            async with in_transaction():
                if approve is not None:
                    await _approve(item.id, approve)
                await item.save(update_fields=[*body, "updated_at"])
        except IntegrityError as err:
            raise ApiError(409, "name_taken", f"a {kind.name[:-1]} named `{body.get('name')}` exists") from err
        notify_changed(kind, [before, scope_of(item)], item.id)
        stored = await kind.model.filter(id=item_id).first()
        if stored is None:
            raise ApiError(404, "not_found", f"no {kind.name[:-1]} `{item_id}`")  # removed meanwhile
        return jsonify((await _shown(kind, [stored]))[0])

    async def delete_item(item_id: str) -> Response:
        item = await _find(kind, item_id)
        _require_owner(caller(), item)
        await item.delete()
        notify_changed(kind, [scope_of(item)])
        return Response("", status=204)

    for view, rule, methods in (
        (list_items, prefix, ["GET"]),
        (create_item, prefix, ["POST"]),
        (read_item, f"{prefix}/<item_id>", ["GET"]),
        (update_item, f"{prefix}/<item_id>", ["PUT", "PATCH"]),
        (delete_item, f"{prefix}/<item_id>", ["DELETE"]),
    ):
        view.__doc__ = f"{view.__name__.replace('_', ' ').replace('items', kind.name).replace('item', kind.name[:-1])}"
        blueprint.add_url_rule(rule, f"{kind.name}_{view.__name__}", view, methods=methods)


def notify_changed(kind: Kind, scopes: Iterable[Scope], item_id: str | None = None) -> None:
    """Tell the MCP streams that may see one of `scopes` that a list of `kind` changed.

    A virtual server's lists are its members: when one is updated (`item_id`), the
    streams on its own endpoint hear that all three of its lists changed.
    """
    distinct = tuple(dict.fromkeys(scopes))
    if kind.model is not Server:
        notify(gateway(), Change(f"notifications/{kind.name}/list_changed", distinct))
    elif item_id is not None:
        notify_lists(gateway(), distinct, item_id)


async def _find(kind: Kind, item_id: str) -> Any:
    item = await visible(kind.model).filter(id=item_id).first()
    if item is None:
        raise ApiError(404, "not_found", f"no {kind.name[:-1]} `{item_id}`")
    return item


async def _approve(tool_id: str, reviewed: str) -> None:
    """Pin the version the admin reviewed, and only while the upstream still describes
    the tool that way: a rewrite since the review is not approved with it."""
    if not await Tool.filter(id=tool_id, current_hash=reviewed).update(pinned_hash=reviewed, changed=False):
        if not await Tool.filter(id=tool_id).exists():
            raise ApiError(404, "not_found", f"no tool `{tool_id}`")
        message = "the upstream describes this tool differently from the version reviewed; review it again"
        raise ApiError(409, "tool_changed_again", message)


def _require_owner(user: User, item: Any) -> None:
    if item.owner != user.email and not admin_power(user, "admin.system_config"):
        raise ApiError(403, "not_owner", "only the owner or a platform admin may change this item")


for _kind in KINDS.values():
    _register(_kind)
