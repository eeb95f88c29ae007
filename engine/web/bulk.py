"""`POST /bulk-import`: many catalog items at once, all or nothing.

Every item is checked as if it were created alone (schema, content pipeline, team,
name) before anything is written; one bad item means nothing is stored, and the answer
lists every bad item by its index so the whole batch can be fixed in one go.
"""

from __future__ import annotations

import uuid
from typing import Any, Final

from quart import Blueprint, Response, g
from tortoise.transactions import in_transaction

from engine.store.catalog import Resource
from engine.validation import Validator
from engine.web.bodies import read_body
from engine.web.catalog import KINDS, check_team, checked_fields, item_json, notify_changed, uri_taken
from engine.web.identity import caller
from engine.web.list_changes import Scope, scope_of
from engine.web.responses import ApiError, created

__all__ = ["blueprint"]

blueprint = Blueprint("bulk", __name__)

_BODY: Final = {
    "items": {"type": "list", "required": True, "minlength": 1, "maxlength": 1000, "schema": {"type": "dict"}}
}
_IMPORTABLE: Final = ("tools", "resources", "prompts")


@blueprint.post("/bulk-import")
async def bulk_import() -> Response:
    """Import tools, resources and prompts in one transaction; any bad item stops all."""
    user = caller()
    body = await read_body(_BODY)
    accepted: list[tuple[str, dict[str, Any]]] = []
    problems: list[dict[str, Any]] = []
    names: dict[tuple[str, str], int] = {}
    uris: set[str] = set()
    for index, raw in enumerate(body["items"]):
        kind_name = raw.get("kind")
        if kind_name not in _IMPORTABLE:
            problems.append({"index": index, "code": "invalid_body", "message": f"`kind` must be one of {_IMPORTABLE}"})
            continue
        if f"{kind_name}.create" not in g.decision.permissions:
            problems.append(
                {"index": index, "code": "permission_missing", "message": f"`{kind_name}.create` is required"}
            )
            continue
        kind = KINDS[kind_name]
        validator = Validator(dict(kind.schema), allow_unknown=False)
        fields = {k: v for k, v in raw.items() if k != "kind"}
        if not validator.validate(fields):
            field, errors = next(iter(sorted(validator.errors.items())))
            problems.append({"index": index, "code": "invalid_body", "message": f"`{field}`: {errors}"})
            continue
        try:
            values = checked_fields(kind, dict(validator.document))
            check_team(user, values)
        except ApiError as err:
            problems.append({"index": index, "code": err.code, "message": err.message})
            continue
        key = (kind_name, values["name"])
        if key in names or await kind.model.filter(name=values["name"]).exists():
            problems.append({"index": index, "code": "name_taken", "message": f"`{values['name']}` exists"})
            continue
        uri = values.get("uri") if kind.model is Resource else None
        if uri is not None and (uri in uris or await uri_taken(uri)):
            problems.append({"index": index, "code": "uri_taken", "message": f"a resource answers for `{uri}`"})
            continue
        names[key] = index
        if uri is not None:
            uris.add(uri)
        accepted.append((kind_name, values))
    if problems:
        raise ApiError(422, "bulk_import_rejected", f"{len(problems)} item(s) rejected; nothing was imported",
                       details=problems)  # fmt: skip
    stored = []
    scopes: dict[str, list[Scope]] = {}
    async with in_transaction():
        for kind_name, values in accepted:
            item = await KINDS[kind_name].model.create(id=uuid.uuid4().hex, owner=user.email, **values)
            stored.append({"kind": kind_name, **item_json(KINDS[kind_name], item)})
            scopes.setdefault(kind_name, []).append(scope_of(item))
    for kind_name, changed in sorted(scopes.items()):
        notify_changed(KINDS[kind_name], changed)
    return created({"imported": len(stored), "items": stored})
