"""Routes, route classes and permission sets: who may reach which path, and with what.

Built from the `Routes`, `PermissionSets` and `Features` documents. Route matching must
cost well under a microsecond on the request path, so routes are bucketed by their first
path segment at build time and each bucket keeps the documents' order: the first route
whose path and method match decides. No I/O in this module.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType
from typing import TYPE_CHECKING, Final

from engine.decide.model import RuleRef
from engine.errors import Location, PolicyError

if TYPE_CHECKING:
    from engine.policy.load import Document

__all__ = ["AccessTable", "Route", "RouteClass", "ServerScope", "build_access_table", "match_route"]

_PARAM: Final = re.compile(r"^\{([A-Za-z_][A-Za-z0-9_]*)\}$")


class ServerScope(StrEnum):
    """How far a token scoped to one server (`scopes.server_id`) may reach on a route."""

    EXEMPT = "exempt"
    OWN_SERVER = "own_server"
    DENY = "deny"


@dataclass(frozen=True, slots=True)
class RouteClass:
    name: str
    authenticate: bool
    server_scope: ServerScope
    server_param: str
    basic_auth: str | None
    require_admin: bool
    proxy_auth: bool


@dataclass(frozen=True, slots=True)
class Route:
    ref: RuleRef
    route_class: RouteClass
    pattern: re.Pattern[str]
    methods: frozenset[str] | None
    feature: str | None
    permission: str | None


@dataclass(frozen=True, slots=True)
class McpMethod:
    ref: RuleRef
    permission: str | None


@dataclass(frozen=True, slots=True)
class AccessTable:
    """Everything needed to place a request on a route and check its permission."""

    exact: Mapping[tuple[str, str], Route]
    by_segment: Mapping[str, tuple[Route, ...]]
    other: tuple[Route, ...]
    roles: Mapping[str, frozenset[str]]
    admin_role: str | None
    default_roles: frozenset[str]
    anonymous_role: str | None
    permissions: frozenset[str]
    mcp_methods: Mapping[str, McpMethod]
    mcp_unknown: RuleRef
    features: Mapping[str, bool]
    feature_refs: Mapping[str, RuleRef]
    default: RuleRef


_NO_PARAMS: Mapping[str, str] = MappingProxyType({})


def match_route(table: AccessTable, method: str, path: str) -> tuple[Route, Mapping[str, str]] | None:
    """Find the first route that serves `method path`, with its path parameters."""
    if len(path) > 1 and path.endswith("/"):
        path = path.rstrip("/") or "/"
    exact = table.exact.get((method, path))
    if exact is not None:
        return exact, _NO_PARAMS
    end = path.find("/", 1)
    first = path[1:] if end < 0 else path[1:end]
    for route in table.by_segment.get(first, table.other):
        found = route.pattern.fullmatch(path)
        if found is not None and (route.methods is None or method in route.methods):
            return route, found.groupdict()
    return None


def role_permissions(table: AccessTable, roles: frozenset[str]) -> frozenset[str]:
    """Union the permissions of `roles`; unknown role names grant nothing."""
    if len(roles) == 1:
        (role,) = roles
        return table.roles.get(role, frozenset())
    granted: frozenset[str] = frozenset()
    for role in roles:
        granted = granted | table.roles.get(role, frozenset())
    return granted


def build_access_table(
    routes: Document, permission_sets: Document, features: Document
) -> tuple[AccessTable | None, list[PolicyError]]:
    """Compile the three documents, reporting every dangling reference at its place."""
    errors: list[PolicyError] = []
    known = frozenset(permission_sets.spec["permissions"])
    roles = _build_roles(permission_sets, known, errors)
    feature_flags = {name: bool(on) for name, on in features.spec.items()}
    feature_refs = {name: RuleRef(f"features/{name}", features.locate([name])) for name in feature_flags}
    classes = _build_classes(routes, errors)
    ordered: list[Route] = []
    seen: dict[str, Location] = {}
    for i, raw in enumerate(routes.spec["routes"]):
        where = routes.locate(["routes", i, "id"])
        rid = raw["id"]
        if rid in seen:
            errors.append(PolicyError(where, "ref.duplicate_id", f"route id `{rid}` is already used at {seen[rid]}"))
            continue
        seen[rid] = where
        route = _build_route(routes, i, raw, classes, known, feature_flags, errors)
        if route is not None:
            ordered.append(route)
    mcp = {}
    for i, raw in enumerate(routes.spec.get("mcpMethods", [])):
        permission = raw.get("permission")
        if permission is not None and permission not in known:
            errors.append(
                _unknown_permission(routes.locate(["mcpMethods", i, "permission"]), permission, permission_sets)
            )
        mcp[raw["method"]] = McpMethod(
            RuleRef(f"routes/mcp-method/{raw['method']}", routes.locate(["mcpMethods", i, "method"])),
            permission,
        )
    role_names = {"adminRole", "defaultRole", "anonymousRole"}
    for key in sorted(role_names):
        role = permission_sets.spec.get(key)
        if role is not None and role not in roles:
            errors.append(
                PolicyError(
                    permission_sets.locate([key]),
                    "ref.unknown_role",
                    f"`{key}` names unknown role `{role}`",
                )
            )
    if errors:
        return None, errors
    default_role = permission_sets.spec.get("defaultRole")
    table = AccessTable(
        exact=_exact(ordered),
        by_segment=_bucket(ordered),
        other=tuple(r for r in ordered if _first_segment(r) is None),
        roles=MappingProxyType(roles),
        admin_role=permission_sets.spec.get("adminRole"),
        default_roles=frozenset([default_role] if default_role else ()),
        anonymous_role=permission_sets.spec.get("anonymousRole"),
        permissions=known,
        mcp_methods=MappingProxyType(mcp),
        mcp_unknown=RuleRef("routes/mcp-methods", routes.locate(["mcpMethods"], key=True)),
        features=MappingProxyType(feature_flags),
        feature_refs=MappingProxyType(feature_refs),
        default=RuleRef("routes/default-deny", routes.locate(["routes"], key=True)),
    )
    return table, []


def _build_roles(doc: Document, known: frozenset[str], errors: list[PolicyError]) -> dict[str, frozenset[str]]:
    roles: dict[str, frozenset[str]] = {}
    for i, raw in enumerate(doc.spec["roles"]):
        if raw["id"] in roles:
            errors.append(
                PolicyError(
                    doc.locate(["roles", i, "id"]),
                    "ref.duplicate_id",
                    f"role id `{raw['id']}` is defined twice",
                )
            )
        granted: set[str] = set()
        for j, entry in enumerate(raw["permissions"]):
            matched = {p for p in known if fnmatch.fnmatchcase(p, entry)}
            if not matched:
                errors.append(_unknown_permission(doc.locate(["roles", i, "permissions", j]), entry, doc))
            granted |= matched
        roles[raw["id"]] = frozenset(granted)
    return roles


def _build_classes(doc: Document, errors: list[PolicyError]) -> dict[str, RouteClass]:
    classes: dict[str, RouteClass] = {}
    for i, raw in enumerate(doc.spec["classes"]):
        if raw["name"] in classes:
            errors.append(
                PolicyError(
                    doc.locate(["classes", i, "name"]),
                    "ref.duplicate_id",
                    f"route class `{raw['name']}` is defined twice",
                )
            )
        classes[raw["name"]] = RouteClass(
            name=raw["name"],
            authenticate=raw["authentication"] == "required",
            server_scope=ServerScope(raw["serverScope"]),
            server_param=raw.get("serverParam", "server_id"),
            basic_auth=raw.get("basicAuth"),
            require_admin=bool(raw.get("requireAdmin", False)),
            proxy_auth=bool(raw.get("proxyAuth", False)),
        )
    return classes


def _build_route(
    doc: Document,
    i: int,
    raw: Mapping[str, object],
    classes: Mapping[str, RouteClass],
    known: frozenset[str],
    features: Mapping[str, bool],
    errors: list[PolicyError],
) -> Route | None:
    before = len(errors)
    route_class = classes.get(str(raw["class"]))
    if route_class is None:
        errors.append(
            PolicyError(
                doc.locate(["routes", i, "class"]),
                "ref.unknown_route_class",
                f"unknown route class `{raw['class']}`: expected one of {', '.join(sorted(classes))}",
            )
        )
    permission = raw.get("permission")
    if permission is not None and permission not in known:
        errors.append(_unknown_permission(doc.locate(["routes", i, "permission"]), str(permission), doc))
    feature = raw.get("feature")
    if feature is not None and feature not in features:
        errors.append(
            PolicyError(
                doc.locate(["routes", i, "feature"]),
                "ref.unknown_feature",
                f"unknown feature `{feature}`: expected one of {', '.join(sorted(features))}",
            )
        )
    pattern = _compile_path(str(raw["path"]), doc.locate(["routes", i, "path"]), errors)
    if pattern is None or route_class is None or len(errors) > before:
        return None
    if route_class.server_scope is ServerScope.OWN_SERVER and route_class.server_param not in pattern.groupindex:
        errors.append(
            PolicyError(
                doc.locate(["routes", i, "path"]),
                "ref.missing_server_param",
                f"route class `{route_class.name}` scopes by server, but path `{raw['path']}` "
                f"has no `{{{route_class.server_param}}}` segment",
            )
        )
        return None
    methods = raw.get("methods")
    return Route(
        ref=RuleRef(f"routes/{raw['id']}", doc.locate(["routes", i, "id"])),
        route_class=route_class,
        pattern=pattern,
        methods=frozenset(methods) if isinstance(methods, list) else None,
        feature=str(feature) if feature is not None else None,
        permission=str(permission) if permission is not None else None,
    )


def _compile_path(path: str, where: Location, errors: list[PolicyError]) -> re.Pattern[str] | None:
    segments = path.strip("/").split("/") if path != "/" else []
    parts: list[str] = []
    for n, segment in enumerate(segments):
        param = _PARAM.match(segment)
        if segment == "**" and n == len(segments) - 1:
            parts.append("(?:/.*)?")
        elif param is not None:
            parts.append(f"/(?P<{param.group(1)}>[^/]+)")
        elif "{" in segment or "}" in segment or "*" in segment or not segment:
            errors.append(
                PolicyError(
                    where,
                    "route.invalid_path",
                    f"path `{path}` has an invalid segment `{segment}`: use literal text, `{{name}}`, or a final `**`",
                )
            )
            return None
        else:
            parts.append("/" + re.escape(segment))
    try:
        return re.compile("".join(parts) or "/")
    except re.error as err:
        errors.append(PolicyError(where, "route.invalid_path", f"path `{path}` does not compile: {err}"))
        return None


def _first_segment(route: Route) -> str | None:
    """The literal first segment a route needs, or None when it can start with anything."""
    source = route.pattern.pattern
    found = re.match(r"^/((?:[^/\\(]|\\.)+)", source)
    if found is None:
        return None
    segment = re.sub(r"\\(.)", r"\1", found.group(1))
    return segment


def _bucket(routes: list[Route]) -> Mapping[str, tuple[Route, ...]]:
    # INVARIANT: every bucket keeps document order and also holds the routes that can
    # start with any segment, so bucketing never changes which route matches first.
    firsts = {s for s in map(_first_segment, routes) if s is not None}
    buckets = {segment: tuple(r for r in routes if _first_segment(r) in (segment, None)) for segment in firsts}
    return MappingProxyType(buckets)


def _exact(routes: list[Route]) -> Mapping[tuple[str, str], Route]:
    """A direct lookup for literal paths, used only where it picks what the scan would."""
    table: dict[tuple[str, str], Route] = {}
    for route in routes:
        literal = route.pattern.pattern
        if route.methods is None or route.pattern.groups or re.escape(re.sub(r"\\(.)", r"\1", literal)) != literal:
            continue
        path = re.sub(r"\\(.)", r"\1", literal)
        for method in route.methods:
            first = next(r for r in routes if r.pattern.fullmatch(path) and (r.methods is None or method in r.methods))
            if first is route:
                table.setdefault((method, path), route)
    return MappingProxyType(table)


def _unknown_permission(where: Location, permission: str, doc: Document) -> PolicyError:
    return PolicyError(where, "ref.unknown_permission", f"unknown permission `{permission}`: not in PermissionSets")
