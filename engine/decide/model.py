"""The values that flow through a decision: the request context in, the decision out.

Everything the core needs to know about a request, including the time, the client's
address and what the store said about the token, is a field here, filled in by the shell.
That keeps `decide` a pure function of (snapshot, context), which is what makes it
testable from YAML cases and benchmarkable in isolation. No I/O in this module.
"""

from __future__ import annotations

import ipaddress
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType
from typing import Any, Final, NamedTuple

from engine.errors import Location

__all__ = [
    "STATUS",
    "Access",
    "Action",
    "AuthMethod",
    "Content",
    "Decision",
    "Denial",
    "Finding",
    "Reason",
    "RequestContext",
    "RuleRef",
    "Token",
    "User",
    "Visibility",
]

EMPTY: Final[Mapping[str, Any]] = MappingProxyType({})


class Reason(StrEnum):
    """Why a decision came out as it did. These strings are API: never rename one."""

    ALLOWED = "allowed"
    PUBLIC_ROUTE = "public_route"
    DEFAULT_DENY = "default_deny"
    FEATURE_DISABLED = "feature_disabled"
    AUTH_REQUIRED = "auth_required"
    BASIC_AUTH_DISABLED = "basic_auth_disabled"
    PROXY_AUTH_UNTRUSTED = "proxy_auth_untrusted"
    TOKEN_ALGORITHM_FORBIDDEN = "token_algorithm_forbidden"
    TOKEN_HEADER_FORBIDDEN = "token_header_forbidden"
    TOKEN_MISSING_EXP = "token_missing_exp"
    TOKEN_EXPIRED = "token_expired"
    TOKEN_NOT_YET_VALID = "token_not_yet_valid"
    TOKEN_MISSING_JTI = "token_missing_jti"
    TOKEN_LIFETIME_EXCEEDED = "token_lifetime_exceeded"
    TOKEN_AUDIENCE_INVALID = "token_audience_invalid"
    TOKEN_ISSUER_INVALID = "token_issuer_invalid"
    TOKEN_ENVIRONMENT_MISMATCH = "token_environment_mismatch"
    TOKEN_CLAIM_INVALID = "token_claim_invalid"
    TOKEN_REVOKED = "token_revoked"
    REVOCATION_UNAVAILABLE = "revocation_unavailable"
    USER_UNKNOWN = "user_unknown"
    ACCOUNT_DISABLED = "account_disabled"
    IP_NOT_ALLOWED = "ip_not_allowed"
    OUTSIDE_TIME_WINDOW = "outside_time_window"
    SERVER_SCOPE_DENIED = "server_scope_denied"
    SERVER_SCOPE_MISMATCH = "server_scope_mismatch"
    ADMIN_REQUIRED = "admin_required"
    PERMISSION_MISSING = "permission_missing"
    MCP_METHOD_UNKNOWN = "mcp_method_unknown"
    RATE_LIMITED = "rate_limited"
    CONTENT_TOO_LARGE = "content_too_large"
    CONTENT_BLOCKED = "content_blocked"
    CONTENT_PII = "content_pii"


class Access(StrEnum):
    """How much of the catalog a caller may see."""

    UNRESTRICTED = "unrestricted"
    PUBLIC_ONLY = "public_only"
    TEAM_AND_PUBLIC = "team_and_public"


class Action(StrEnum):
    """What a content finding leads to, strongest first."""

    BLOCK = "block"
    REDACT = "redact"
    LOG = "log"
    ALLOW = "allow"


class AuthMethod(StrEnum):
    """How the caller presented credentials, as the shell found them."""

    NONE = "none"
    BEARER = "bearer"
    BASIC = "basic"
    PROXY = "proxy"


STATUS: Final[Mapping[Reason, int]] = MappingProxyType(
    {
        Reason.ALLOWED: 200,
        Reason.PUBLIC_ROUTE: 200,
        Reason.DEFAULT_DENY: 404,
        Reason.FEATURE_DISABLED: 404,
        Reason.AUTH_REQUIRED: 401,
        Reason.BASIC_AUTH_DISABLED: 401,
        Reason.PROXY_AUTH_UNTRUSTED: 401,
        Reason.TOKEN_ALGORITHM_FORBIDDEN: 401,
        Reason.TOKEN_HEADER_FORBIDDEN: 401,
        Reason.TOKEN_MISSING_EXP: 401,
        Reason.TOKEN_EXPIRED: 401,
        Reason.TOKEN_NOT_YET_VALID: 401,
        Reason.TOKEN_MISSING_JTI: 401,
        Reason.TOKEN_LIFETIME_EXCEEDED: 401,
        Reason.TOKEN_AUDIENCE_INVALID: 401,
        Reason.TOKEN_ISSUER_INVALID: 401,
        Reason.TOKEN_ENVIRONMENT_MISMATCH: 401,
        Reason.TOKEN_CLAIM_INVALID: 401,
        Reason.TOKEN_REVOKED: 401,
        Reason.REVOCATION_UNAVAILABLE: 503,
        Reason.USER_UNKNOWN: 401,
        Reason.ACCOUNT_DISABLED: 403,
        Reason.IP_NOT_ALLOWED: 403,
        Reason.OUTSIDE_TIME_WINDOW: 403,
        Reason.SERVER_SCOPE_DENIED: 403,
        Reason.SERVER_SCOPE_MISMATCH: 403,
        Reason.ADMIN_REQUIRED: 403,
        Reason.PERMISSION_MISSING: 403,
        Reason.MCP_METHOD_UNKNOWN: 403,
        Reason.RATE_LIMITED: 429,
        Reason.CONTENT_TOO_LARGE: 413,
        Reason.CONTENT_BLOCKED: 422,
        Reason.CONTENT_PII: 422,
    }
)
"""The HTTP status each reason is answered with."""


@dataclass(frozen=True, slots=True)
class RuleRef:
    """A rule's stable id and where its text is, so every decision can be explained."""

    id: str
    where: Location


Denial = tuple[Reason, RuleRef, str]
"""A failed check: why, the rule that says so, and a message safe to show the caller."""


class TeamsClaim(StrEnum):
    """The four shapes a `teams` claim can take; each has its own row in the truth table."""

    ABSENT = "absent"
    NULL = "null"
    EMPTY = "empty"
    LISTED = "listed"


_WEEKDAYS: Final = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_MAX_SECONDS: Final = 2**53  # past this, a float no longer holds every whole second


@dataclass(frozen=True, slots=True)
class TimeWindow:
    """Minutes of the UTC day `[start, end)` (wrapping past midnight when end < start)."""

    start: int
    end: int
    weekdays: frozenset[int]


IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, slots=True)
class Token:
    """A bearer token whose signature the shell has already verified.

    Everything the policy judges is read out of the claims once, when the token is built:
    the shell keeps verified tokens in a cache keyed by the raw token, so a request with a
    known token pays for comparisons only. None of these facts depends on the policy or on
    the time. A claim that cannot be read sets `problem`, and the token is refused:
    a scope that narrows access must never widen it by being malformed.
    """

    header: Mapping[str, Any]
    claims: Mapping[str, Any]
    alg: Any = field(init=False)
    exp: float | None = field(init=False)
    nbf: float | None = field(init=False)
    iat: float | None = field(init=False)
    jti: str | None = field(init=False)
    audiences: frozenset[str] = field(init=False)
    issuer: str | None = field(init=False)
    env: str | None = field(init=False)
    session: bool = field(init=False)
    teams_claim: TeamsClaim = field(init=False)
    teams: frozenset[str] = field(init=False)
    server_id: str | None = field(init=False)
    permissions: frozenset[str] | None = field(init=False)
    networks: tuple[IPNetwork, ...] | None = field(init=False)
    windows: tuple[TimeWindow, ...] | None = field(init=False)
    problem: str | None = field(init=False)

    def __post_init__(self) -> None:
        claims = self.claims
        problems: list[str] = []
        put = object.__setattr__
        put(self, "alg", self.header.get("alg"))
        for name in ("exp", "nbf", "iat"):
            value = claims.get(name)
            if value is not None and not _seconds(value):
                problems.append(f"claim `{name}` is not a number of seconds")
                value = None
            put(self, name, value)
        jti = claims.get("jti")
        if jti is not None and not isinstance(jti, str):
            problems.append("claim `jti` is not a string")
            jti = None
        put(self, "jti", jti or None)
        aud = claims.get("aud")
        put(
            self,
            "audiences",
            frozenset(
                [aud]
                if isinstance(aud, str)
                else [a for a in aud if isinstance(a, str)]
                if isinstance(aud, list)
                else ()
            ),
        )
        for name, claim in (("issuer", "iss"), ("env", "env")):
            value = claims.get(claim)
            if value is not None and not isinstance(value, str):
                problems.append(f"claim `{claim}` is not a string")
                value = None
            put(self, name, value)
        put(self, "session", claims.get("token_use") == "session")
        shape, teams = _teams(claims, problems)
        put(self, "teams_claim", shape)
        put(self, "teams", teams)
        scopes = claims.get("scopes") or {}
        if not isinstance(scopes, Mapping):
            problems.append("claim `scopes` is not an object")
            scopes = {}
        server_id = scopes.get("server_id")
        if server_id is not None and not isinstance(server_id, str):
            problems.append("scope `server_id` is not a string")
        put(self, "server_id", server_id)
        listed = scopes.get("permissions")
        if listed is not None and not (isinstance(listed, list) and all(isinstance(p, str) for p in listed)):
            problems.append("scope `permissions` is not a list of strings")
            listed = []
        put(self, "permissions", None if listed is None or listed == ["*"] else frozenset(listed))
        put(self, "networks", _networks(scopes.get("ip_restrictions"), problems))
        put(self, "windows", _windows(scopes.get("time_restrictions"), problems))
        put(self, "problem", problems[0] if problems else None)


def _seconds(value: Any) -> bool:
    """Whether a time claim can be compared with the clock.

    NaN compares false both ways, so an `exp` of NaN would never expire; an integer past
    a float's range cannot meet the clock at all (arithmetic with it raises), and JSON
    lets a token carry one of any length.
    """
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return abs(value) <= _MAX_SECONDS
    return isinstance(value, float) and math.isfinite(value)


def _teams(claims: Mapping[str, Any], problems: list[str]) -> tuple[TeamsClaim, frozenset[str]]:
    if "teams" not in claims:
        return TeamsClaim.ABSENT, frozenset()
    teams = claims["teams"]
    if teams is None:
        return TeamsClaim.NULL, frozenset()
    if isinstance(teams, list) and all(isinstance(t, str) for t in teams):
        return (TeamsClaim.LISTED, frozenset(teams)) if teams else (TeamsClaim.EMPTY, frozenset())
    problems.append("claim `teams` must be null or a list of strings")
    return TeamsClaim.EMPTY, frozenset()


def _networks(raw: Any, problems: list[str]) -> tuple[IPNetwork, ...] | None:
    if not raw:
        return None
    if not isinstance(raw, list) or not all(isinstance(c, str) for c in raw):
        problems.append("scope `ip_restrictions` must be a list of CIDR strings")
        return ()
    try:
        return tuple(ipaddress.ip_network(c, strict=False) for c in raw)
    except ValueError:
        problems.append("scope `ip_restrictions` holds an invalid network")
        return ()


def _windows(raw: Any, problems: list[str]) -> tuple[TimeWindow, ...] | None:
    if not raw:
        return None
    windows = []
    for window in raw if isinstance(raw, list) else [raw]:
        try:
            if not isinstance(window, Mapping) or window.get("timezone", "UTC") != "UTC":
                raise ValueError(window)
            days = window.get("weekdays", list(_WEEKDAYS))
            if (
                not isinstance(days, list)
                or not all(isinstance(d, str) for d in days)
                or not set(days) <= set(_WEEKDAYS)
            ):
                raise ValueError(days)
            windows.append(
                TimeWindow(
                    _minutes(window.get("start_time", "00:00")),
                    _minutes(window.get("end_time", "24:00")),
                    frozenset(_WEEKDAYS.index(d) for d in days),
                )
            )
        except ValueError:
            problems.append("scope `time_restrictions` is malformed")
            return ()
    return tuple(windows)


def _minutes(text: Any) -> int:
    if not isinstance(text, str) or len(text) != 5 or text[2] != ":" or not (text[:2] + text[3:]).isdigit():
        raise ValueError(text)
    hours, minutes = int(text[:2]), int(text[3:])
    if hours > 24 or minutes > 59 or (hours == 24 and minutes):
        raise ValueError(text)
    return hours * 60 + minutes


@dataclass(frozen=True, slots=True)
class User:
    """What the store says about the caller; `teams` and `roles` are resolved server-side."""

    email: str
    admin: bool = False
    active: bool = True
    teams: frozenset[str] = frozenset()
    roles: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class Content:
    """A body to inspect, and the context that decides which rules apply to it."""

    context: str
    text: str


@dataclass(frozen=True, slots=True)
class RequestContext:
    """Every fact a decision may depend on.

    `revoked` is the answer of the revocation look-up: `None` means the look-up failed,
    and the policy decides what that means. `user` is `None` when the store knows no such
    user. `now` is seconds since the epoch; `rate` holds the shell's counters per bucket.
    """

    method: str
    path: str
    now: float
    client_ip: str | None = None
    auth: AuthMethod = AuthMethod.NONE
    token: Token | None = None
    user: User | None = None
    revoked: bool | None = False
    mcp_method: str | None = None
    content: Content | None = None
    rate: Mapping[str, int] = field(default_factory=lambda: EMPTY)


class Visibility(NamedTuple):
    """The catalog filter a handler must apply: which access level, over which teams.

    A NamedTuple rather than a frozen dataclass, like `Decision`: one is built for every
    request, and a frozen dataclass spends a `object.__setattr__` call per field.
    """

    access: Access
    teams: frozenset[str] = frozenset()

    @property
    def reach(self) -> frozenset[str] | None:
        """The teams whose items the caller sees; None for every team's. A public-only
        caller reaches none, whatever teams it was given."""
        if self.access is Access.UNRESTRICTED:
            return None
        return self.teams if self.access is Access.TEAM_AND_PUBLIC else frozenset()

    @property
    def sees_own_private(self) -> bool:
        """Whether the caller's own private items are in its catalog (all are, unrestricted)."""
        return self.access is Access.TEAM_AND_PUBLIC

    def shows(self, visibility: str, team_id: str | None, owner: str | None, viewer: str | None) -> bool:
        """Whether one item (its visibility, team and owner) is in this caller's catalog,
        for `viewer` (the caller's email): the filter the catalog queries apply, for a
        single item the shell holds rather than a query."""
        reach = self.reach
        if reach is None or visibility == "public":
            return True
        if visibility == "team":
            return team_id in reach
        return visibility == "private" and self.sees_own_private and viewer is not None and owner == viewer


PUBLIC_ONLY: Final = Visibility(Access.PUBLIC_ONLY)
"""What a caller the truth table gives no wider visibility sees: public items only."""


@dataclass(frozen=True, slots=True)
class Finding:
    """A content rule that matched, where, and what the active mode does about it.

    The matched text itself is deliberately not kept: findings are logged and returned
    to callers, and echoing an attack payload or a card number back is a leak.
    """

    rule: str
    category: str
    start: int
    end: int
    action: Action
    pii: bool = False


class Decision(NamedTuple):
    """The answer to one request, with the rule that made it and what it obliges.

    A denial is a value, not an exception: the shell turns it into a response. `status`
    is the HTTP status to answer with; `retry_after` is set for rate limiting. Immutable
    like every value here, but a NamedTuple: building a frozen dataclass of this size
    costs about 2.9 us on CPython 3.11, more than the whole decision budget.
    """

    allow: bool
    status: int
    reason: Reason
    rule: RuleRef
    message: str = ""
    route: str | None = None
    principal: str | None = None
    visibility: Visibility | None = None
    visibility_rule: RuleRef | None = None
    permissions: frozenset[str] = frozenset()
    findings: tuple[Finding, ...] = ()
    retry_after: int | None = None
