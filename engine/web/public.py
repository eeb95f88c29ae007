"""Routes any client may call: liveness, readiness, well-known files, API documentation.

`/docs` and `/openapi.json` sit in the `docs` route class: authenticated, but exempt from
server scoping, so a server-scoped token can still read how to use its server.
"""

from __future__ import annotations

import html
from typing import Any

from quart import Blueprint, Response, current_app, g, jsonify

from engine import __version__
from engine.web.responses import error_response
from engine.web.state import gateway

__all__ = ["blueprint"]

blueprint = Blueprint("public", __name__)


@blueprint.get("/health")
async def health() -> Response:
    """Liveness: the process answers."""
    return jsonify({"status": "healthy"})


@blueprint.get("/ready")
async def ready() -> Response:
    """Readiness: the store and, when configured, Redis answer; the policy version in force."""
    from engine.store.queries import ping_store

    gw = gateway()
    checks = {"store": await ping_store()}
    if gw.cache is not None and gw.settings.redis_url:
        checks["redis"] = await gw.cache.ping()
    body: dict[str, Any] = {
        "status": "ready" if all(checks.values()) else "not_ready",
        "checks": checks,
        "policy_version": gw.engine.current.version,
    }
    if not all(checks.values()):
        failing = ", ".join(name for name, ok in checks.items() if not ok)
        return error_response(503, "not_ready", f"not ready: {failing} unavailable", details=body)
    return jsonify(body)


@blueprint.get("/robots.txt")
async def robots() -> Response:
    """robots.txt from the WellKnown policy."""
    return _well_known("robots.txt")


@blueprint.get("/.well-known/<path:name>")
async def well_known(name: str) -> Response:
    """Files under /.well-known from the WellKnown policy (security.txt, ...)."""
    return _well_known(f".well-known/{name}")


def _well_known(name: str) -> Response:
    table = g.snapshot.well_known
    entry = table.files.get(name) if table.enabled else None
    if entry is None:
        return error_response(404, "not_found", f"no such file: `/{name}`")
    content_type, body = entry
    return Response(body, content_type=content_type)


@blueprint.get("/openapi.json")
async def openapi() -> Response:
    """This API, described as OpenAPI 3.1."""
    return jsonify(describe_api())


@blueprint.get("/docs")
async def docs() -> Response:
    """A plain HTML index of the API; no script, so the strict CSP holds."""
    rows = []
    for path, operations in describe_api()["paths"].items():
        for method, operation in operations.items():
            rows.append(
                f"<tr><td><code>{method.upper()}</code></td><td><code>{html.escape(path)}</code></td>"
                f"<td>{html.escape(operation['summary'])}</td></tr>"
            )
    page = (
        "<!doctype html><html lang=en><head><meta charset=utf-8><title>PolicyGate API</title></head>"
        f"<body><h1>PolicyGate API {__version__}</h1><p><a href=/openapi.json>openapi.json</a></p>"
        f"<table>{''.join(rows)}</table></body></html>"
    )
    return Response(page, content_type="text/html; charset=utf-8")


def describe_api() -> dict[str, Any]:
    """Derive the description from the routes actually registered, so it cannot drift."""
    paths: dict[str, dict[str, Any]] = {}
    for rule in current_app.url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        view = current_app.view_functions[rule.endpoint]
        summary = (view.__doc__ or "").strip().splitlines()[0] if view.__doc__ else rule.endpoint
        path = rule.rule.replace("<path:", "{").replace("<", "{").replace(">", "}")
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            paths.setdefault(path, {})[method.lower()] = {
                "summary": summary,
                "operationId": f"{rule.endpoint}.{method.lower()}",
                "responses": {"default": {"description": "JSON; errors are {error: {code, message, request_id}}"}},
            }
    return {
        "openapi": "3.1.0",
        "info": {"title": "PolicyGate", "version": __version__},
        "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}}},
        "security": [{"bearer": []}],
        "paths": dict(sorted(paths.items())),
    }
