"""Policy test cases: a request context written as data, and the decision expected.

`PolicyTest` documents are how security teams prove what their policy does, and they run
in CI exactly as the gateway would decide. The same context format feeds `explain`. This
module is pure: contexts carry their own `now`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from engine.decide import AuthMethod, Content, Decision, RequestContext, Token, User, decide
from engine.decide.content import CONTEXTS
from engine.errors import Location
from engine.policy import Document, Snapshot

__all__ = ["Case", "CaseResult", "context_from_data", "iter_cases", "run_case"]

_DEFAULT_HEADER = {"alg": "HS256", "typ": "JWT"}


@dataclass(frozen=True, slots=True)
class Case:
    note: str
    where: Location
    context: Mapping[str, Any]
    expect: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class CaseResult:
    case: Case
    decision: Decision | None
    problems: tuple[str, ...]

    @property
    def passed(self) -> bool:
        return not self.problems


def iter_cases(documents: tuple[Document, ...]) -> Iterator[Case]:
    """Every case of every `PolicyTest` document, with the place it is written."""
    for document in documents:
        for i, raw in enumerate(document.spec["cases"]):
            yield Case(raw["note"], document.locate(["cases", i, "note"]), raw["context"], raw["expect"])


def run_case(snapshot: Snapshot, case: Case) -> CaseResult:
    """Decide the case's context and compare every expected field."""
    try:
        ctx = context_from_data(case.context)
    except ValueError as err:
        return CaseResult(case, None, (f"context is invalid: {err}",))
    decision = decide(snapshot, ctx)
    return CaseResult(case, decision, tuple(_compare(case.expect, decision)))


def context_from_data(data: Mapping[str, Any]) -> RequestContext:
    """Build a RequestContext from its data form (YAML case or JSON file).

    With a `token` and no `user`, the user is taken to exist, be active and hold no roles
    beyond the policy's default; `user: null` says the store knows no such user.

    Raises:
        ValueError: a field is missing or of the wrong type.
    """
    if not isinstance(data, Mapping):
        raise ValueError("context must be an object")
    token = _token(data.get("token"))
    auth = AuthMethod(data.get("auth", "bearer" if token else "none"))
    content = data.get("content")
    if content is not None:
        if not isinstance(content, Mapping) or content.get("context") not in CONTEXTS:
            raise ValueError(f"`content` needs a `context` out of {', '.join(CONTEXTS)} and a `text`")
        repeat = content.get("repeat", 1)
        if not isinstance(repeat, int) or isinstance(repeat, bool) or repeat < 1:
            raise ValueError("`content.repeat` must be a positive integer")
        content = Content(str(content["context"]), str(content.get("text", "")) * repeat)
    rate = data.get("rate", {})
    if not isinstance(rate, Mapping) or not all(isinstance(v, int) for v in rate.values()):
        raise ValueError("`rate` must map bucket ids to counts")
    revoked = data.get("revoked", False)
    if revoked is not None and not isinstance(revoked, bool):
        raise ValueError("`revoked` must be true, false or null")
    return RequestContext(
        method=str(data.get("method", "GET")).upper(),
        path=_required_str(data, "path"),
        now=_timestamp(data.get("now")),
        client_ip=data.get("clientIp"),
        auth=auth,
        token=token,
        user=_user(data, token, auth),
        revoked=revoked,
        mcp_method=data.get("mcpMethod"),
        content=content,
        rate=dict(rate),
    )


def _token(raw: Any) -> Token | None:
    if raw is None:
        return None
    if not isinstance(raw, Mapping) or not isinstance(raw.get("claims", {}), Mapping):
        raise ValueError("`token` must be an object with `claims`")
    header = raw.get("header", _DEFAULT_HEADER)
    if not isinstance(header, Mapping):
        raise ValueError("`token.header` must be an object")
    return Token(dict(header), dict(raw.get("claims", {})))


def _user(data: Mapping[str, Any], token: Token | None, auth: AuthMethod) -> User | None:
    if "user" in data:
        raw = data["user"]
        if raw is None:
            return None
        if not isinstance(raw, Mapping):
            raise ValueError("`user` must be an object or null")
        return User(
            email=str(raw.get("email", "user@example.com")),
            admin=bool(raw.get("admin", False)),
            active=bool(raw.get("active", True)),
            teams=frozenset(raw.get("teams", ())),
            roles=frozenset(raw.get("roles", ())),
        )
    if auth is AuthMethod.NONE:
        return None
    subject = token.claims.get("sub") if token else None
    return User(email=str(subject or "user@example.com"))


def _required_str(data: Mapping[str, Any], key: str) -> str:
    value = data.get(key)
    if not isinstance(value, str) or not value.startswith("/"):
        raise ValueError(f"`{key}` must be a path starting with `/`")
    return value


def _timestamp(value: Any) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        try:
            moment = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError as err:
            raise ValueError(f"`now` is not an ISO 8601 time: `{value}`") from err
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=dt.UTC)
        return moment.timestamp()
    raise ValueError("`now` is required: an ISO 8601 time or seconds since the epoch")


def _compare(expect: Mapping[str, Any], decision: Decision) -> Iterator[str]:
    actual: dict[str, Any] = {
        "allow": decision.allow,
        "status": decision.status,
        "reason": str(decision.reason),
        "rule": decision.rule.id,
        "access": str(decision.visibility.access) if decision.visibility else None,
        "teams": sorted(decision.visibility.teams) if decision.visibility else None,
        "findings": sorted({f.rule for f in decision.findings}),
        "action": str(max((f.action for f in decision.findings), key=_strength, default="allow")),
    }
    for key, wanted in expect.items():
        got = actual[key]
        if key in ("teams", "findings"):
            wanted = sorted(wanted)
        if got != wanted:
            yield f"{key}: expected `{wanted}`, got `{got}`"


def _strength(action: Any) -> int:
    return ["allow", "log", "redact", "block"].index(str(action))
