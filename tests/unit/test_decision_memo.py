"""The decision memo must never change an answer, only skip working it out again.

`decide` takes admissions from the snapshot's memo when the same facts come back. A key
that missed a fact, or a token interval that outlived the token, would hand one caller
another caller's answer or let an expired token in. So every answer is compared with
the answer of a snapshot whose memo is empty, over generated sequences of requests that
repeat and vary each fact, with times around each token's bounds.
"""

from __future__ import annotations

import dataclasses

import hypothesis.strategies as st
import pytest
from hypothesis import given, settings

from engine.decide import AuthMethod, Content, Decision, Reason, RequestContext, Token, User, decide
from engine.decide.memo import KEYED_FIELDS, DecisionMemo
from engine.policy import Snapshot, compile_policy
from engine.schemas import validators
from engine.sources import read_layer
from tests.conftest import EXAMPLES, default_layer

NOW = 1_800_000_000.0
SKEW = 30  # policies/tokens.yaml clockSkewSeconds


def _token(**claims: object) -> Token:
    base: dict[str, object] = {"sub": "dev@example.com", "jti": "t-1", "aud": "mcpgateway-api", "iss": "mcpgateway"}
    return Token({"alg": "HS256", "typ": "JWT"}, {**base, **claims})


TOKENS = [
    _token(exp=NOW + 600, iat=NOW - 60),
    _token(exp=NOW + 600, iat=NOW - 60, teams=["team-a"]),
    _token(exp=NOW + 600, nbf=NOW + 100),
    _token(exp=NOW + 600, nbf=NOW + 100, iat=NOW - 60),
    _token(exp=NOW + 600, nbf=NOW + 50, iat=NOW + 100),
    _token(exp=NOW + 600, iat=NOW + 100),
    _token(exp=NOW + 7200),  # no iat or nbf: the lifetime counts from now
    _token(exp=NOW + 600, iat=NOW - 60, scopes={"server_id": "srv-1"}),
    _token(exp=NOW + 600, iat=NOW - 60, scopes={"permissions": ["tools.read"]}),
    _token(exp=NOW + 600, iat=NOW - 60, scopes={"ip_restrictions": ["10.0.0.0/8"]}),
    _token(exp=NOW + 36000, iat=NOW - 60, scopes={"time_restrictions": {"start_time": "09:00", "end_time": "17:00"}}),
    _token(exp=NOW + 600, iat=NOW - 60, token_use="session"),
    _token(iat=NOW - 60),  # no exp
]
USERS = [
    User("dev@example.com", teams=frozenset({"team-a"}), roles=frozenset({"developer"})),
    User("dev@example.com", teams=frozenset({"team-a"}), roles=frozenset({"viewer"})),
    User("dev@example.com", active=False, roles=frozenset({"developer"})),
    User("dev@example.com", admin=True),
    User("ops@example.com", teams=frozenset({"team-b"}), roles=frozenset({"developer"})),
]
LIFETIME = 525_600 * 60  # policies/tokens.yaml maxLifetimeMinutes
# Times around every bound above: nbf less the skew, expiry plus the skew, the lifetime
# counted from now, and inside and outside the 09:00-17:00 window (NOW is 08:00 UTC).
TIMES = [
    *(NOW + 70 + step for step in (-1e-3, 0, 1e-3)),
    *(NOW + 630 + step for step in (-1e-3, 0, 1e-3)),
    *(NOW + 7200 - LIFETIME + step for step in (-1e-3, 0, 1e-3)),
    NOW + 100,
    NOW + 5400,
    NOW + 9 * 3600 + 1,
]
REQUESTS = [
    ("POST", "/servers/srv-1/mcp", "tools/list"),
    ("POST", "/servers/srv-1/mcp", "tools/call"),
    ("POST", "/servers/srv-2/mcp", "tools/list"),
    ("POST", "/mcp", "resources/read"),
    ("POST", "/mcp", "no/such-method"),
    ("GET", "/tools", None),
    ("POST", "/tools", None),
    ("GET", "/admin/users", None),
    ("GET", "/health", None),
    ("GET", "/nowhere", None),
]

# Each step changes one fact of the request before, so that every fact gets to be the
# only difference between a remembered request and a new one.
CHOICES: dict[str, list[object]] = {
    "request": REQUESTS,
    "now": TIMES,
    "client_ip": ["10.1.2.3", "192.0.2.7", None],
    "auth": [AuthMethod.BEARER, AuthMethod.NONE, AuthMethod.BASIC, AuthMethod.PROXY],
    "token": [*TOKENS, None],
    # A user the store built again is equal to, not the same object as, the one before.
    "user": [*USERS, dataclasses.replace(USERS[0]), None],
    "revoked": [False, None, True],
}
steps = st.lists(st.tuples(st.sampled_from(sorted(CHOICES)), st.integers(0, 100)), min_size=1, max_size=60)
FIRST = RequestContext(
    "POST",
    "/servers/srv-1/mcp",
    NOW + 100,
    client_ip="10.1.2.3",
    auth=AuthMethod.BEARER,
    token=TOKENS[0],
    user=USERS[0],
    mcp_method="tools/list",
)


def _changed(ctx: RequestContext, name: str, pick: int) -> RequestContext:
    options = CHOICES[name]
    value = options[pick % len(options)]
    if name == "request":
        method, path, mcp_method = value  # type: ignore[misc]
        return dataclasses.replace(ctx, method=method, path=path, mcp_method=mcp_method)
    return dataclasses.replace(ctx, **{name: value})


@pytest.fixture(scope="module")
def snapshot() -> Snapshot:
    return compile_policy([default_layer()], validators=validators()).snapshot


def _fresh(snapshot: Snapshot, ctx: RequestContext) -> Decision:
    return decide(dataclasses.replace(snapshot, memo=DecisionMemo()), ctx)


@settings(max_examples=400, deadline=None)
@given(steps)
def test_answers_from_the_memo_equal_answers_worked_out_afresh(snapshot: Snapshot, walk: list[tuple[str, int]]) -> None:
    shared = dataclasses.replace(snapshot, memo=DecisionMemo())
    ctx = FIRST
    assert decide(shared, ctx) == _fresh(snapshot, ctx)
    for name, pick in walk:
        ctx = _changed(ctx, name, pick)
        assert decide(shared, ctx) == _fresh(snapshot, ctx), ctx


@pytest.mark.parametrize("name", sorted(CHOICES))
def test_a_remembered_request_and_one_that_differs_in_one_fact(snapshot: Snapshot, name: str) -> None:
    """Every pair of values of one fact, from every token and request: exhaustive where the
    walk above samples."""
    for token in CHOICES["token"]:
        for request in REQUESTS:
            base = _changed(dataclasses.replace(FIRST, token=token), "request", REQUESTS.index(request))
            for first in range(len(CHOICES[name])):
                for second in range(len(CHOICES[name])):
                    shared = dataclasses.replace(snapshot, memo=DecisionMemo())
                    for ctx in (_changed(base, name, first), _changed(base, name, second)):
                        assert decide(shared, ctx) == _fresh(snapshot, ctx), ctx


def test_repeats_are_answered_from_the_memo(snapshot: Snapshot) -> None:
    """The property above holds trivially if nothing is ever remembered; this rules it out."""
    shared = dataclasses.replace(snapshot, memo=DecisionMemo())
    ctx = RequestContext("POST", "/servers/srv-1/mcp", NOW, auth=AuthMethod.BEARER, token=TOKENS[0], user=USERS[0])
    first = decide(shared, ctx)
    assert first.allow
    assert len(shared.memo) == 1
    assert decide(shared, dataclasses.replace(ctx, now=NOW + 1)) is first


def test_an_expired_token_is_refused_although_its_admission_is_remembered(snapshot: Snapshot) -> None:
    shared = dataclasses.replace(snapshot, memo=DecisionMemo())
    ctx = RequestContext("GET", "/tools", NOW, auth=AuthMethod.BEARER, token=TOKENS[0], user=USERS[0])
    assert decide(shared, ctx).allow
    assert decide(shared, dataclasses.replace(ctx, now=NOW + 600 + SKEW)).allow
    late = decide(shared, dataclasses.replace(ctx, now=NOW + 600 + SKEW + 0.001))
    assert (late.allow, late.reason) == (False, Reason.TOKEN_EXPIRED)


def test_a_changed_user_is_judged_again(snapshot: Snapshot) -> None:
    shared = dataclasses.replace(snapshot, memo=DecisionMemo())
    ctx = RequestContext("GET", "/tools", NOW, auth=AuthMethod.BEARER, token=TOKENS[0], user=USERS[0])
    assert decide(shared, ctx).allow
    disabled = decide(shared, dataclasses.replace(ctx, user=dataclasses.replace(USERS[0], active=False)))
    assert (disabled.allow, disabled.reason) == (False, Reason.ACCOUNT_DISABLED)


def test_rate_and_content_are_judged_on_every_request() -> None:
    strict = compile_policy(
        [default_layer(), read_layer([EXAMPLES / "strict-production" / "policies"])], validators=validators()
    ).snapshot
    assert strict.limits.enabled
    bucket = strict.limits.buckets[0]
    ctx = RequestContext("POST", "/tools", NOW, auth=AuthMethod.BEARER, token=TOKENS[0], user=USERS[0])
    assert decide(strict, ctx).allow
    over = decide(strict, dataclasses.replace(ctx, rate={bucket.id: bucket.limit + 1}))
    assert (over.allow, over.reason) == (False, Reason.RATE_LIMITED)
    attack = Content("resource", "<script>alert(1)</script>")
    blocked = decide(strict, dataclasses.replace(ctx, content=attack))
    assert (blocked.allow, blocked.reason) == (False, Reason.CONTENT_BLOCKED)
    assert decide(strict, ctx).allow


def test_the_memo_forgets_rather_than_grows(snapshot: Snapshot) -> None:
    shared = dataclasses.replace(snapshot, memo=DecisionMemo(limit=8))
    for number in range(20):
        path = f"/servers/srv-{number}/mcp"
        ctx = RequestContext("POST", path, NOW, auth=AuthMethod.BEARER, token=TOKENS[0], user=USERS[0])
        assert decide(shared, ctx).allow
        assert len(shared.memo) <= 8


def test_the_key_accounts_for_every_fact_of_a_request() -> None:
    """A field added to `RequestContext` must be added to the memo's key (or ruled out)."""
    assert {f.name for f in dataclasses.fields(RequestContext)} == KEYED_FIELDS
