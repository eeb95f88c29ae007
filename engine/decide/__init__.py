"""Decide one request: `decide(snapshot, ctx) -> Decision`.

The checks run in a fixed order, and the first one that fails decides: route, feature
switch, credentials, token rules, store facts (revocation, user), token scopes, admin
requirement, permission, rate limit, content. A request that no route serves is refused
(default deny). Every decision names the rule that made it. Pure: no I/O, no clock, no
globals; the context carries every fact.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from engine.decide.access import AccessTable, Route, ServerScope, match_route, role_permissions
from engine.decide.content import inspect_content
from engine.decide.limits import check_rate
from engine.decide.model import (
    STATUS,
    Access,
    Action,
    AuthMethod,
    Content,
    Decision,
    Denial,
    Finding,
    Reason,
    RequestContext,
    RuleRef,
    Token,
    User,
    Visibility,
)
from engine.decide.tokens import check_scope_limits, check_token
from engine.decide.visibility import TeamsClaim, resolve_visibility, teams_claim_shape
from engine.policy.snapshot import Snapshot

__all__ = [
    "Access",
    "Action",
    "AuthMethod",
    "Content",
    "Decision",
    "Finding",
    "Reason",
    "RequestContext",
    "RuleRef",
    "TeamsClaim",
    "Token",
    "User",
    "Visibility",
    "decide",
]

_NO_CLAIMS: Mapping[str, Any] = {}
_PUBLIC = Visibility(Access.PUBLIC_ONLY)


def decide(snapshot: Snapshot, ctx: RequestContext) -> Decision:
    """Judge `ctx` against `snapshot`."""
    access = snapshot.access
    found = match_route(access, ctx.method, ctx.path)
    if found is None:
        return _deny((Reason.DEFAULT_DENY, access.default, f"no route serves `{ctx.method} {ctx.path}`"))
    route, params = found
    route_id = route.ref.id
    if route.feature is not None and not access.features[route.feature]:
        ref = access.feature_refs[route.feature]
        return _deny((Reason.FEATURE_DISABLED, ref, f"feature `{route.feature}` is switched off"), route_id)
    if not route.route_class.authenticate:
        return _finish(snapshot, ctx, route, None, None, frozenset(), Reason.PUBLIC_ROUTE)

    tokens = snapshot.tokens
    claims = _NO_CLAIMS
    session = True
    if ctx.auth is AuthMethod.NONE or (ctx.auth is AuthMethod.BEARER and ctx.token is None):
        if tokens.auth_required:
            return _deny(
                (Reason.AUTH_REQUIRED, tokens.refs["authRequired"], "authentication is required"),
                route_id,
            )
        return _anonymous(snapshot, ctx, route)
    if ctx.auth is AuthMethod.BEARER and ctx.token is not None:
        denial = check_token(tokens, ctx.token, ctx.now)
        if denial is not None:
            return _deny(denial, route_id)
        claims = ctx.token.claims
        session = claims.get("token_use") == "session"
    elif ctx.auth is AuthMethod.BASIC:
        kind = route.route_class.basic_auth
        if kind is None or not tokens.basic_auth[kind]:
            return _deny(
                (
                    Reason.BASIC_AUTH_DISABLED,
                    tokens.refs["basicAuth"],
                    "basic authentication is not accepted here",
                ),
                route_id,
            )
    elif ctx.auth is AuthMethod.PROXY and not (route.route_class.proxy_auth and tokens.proxy_trusted):
        return _deny(
            (
                Reason.PROXY_AUTH_UNTRUSTED,
                tokens.refs["proxyAuth"],
                "proxy authentication is not trusted here",
            ),
            route_id,
        )

    if ctx.revoked is None:
        if tokens.fail_closed:
            ref = tokens.refs["revocation"]
            return _deny(
                (Reason.REVOCATION_UNAVAILABLE, ref, "token status cannot be checked right now"),
                route_id,
            )
    elif ctx.revoked:
        return _deny((Reason.TOKEN_REVOKED, tokens.refs["requireJti"], "token has been revoked"), route_id)
    user = ctx.user
    if user is None:
        return _deny((Reason.USER_UNKNOWN, tokens.refs["claims"], "the token's user is not known"), route_id)
    if not user.active:
        return _deny((Reason.ACCOUNT_DISABLED, route.ref, "the account is disabled"), route_id, user.email)

    scopes = claims.get("scopes") or _NO_CLAIMS
    malformed = _malformed_scopes(scopes)
    if malformed is not None:
        return _deny((Reason.TOKEN_CLAIM_INVALID, tokens.refs["claims"], malformed), route_id)
    denial = _server_scope(route, params, scopes, tokens.refs["claims"]) or check_scope_limits(
        tokens, scopes, ctx.client_ip, ctx.now
    )
    if denial is not None:
        return _deny(denial, route_id, user.email)
    shape = teams_claim_shape(claims)
    if shape is None:
        ref = tokens.refs["claims"]
        return _deny(
            (Reason.TOKEN_CLAIM_INVALID, ref, "claim `teams` must be null or a list of strings"),
            route_id,
        )
    if route.route_class.require_admin and not user.admin:
        return _deny(
            (Reason.ADMIN_REQUIRED, route.ref, "this route is for platform admins"),
            route_id,
            user.email,
        )

    permissions = _permissions(access, user, scopes)
    visibility, cell = resolve_visibility(snapshot.visibility, claims, shape, user, session=session)
    return _finish(snapshot, ctx, route, user.email, (visibility, cell), permissions, Reason.ALLOWED)


def _anonymous(snapshot: Snapshot, ctx: RequestContext, route: Route) -> Decision:
    """A caller without credentials where the policy lets them in: public items only."""
    access = snapshot.access
    if route.route_class.require_admin:
        return _deny((Reason.ADMIN_REQUIRED, route.ref, "this route is for platform admins"), route.ref.id)
    granted = access.roles.get(access.anonymous_role or "", frozenset())
    return _finish(
        snapshot,
        ctx,
        route,
        None,
        (_PUBLIC, snapshot.visibility.anonymous),
        granted,
        Reason.ALLOWED,
    )


def _finish(
    snapshot: Snapshot,
    ctx: RequestContext,
    route: Route,
    principal: str | None,
    visibility: tuple[Visibility, RuleRef] | None,
    permissions: frozenset[str],
    reason: Reason,
) -> Decision:
    """The checks every admitted caller goes through: permission, rate, content."""
    route_id = route.ref.id
    if route.route_class.authenticate:
        needed = route.permission
        needed_ref = route.ref
        if ctx.mcp_method is not None:
            method = snapshot.access.mcp_methods.get(ctx.mcp_method)
            if method is None:
                ref = snapshot.access.mcp_unknown
                return _deny(
                    (
                        Reason.MCP_METHOD_UNKNOWN,
                        ref,
                        f"MCP method `{ctx.mcp_method}` is not allowed",
                    ),
                    route_id,
                    principal,
                )
            if needed is None or needed in permissions:
                needed, needed_ref = method.permission, method.ref
        if needed is not None and needed not in permissions:
            return _deny(
                (Reason.PERMISSION_MISSING, needed_ref, f"permission `{needed}` is required"),
                route_id,
                principal,
            )
    limited = check_rate(snapshot.limits, ctx.rate, ctx.now)
    if limited is not None:
        denial, retry_after = limited
        return _deny(denial, route_id, principal, retry_after=retry_after)
    findings: tuple[Finding, ...] = ()
    if ctx.content is not None:
        inspection = inspect_content(snapshot.content, ctx.content)
        if inspection.denial is not None:
            return _deny(inspection.denial, route_id, principal, findings=inspection.findings)
        findings = inspection.findings
    return Decision(
        allow=True,
        status=200,
        reason=reason,
        rule=route.ref,
        route=route_id,
        principal=principal,
        visibility=visibility[0] if visibility else None,
        visibility_rule=visibility[1] if visibility else None,
        permissions=permissions,
        findings=findings,
    )


def _malformed_scopes(scopes: Any) -> str | None:
    """Why a `scopes` claim cannot be honoured; a scope that cannot be read refuses the token."""
    if not isinstance(scopes, Mapping):
        return "claim `scopes` is not an object"
    server_id = scopes.get("server_id")
    if server_id is not None and not isinstance(server_id, str):
        return "scope `server_id` is not a string"
    listed = scopes.get("permissions")
    if listed is not None and not (isinstance(listed, list) and all(isinstance(p, str) for p in listed)):
        return "scope `permissions` is not a list of strings"
    return None


def _server_scope(route: Route, params: Mapping[str, str], scopes: Mapping[str, Any], ref: RuleRef) -> Denial | None:
    server_id = scopes.get("server_id")
    if server_id is None:
        return None
    scope = route.route_class.server_scope
    if scope is ServerScope.DENY:
        return (
            Reason.SERVER_SCOPE_DENIED,
            route.ref,
            f"a token scoped to server `{server_id}` cannot use this route",
        )
    if scope is ServerScope.OWN_SERVER and params.get(route.route_class.server_param) != server_id:
        return (
            Reason.SERVER_SCOPE_MISMATCH,
            route.ref,
            f"this token is scoped to server `{server_id}`",
        )
    return None


def _permissions(access: AccessTable, user: User, scopes: Mapping[str, Any]) -> frozenset[str]:
    """Role grants, narrowed by the token's own `permissions` scope when it has one."""
    roles = user.roles or frozenset([access.default_role] if access.default_role else ())
    granted = role_permissions(access, roles)
    if user.admin and access.admin_role is not None:
        granted = granted | access.roles[access.admin_role]
    narrowed = scopes.get("permissions")
    if narrowed is not None and narrowed != ["*"]:
        # SECURITY: a scope narrows what the roles grant; it never adds to it.
        granted = granted & frozenset(narrowed)
    return granted


def _deny(
    denial: Denial,
    route: str | None = None,
    principal: str | None = None,
    *,
    findings: tuple[Finding, ...] = (),
    retry_after: int | None = None,
) -> Decision:
    reason, ref, message = denial
    return Decision(
        allow=False,
        status=STATUS[reason],
        reason=reason,
        rule=ref,
        message=message,
        route=route,
        principal=principal,
        findings=findings,
        retry_after=retry_after,
    )
