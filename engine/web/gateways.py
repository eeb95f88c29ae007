"""Upstream MCP servers ("gateways"): register, discover, refresh, remove.

The credentials the gateway holds for an upstream are sealed before they are stored and
never appear in any answer; the API only says whether there are some. Registering an
upstream discovers what it offers right away; an upstream that cannot be reached is
stored as `unreachable` with its items unavailable, and can be refreshed later. A
registration whose discovery fails stores nothing at all.
"""

from __future__ import annotations

import json
import uuid
from typing import Any, Final
from urllib.parse import SplitResult, urlsplit, urlunsplit

from quart import Blueprint, Response, g, jsonify
from tortoise.transactions import in_transaction

from engine.federation.addresses import is_public, resolve
from engine.federation.sync import SyncReport, sync_upstream
from engine.federation.upstream import PRIVATE_NETWORKS_HINT, UpstreamClient
from engine.store.catalog import Prompt, Resource, Tool, Upstream
from engine.web.bodies import read_body
from engine.web.catalog import check_team, visible
from engine.web.identity import admin_power, caller
from engine.web.inspection import check_json, check_text
from engine.web.list_changes import scope_of
from engine.web.responses import ApiError, created
from engine.web.state import Gateway, gateway, in_background, notify_lists

__all__ = ["blueprint", "discover", "pooled_client", "upstream_client"]

blueprint = Blueprint("gateways", __name__)

_HEADER_NAME: Final = (
    # An HTTP token, and none of the headers the gateway itself sets to speak MCP.
    r"(?i)(?!(?:host|content-length|content-type|transfer-encoding|connection|accept|mcp-session-id"
    r"|mcp-protocol-version)$)[!#$%&'*+.^_`|~0-9a-z-]{1,128}"
)
_CREATE: Final = {
    # 62 leaves room for the default prefix, the name and `__`, in the catalog's 64.
    "name": {"type": "string", "required": True, "regex": r"^[A-Za-z0-9_.-]{1,62}$"},
    "url": {"type": "string", "required": True, "regex": r"^https?://[^\s]+$", "maxlength": 2048},
    "description": {"type": "string", "default": "", "maxlength": 4096},
    "prefix": {"type": "string", "regex": r"^[A-Za-z0-9_.-]{0,32}$"},
    "team_id": {"type": "string", "maxlength": 64, "nullable": True, "default": None},
    "visibility": {"type": "string", "allowed": ["public", "team", "private"], "default": "private"},
    "credentials": {
        "type": "dict",
        "schema": {
            "bearer_token": {"type": "string", "maxlength": 8192, "regex": r"[\x21-\x7e]+"},
            "headers": {
                "type": "dict",
                "keysrules": {"type": "string", "regex": _HEADER_NAME},
                "valuesrules": {"type": "string", "regex": r"[\t\x20-\x7e]{0,8192}"},
            },
        },
    },
}


def _json(row: Upstream, report: SyncReport | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": row.id,
        "name": row.name,
        "url": _shown_url(row.url),
        "prefix": row.prefix,
        "description": row.description,
        "owner": row.owner,
        "team_id": row.team_id,
        "visibility": row.visibility,
        "status": row.status,
        "last_error": row.last_error,
        "has_credentials": bool(row.credentials),
    }
    if report is not None:
        body["discovered"] = {
            "tools": report.tools,
            "resources": report.resources,
            "prompts": report.prompts,
            "changed": report.changed,
            "refused": report.refused,
        }
    return body


def _shown_url(url: str) -> str:
    """The URL without what may be a secret: user info, and the query whole. A query's
    names are no safer than its values: a bare token (`?sk-live-...`, or base64 with its
    `=` padding) reads as a name."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = f"[{host}]" if ":" in host else host
    port = _port(parts)
    if port is not None:
        netloc += f":{port}"
    return urlunsplit((parts.scheme, netloc, parts.path, "***" if parts.query else "", ""))


def _port(parts: SplitResult) -> int | None:
    """The URL's port; registration refuses a URL whose port is not a number in range."""
    try:
        return parts.port
    except ValueError:
        return None


def _check_url(url: str) -> None:
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 -- parsing it is the check
    except ValueError as err:
        raise ApiError(422, "invalid_body", "`url`: not a valid URL (host or port)") from err
    if not parts.hostname:
        raise ApiError(422, "invalid_body", "`url`: the URL names no host")


async def _check_address(url: str) -> None:
    """Refuse an upstream whose host resolves to a non-public address, unless allowed."""
    if not _public_only():
        return
    parts = urlsplit(url)
    host = parts.hostname or ""
    try:
        found = await resolve(host, _port(parts) or 443)
    except OSError as err:
        raise ApiError(422, "upstream_unresolvable", f"`{host}` does not resolve") from err
    # Stricter than connecting, which keeps the public addresses: one private address
    # is enough to refuse the registration.
    if not all(is_public(address) for _, address in found):
        message = f"`{host}` resolves to a non-public address; {PRIVATE_NETWORKS_HINT}"
        raise ApiError(422, "upstream_address_refused", message)


def pooled_client(gw: Gateway, upstream_id: str) -> UpstreamClient | None:
    """The pooled client for an upstream, if it was built under the request's address rule.

    A client built under another rule is retired, so a reload that stops allowing private
    networks also ends the pooled connections to them, which no resolver would see again.
    """
    client: UpstreamClient | None = gw.upstreams.get(upstream_id)
    if client is not None and client.public_only != _public_only():
        del gw.upstreams[upstream_id]
        # Without a goodbye: the upstream may be one the policy no longer lets us reach.
        in_background(gw, client.close(end_session=False))
        return None
    return client


def upstream_client(gw: Gateway, row: Upstream) -> UpstreamClient:
    """The pooled client for `row`, built from its sealed credentials when there is none."""
    client = pooled_client(gw, row.id)
    if client is None:
        secret = json.loads(gw.sealer.open(row.credentials) or "{}")
        headers = dict(secret.get("headers", {}))
        if secret.get("bearer_token"):
            headers["Authorization"] = f"Bearer {secret['bearer_token']}"
        # Rows stored before URLs were sealed hold theirs in the clear.
        client = UpstreamClient(secret.get("url") or row.url, headers, public_only=_public_only())
        gw.upstreams[row.id] = client
    return client


def _public_only() -> bool:
    """Whether the request's policy keeps upstream connections to public addresses."""
    return not g.snapshot.network.upstream_private_ok


async def _forget_client(gw: Gateway, upstream_id: str) -> None:
    client = gw.upstreams.pop(upstream_id, None)
    if client is not None:
        await client.close()


class _Pipeline:
    """The content checks, as discovery takes them (`engine.federation.sync.Checker`)."""

    def text(self, context: str, text: str, field: str) -> str:
        return check_text(context, text, field=field)

    def json(self, context: str, value: Any, field: str) -> Any:
        return check_json(context, value, field=field)


async def discover(row: Upstream, *, new: bool = False) -> SyncReport:
    """Sync `row` with what its upstream offers now, and tell MCP clients the lists changed.

    A `new` row is stored by the sync; when that fails, its pooled client goes too.
    """

    gw = gateway()
    try:
        report = await sync_upstream(row, upstream_client(gw, row), _Pipeline(), new=new)
    except BaseException:
        if new and (client := gw.upstreams.pop(row.id, None)) is not None:
            in_background(gw, client.close(end_session=False))
        raise
    notify_lists(gw, (scope_of(row),))
    return report


@blueprint.get("/gateways")
async def list_gateways() -> Response:
    """Upstream MCP servers the caller may see (never their credentials)."""
    rows = await visible(Upstream).order_by("name")
    return jsonify({"items": [_json(r) for r in rows]})


@blueprint.post("/gateways")
async def register_gateway() -> Response:
    """Register an upstream MCP server and discover its tools, resources and prompts."""
    user = caller()
    body = await read_body(_CREATE)
    check_team(user, body)
    _check_url(body["url"])
    await _check_address(body["url"])
    if await Upstream.filter(name=body["name"]).exists():
        raise ApiError(409, "name_taken", f"a gateway named `{body['name']}` exists")
    credentials = body.pop("credentials", None)
    parts = urlsplit(body["url"])
    if parts.username is not None or parts.password is not None or parts.query:
        # User info and query may hold secrets: the URL as given is sealed with the other
        # credentials, and the row keeps only what may be shown.
        credentials = {**(credentials or {}), "url": body["url"]}
        body["url"] = _shown_url(body["url"])
    body.setdefault("prefix", f"{body['name']}__")
    sealed = gateway().sealer.seal(json.dumps(credentials)) if credentials else ""
    # Stored by the sync, with its items; one registered meanwhile under the same name
    # makes the store refuse it (409), with nothing written.
    row = Upstream(id=uuid.uuid4().hex, owner=user.email, credentials=sealed, **body)
    report = await discover(row, new=True)
    return created(_json(row, report))


async def _find(upstream_id: str) -> Upstream:
    row: Upstream | None = await visible(Upstream).filter(id=upstream_id).first()
    if row is None:
        raise ApiError(404, "not_found", f"no gateway `{upstream_id}`")
    return row


async def _owned(upstream_id: str) -> Upstream:
    row = await _find(upstream_id)
    user = caller()
    if row.owner != user.email and not admin_power(user, "admin.system_config"):
        raise ApiError(403, "not_owner", "only the owner or a platform admin may change this gateway")
    return row


@blueprint.get("/gateways/<upstream_id>")
async def read_gateway(upstream_id: str) -> Response:
    """One upstream MCP server."""
    return jsonify(_json(await _find(upstream_id)))


@blueprint.post("/gateways/<upstream_id>/refresh")
async def refresh_gateway(upstream_id: str) -> Response:
    """Discover again; changed tools are flagged against their pinned hash."""
    row = await _owned(upstream_id)
    await _check_address(row.url)
    await _forget_client(gateway(), row.id)
    return jsonify(_json(row, await discover(row)))


@blueprint.delete("/gateways/<upstream_id>")
async def remove_gateway(upstream_id: str) -> Response:
    """Remove an upstream and everything discovered from it."""
    row = await _owned(upstream_id)
    async with in_transaction():
        for model in (Tool, Resource, Prompt):
            await model.filter(upstream_id=row.id).delete()
        await row.delete()
    await _forget_client(gateway(), upstream_id)
    notify_lists(gateway(), (scope_of(row),))
    return Response("", status=204)
