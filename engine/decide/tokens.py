"""Token rules: what a verified bearer token's header, claims and scopes must satisfy.

The shell verifies signatures with keys it holds; this module judges everything else
against `ctx.now`, so an expired token is expired at the time the context says, not at
whatever time the machine thinks it is. No I/O in this module.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from math import inf
from types import MappingProxyType
from typing import TYPE_CHECKING

from engine.decide.model import Denial, Reason, RuleRef, TimeWindow, Token
from engine.errors import PolicyError

if TYPE_CHECKING:
    from engine.policy.load import Document

__all__ = ["TokenTable", "admitted_between", "build_token_table", "check_scope_limits", "check_token"]


@dataclass(frozen=True, slots=True)
class TokenTable:
    """Compiled `TokenRules`: each setting with the rule reference a denial will cite."""

    auth_required: bool
    algorithms: frozenset[str]
    forbidden_headers: frozenset[str]
    require_exp: bool
    require_jti: bool
    max_lifetime_s: int
    skew_s: int
    audience: frozenset[str] | None
    issuer: frozenset[str] | None
    environment: str
    embed_environment: bool
    validate_environment: bool
    fail_closed: bool
    basic_auth: Mapping[str, bool]
    proxy_trusted: bool
    proxy_header: str
    refs: Mapping[str, RuleRef]
    issue_audience: str
    issue_issuer: str


def build_token_table(doc: Document) -> tuple[TokenTable, list[PolicyError]]:
    """Compile `TokenRules`; the schema has already ruled out every malformed value."""
    spec = doc.spec

    def ref(*path: str) -> RuleRef:
        return RuleRef("tokens/" + ".".join(path), doc.locate(list(path)))

    audience = spec.get("audience", {})
    issuer = spec.get("issuer", {})
    environment = spec.get("environment", {})
    basic = spec.get("basicAuth", {})
    proxy = spec.get("proxyAuth", {})
    refs = {
        name: ref(*path)
        for name, path in {
            "authRequired": ("authRequired",),
            "algorithms": ("algorithms",),
            "forbiddenHeaders": ("forbiddenHeaders",),
            "requireExpiration": ("requireExpiration",),
            "requireJti": ("requireJti",),
            "maxLifetimeMinutes": ("maxLifetimeMinutes",),
            "clockSkewSeconds": ("clockSkewSeconds",),
            "audience": ("audience", "accepted"),
            "issuer": ("issuer", "accepted"),
            "environment": ("environment", "validate"),
            "revocation": ("revocation", "onLookupFailure"),
            "basicAuth": ("basicAuth",),
            "proxyAuth": ("proxyAuth", "trusted"),
            "claims": (),
        }.items()
    }
    table = TokenTable(
        auth_required=bool(spec.get("authRequired", True)),
        algorithms=frozenset(spec["algorithms"]),
        forbidden_headers=frozenset(spec.get("forbiddenHeaders", ["jku", "x5u", "jwk", "x5c"])),
        require_exp=bool(spec.get("requireExpiration", True)),
        require_jti=bool(spec.get("requireJti", True)),
        max_lifetime_s=int(spec.get("maxLifetimeMinutes", 525600)) * 60,
        skew_s=int(spec.get("clockSkewSeconds", 0)),
        audience=frozenset(audience.get("accepted", [])) if audience.get("verify", True) else None,
        issuer=frozenset(issuer.get("accepted", [])) if issuer.get("verify", True) else None,
        environment=str(environment.get("name", "development")),
        embed_environment=bool(environment.get("embed", False)),
        validate_environment=bool(environment.get("validate", False)),
        # SECURITY: a missing setting fails closed.
        fail_closed=spec.get("revocation", {}).get("onLookupFailure", "deny") == "deny",
        basic_auth=MappingProxyType({"api": bool(basic.get("api", False)), "docs": bool(basic.get("docs", False))}),
        proxy_trusted=bool(proxy.get("trusted", False)),
        proxy_header=str(proxy.get("userHeader", "X-Forwarded-User")),
        refs=MappingProxyType(refs),
        # Tokens the gateway issues name the first accepted audience and issuer.
        issue_audience=str((audience.get("accepted") or ["mcpgateway-api"])[0]),
        issue_issuer=str((issuer.get("accepted") or ["mcpgateway"])[0]),
    )
    return table, []


def check_token(table: TokenTable, token: Token, now: float) -> Denial | None:
    """Return why `token` must be refused at time `now`, or None when it passes."""
    refs = table.refs
    if token.alg not in table.algorithms:
        return Reason.TOKEN_ALGORITHM_FORBIDDEN, refs["algorithms"], f"algorithm `{token.alg}` is not accepted"
    if not table.forbidden_headers.isdisjoint(token.header):
        names = ", ".join(f"`{n}`" for n in sorted(table.forbidden_headers.intersection(token.header)))
        return Reason.TOKEN_HEADER_FORBIDDEN, refs["forbiddenHeaders"], f"header parameter {names} is not accepted"
    if token.problem is not None:
        return Reason.TOKEN_CLAIM_INVALID, refs["claims"], token.problem
    exp = token.exp
    if exp is None and table.require_exp:
        return Reason.TOKEN_MISSING_EXP, refs["requireExpiration"], "token has no `exp` claim"
    earliest, latest, too_early = _time_bounds(table, token)
    if now > latest:
        return Reason.TOKEN_EXPIRED, refs["clockSkewSeconds"], "token has expired"
    if now < earliest:
        return too_early
    if token.jti is None and table.require_jti:
        return Reason.TOKEN_MISSING_JTI, refs["requireJti"], "token has no `jti` claim"
    if table.audience is not None and table.audience.isdisjoint(token.audiences):
        return Reason.TOKEN_AUDIENCE_INVALID, refs["audience"], "token audience is not accepted"
    if table.issuer is not None and token.issuer not in table.issuer:
        return Reason.TOKEN_ISSUER_INVALID, refs["issuer"], "token issuer is not accepted"
    if table.validate_environment and token.env is not None and token.env != table.environment:
        return Reason.TOKEN_ENVIRONMENT_MISMATCH, refs["environment"], "token was issued for another environment"
    return None


def admitted_between(table: TokenTable, token: Token) -> tuple[float, float]:
    """The times at which `check_token` lets `token` pass its time checks.

    The other checks do not depend on the time, so a decision that admitted `token`
    once holds for as long as the time stays within these bounds.
    """
    earliest, latest, _ = _time_bounds(table, token)
    return earliest, latest


def _time_bounds(table: TokenTable, token: Token) -> tuple[float, float, Denial]:
    """The earliest and latest times `token` passes, and the refusal of an earlier time.

    The one place the time rules are written, for both `check_token` and the decision
    memo: not expired (`exp` plus the skew); a lifetime within the maximum, counted from
    `iat` (else `nbf`), or from `now` for a token with neither; not before `nbf` or `iat`
    (less the skew). A token that lives too long from its own start never passes.
    """
    skew = table.skew_s
    exp, nbf, iat = token.exp, token.nbf, token.iat
    latest = inf if exp is None else exp + skew
    lifetime = table.max_lifetime_s
    too_long = Reason.TOKEN_LIFETIME_EXCEEDED, table.refs["maxLifetimeMinutes"], "token lives longer than allowed"
    if nbf is None and iat is None:
        return (-inf if exp is None else exp - lifetime), latest, too_long
    start = iat if iat is not None else nbf
    if exp is not None and start is not None and exp - start > lifetime:
        return inf, latest, too_long
    # Subtracting the skew keeps the order of floats, so this is the later of both bounds.
    earliest = max(t for t in (nbf, iat) if t is not None) - skew
    return earliest, latest, (Reason.TOKEN_NOT_YET_VALID, table.refs["clockSkewSeconds"], "token is not valid yet")


def check_scope_limits(table: TokenTable, token: Token, client_ip: str | None, now: float) -> Denial | None:
    """Apply a token's own IP and time-window restrictions (its `scopes` claim)."""
    ref = table.refs["claims"]
    if token.networks is not None:
        try:
            address = ipaddress.ip_address(client_ip) if client_ip else None
        except ValueError:
            address = None
        if address is None or not any(address.version == n.version and address in n for n in token.networks):
            return Reason.IP_NOT_ALLOWED, ref, "client address is outside the token's allowed networks"
    if token.windows is not None:
        moment = dt.datetime.fromtimestamp(now, tz=dt.UTC)
        minute, weekday = moment.hour * 60 + moment.minute, moment.weekday()
        if not any(_inside(w, minute, weekday) for w in token.windows):
            return Reason.OUTSIDE_TIME_WINDOW, ref, "request is outside the token's allowed hours"
    return None


def _inside(window: TimeWindow, minute: int, weekday: int) -> bool:
    """A window that crosses midnight belongs to the day it starts on: a Friday night
    shift from 22:00 to 06:00 runs into Saturday morning, not Friday morning."""
    if window.start <= window.end:
        return weekday in window.weekdays and window.start <= minute < window.end
    if minute >= window.start:
        return weekday in window.weekdays
    return minute < window.end and (weekday - 1) % 7 in window.weekdays
