"""Routes, route classes and permission sets: who may reach which path, and with what.

Built from the `Routes`, `PermissionSets` and `Features` documents. The first route in
document order whose path and method match decides. Matching must cost well under a
microsecond, so the build turns the routes into one router per HTTP method: literal paths
in a dict, and per first path segment one regex that joins the candidate routes as
alternatives in document order. One `fullmatch` then finds the first matching route, and
the number of the group that matched says which. No I/O in this module.
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

__all__ = [
    "AccessTable",
    "Route",
    "RouteClass",
    "Router",
    "ServerScope",
    "build_access_table",
    "match_route",
    "role_grant",
]

_PARAM: Final = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


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
class Branches:
    """Routes tried in document order as the alternatives of one regex.

    Alternative k is wrapped in capturing group `starts[k]`, the only group still open
    when its match ends, so `Match.lastindex` names the route that matched.
    """

    pattern: re.Pattern[str]
    routes: Mapping[int, Route]
    server_groups: Mapping[int, int]
    """Per starting group, the group holding the route's server parameter, if it has one."""


@dataclass(frozen=True, slots=True)
class Router:
    """Every route one HTTP method can reach, ready for `match_route`."""

    exact: Mapping[str, Route]
    by_segment: Mapping[str, Branches]
    other: Branches | None


@dataclass(frozen=True, slots=True)
class AccessTable:
    """Everything needed to place a request on a route and check its permission."""

    routes: tuple[Route, ...]
    routers: Mapping[str, Router]
    any_method: Router
    """For methods no route names: only routes open to every method."""
    roles: Mapping[str, frozenset[str]]
    grants: Mapping[tuple[frozenset[str], bool], frozenset[str]]
    """What each single role grants, and no role (the default role), by admin flag."""
    admin_role: str | None
    default_roles: frozenset[str]
    anonymous_role: str | None
    permissions: frozenset[str]
    mcp_methods: Mapping[str, McpMethod]
    mcp_unknown: RuleRef
    features: Mapping[str, bool]
    feature_refs: Mapping[str, RuleRef]
    default: RuleRef


def match_route(table: AccessTable, method: str, path: str) -> tuple[Route, str | None] | None:
    """Find the first route that serves `method path`, with its server parameter's value.

    Trailing slashes do not count: `/tools/` is `/tools`. The regexes allow them, so only
    the literal-path dict misses on such a path, and the regex then answers.
    """
    router = table.routers.get(method, table.any_method)
    exact = router.exact.get(path)
    if exact is not None:
        return exact, None
    end = path.find("/", 1)
    branches = router.by_segment.get(path[1:] if end < 0 else path[1:end], router.other)
    if branches is None:
        return None
    found = branches.pattern.fullmatch(path)
    if found is None:
        return None
    start = found.lastindex or 0
    group = branches.server_groups.get(start)
    return branches.routes[start], found.group(group) if group is not None else None


def role_grant(table: AccessTable, roles: frozenset[str], admin: bool) -> frozenset[str]:
    """What a user holding `roles` is granted: most users hit the table built ahead."""
    granted = table.grants.get((roles, admin))
    if granted is None:
        granted = _grant(table.roles, roles or table.default_roles, table.admin_role if admin else None)
    return granted


def _grant(roles: Mapping[str, frozenset[str]], held: frozenset[str], admin_role: str | None) -> frozenset[str]:
    """The one statement of the grant rule: the union of the held roles' permissions,
    and the admin role's for an admin; unknown role names grant nothing."""
    granted = frozenset().union(*(roles.get(role, frozenset()) for role in held))
    return granted | roles[admin_role] if admin_role is not None else granted


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
    mcp: dict[str, McpMethod] = {}
    for i, raw in enumerate(routes.spec.get("mcpMethods", [])):
        if raw["method"] in mcp:
            # The last entry would win unseen, and it may be the one without a permission.
            first = mcp[raw["method"]].ref.where
            message = f"MCP method `{raw['method']}` is already listed at {first}"
            errors.append(PolicyError(routes.locate(["mcpMethods", i, "method"]), "ref.duplicate_id", message))
            continue
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
    admin_role = permission_sets.spec.get("adminRole")
    defaults = frozenset([default_role] if default_role else ())
    # Each single role and no role at all (the default), with and without the admin flag.
    grants = {
        (held, admin): _grant(roles, held or defaults, admin_role if admin else None)
        for held in [*(frozenset([name]) for name in roles), frozenset()]
        for admin in (False, True)
    }
    table = AccessTable(
        routes=tuple(ordered),
        routers=MappingProxyType({m: _router(ordered, m) for m in _methods(ordered)}),
        any_method=_router(ordered, None),
        roles=MappingProxyType(roles),
        grants=MappingProxyType(grants),
        admin_role=admin_role,
        default_roles=defaults,
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
        param = _PARAM.fullmatch(segment)
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


def _methods(routes: list[Route]) -> set[str]:
    return {m for r in routes if r.methods is not None for m in r.methods}


def _router(routes: list[Route], method: str | None) -> Router:
    """The router for `method`; None builds the one for methods no route names."""
    # INVARIANT: candidates keep document order, and every bucket also holds the routes
    # that can start with any segment, so neither the dict nor the buckets change which
    # route matches first.
    candidates = [r for r in routes if r.methods is None or method in r.methods]
    firsts = [(r, _first_segment(r)) for r in candidates]
    by_segment = {
        segment: _branches([r for r, first in firsts if first in (segment, None)])
        for segment in {first for _, first in firsts if first is not None}
    }
    wildcards = [r for r, first in firsts if first is None]
    return Router(
        exact=MappingProxyType(_exact(candidates)),
        by_segment=MappingProxyType(by_segment),
        other=_branches(wildcards) if wildcards else None,
    )


def _branches(routes: list[Route]) -> Branches:
    sources: list[str] = []
    starts: dict[int, Route] = {}
    server_groups: dict[int, int] = {}
    group = 1
    for route in routes:
        starts[group] = route
        index = route.pattern.groupindex.get(route.route_class.server_param)
        if index is not None:
            server_groups[group] = group + index
        # Group names may not repeat across alternatives; positions say the same thing.
        sources.append("(" + _UNNAMED.sub("(", route.pattern.pattern) + ")")
        group += 1 + route.pattern.groups
    # A trailing `/` never changes the route that matches: a route that matches `p/` ends
    # in `**`, so it matches `p` as well, and a match of `p` is a match of `p/`.
    pattern = re.compile("(?:" + "|".join(sources) + ")/*")
    return Branches(pattern, MappingProxyType(starts), MappingProxyType(server_groups))


_UNNAMED: Final = re.compile(r"(?<!\\)\(\?P<[A-Za-z_][A-Za-z0-9_]*>")


def _exact(candidates: list[Route]) -> dict[str, Route]:
    """Literal paths, where the route they name is the one the regex would pick."""
    table: dict[str, Route] = {}
    for route in candidates:
        literal = route.pattern.pattern
        path = re.sub(r"\\(.)", r"\1", literal)
        if route.pattern.groups or re.escape(path) != literal:
            continue
        first = next(r for r in candidates if r.pattern.fullmatch(path))
        if first is route:
            table.setdefault(path, route)
    return table


def _unknown_permission(where: Location, permission: str, doc: Document) -> PolicyError:
    return PolicyError(where, "ref.unknown_permission", f"unknown permission `{permission}`: not in PermissionSets")
