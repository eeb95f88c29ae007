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
from typing import Any, Final

from engine.decide.model import Denial, Reason, RuleRef, Token
from engine.errors import PolicyError
from engine.policy.load import Document

__all__ = ["TokenTable", "build_token_table", "check_scope_limits", "check_token"]

_WEEKDAYS: Final = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


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
        forbidden_headers=frozenset(h.lower() for h in spec.get("forbiddenHeaders", ["jku", "x5u", "jwk", "x5c"])),
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
        basic_auth={"api": bool(basic.get("api", False)), "docs": bool(basic.get("docs", False))},
        proxy_trusted=bool(proxy.get("trusted", False)),
        proxy_header=str(proxy.get("userHeader", "X-Forwarded-User")),
        refs=refs,
    )
    return table, []


def check_token(table: TokenTable, token: Token, now: float) -> Denial | None:
    """Return why `token` must be refused at time `now`, or None when it passes."""
    header, claims, refs = token.header, token.claims, table.refs
    alg = header.get("alg")
    if alg not in table.algorithms:
        return (
            Reason.TOKEN_ALGORITHM_FORBIDDEN,
            refs["algorithms"],
            f"algorithm `{alg}` is not accepted",
        )
    for name in header:
        if name.lower() in table.forbidden_headers:
            return (
                Reason.TOKEN_HEADER_FORBIDDEN,
                refs["forbiddenHeaders"],
                f"header parameter `{name}` is not accepted",
            )
    exp = claims.get("exp")
    if exp is None:
        if table.require_exp:
            return Reason.TOKEN_MISSING_EXP, refs["requireExpiration"], "token has no `exp` claim"
    elif not _is_number(exp):
        return Reason.TOKEN_CLAIM_INVALID, refs["claims"], "claim `exp` is not a number"
    elif now > exp + table.skew_s:
        return Reason.TOKEN_EXPIRED, refs["clockSkewSeconds"], "token has expired"
    for name in ("nbf", "iat"):
        value = claims.get(name)
        if value is None:
            continue
        if not _is_number(value):
            return Reason.TOKEN_CLAIM_INVALID, refs["claims"], f"claim `{name}` is not a number"
        if value > now + table.skew_s:
            return (
                Reason.TOKEN_NOT_YET_VALID,
                refs["clockSkewSeconds"],
                f"token is not valid yet (`{name}`)",
            )
    jti = claims.get("jti")
    if jti is None or jti == "":
        if table.require_jti:
            return Reason.TOKEN_MISSING_JTI, refs["requireJti"], "token has no `jti` claim"
    elif not isinstance(jti, str):
        return Reason.TOKEN_CLAIM_INVALID, refs["claims"], "claim `jti` is not a string"
    if exp is not None:
        start = claims.get("iat", claims.get("nbf", now))
        if exp - start > table.max_lifetime_s:
            return (
                Reason.TOKEN_LIFETIME_EXCEEDED,
                refs["maxLifetimeMinutes"],
                "token lives longer than allowed",
            )
    if table.audience is not None and not _one_of(claims.get("aud"), table.audience):
        return Reason.TOKEN_AUDIENCE_INVALID, refs["audience"], "token audience is not accepted"
    if table.issuer is not None and claims.get("iss") not in table.issuer:
        return Reason.TOKEN_ISSUER_INVALID, refs["issuer"], "token issuer is not accepted"
    env = claims.get("env")
    if table.validate_environment and env is not None and env != table.environment:
        return (
            Reason.TOKEN_ENVIRONMENT_MISMATCH,
            refs["environment"],
            "token was issued for another environment",
        )
    return None


def check_scope_limits(
    table: TokenTable, scopes: Mapping[str, Any], client_ip: str | None, now: float
) -> Denial | None:
    """Apply a token's own IP and time-window restrictions (`scopes` claim).

    A restriction the gateway cannot parse refuses the token: a scope that narrows access
    must never widen it by being malformed.
    """
    ref = table.refs["claims"]
    cidrs = scopes.get("ip_restrictions")
    if cidrs:
        if not isinstance(cidrs, list) or not all(isinstance(c, str) for c in cidrs):
            return (
                Reason.TOKEN_CLAIM_INVALID,
                ref,
                "scope `ip_restrictions` must be a list of CIDR strings",
            )
        try:
            networks = [ipaddress.ip_network(c, strict=False) for c in cidrs]
            address = ipaddress.ip_address(client_ip) if client_ip else None
        except ValueError:
            return (
                Reason.TOKEN_CLAIM_INVALID,
                ref,
                "scope `ip_restrictions` holds an invalid address",
            )
        if address is None or not any(address.version == n.version and address in n for n in networks):
            return (
                Reason.IP_NOT_ALLOWED,
                ref,
                "client address is outside the token's allowed networks",
            )
    windows = scopes.get("time_restrictions")
    if windows:
        listed = windows if isinstance(windows, list) else [windows]
        inside = [_in_window(w, now) for w in listed]
        if None in inside:
            return Reason.TOKEN_CLAIM_INVALID, ref, "scope `time_restrictions` is malformed"
        if not any(inside):
            return Reason.OUTSIDE_TIME_WINDOW, ref, "request is outside the token's allowed hours"
    return None


def _in_window(window: Any, now: float) -> bool | None:
    """Whether `now` (UTC) lies in `{start_time, end_time, weekdays}`; None if malformed."""
    if not isinstance(window, Mapping):
        return None
    moment = dt.datetime.fromtimestamp(now, tz=dt.UTC)
    try:
        start = _minutes(window.get("start_time", "00:00"))
        end = _minutes(window.get("end_time", "24:00"))
    except ValueError:
        return None
    days = window.get("weekdays", _WEEKDAYS)
    if not isinstance(days, list) or not set(days) <= set(_WEEKDAYS):
        return None
    if window.get("timezone", "UTC") != "UTC":
        return None
    minute = moment.hour * 60 + moment.minute
    # A window whose end is before its start runs over midnight.
    inside = start <= minute < end if start <= end else (minute >= start or minute < end)
    return inside and _WEEKDAYS[moment.weekday()] in days


def _minutes(text: Any) -> int:
    if not isinstance(text, str) or len(text) != 5 or text[2] != ":":
        raise ValueError(text)
    hours, minutes = int(text[:2]), int(text[3:])
    if not (0 <= hours <= 24 and 0 <= minutes < 60) or (hours == 24 and minutes):
        raise ValueError(text)
    return hours * 60 + minutes


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _one_of(claim: Any, accepted: frozenset[str]) -> bool:
    if isinstance(claim, str):
        return claim in accepted
    if isinstance(claim, list):
        return any(isinstance(a, str) and a in accepted for a in claim)
    return False
