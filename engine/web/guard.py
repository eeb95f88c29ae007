"""Before every request: gather the facts, ask `decide`, and refuse or let through.

The guard reads the current snapshot once and keeps it on the request, so a reload in
the middle of a request cannot mix two policies. It does I/O only when the decision can
depend on it: public routes cost no look-up, and a token the policy refuses on its face
(wrong algorithm, expired) is refused before the store is asked about its user.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import json
import logging
import re
import secrets
import time
from typing import Any, Final

from quart import Response, g, request

from engine.decide import AuthMethod, Decision, RequestContext, Token, User, decide
from engine.decide.access import match_route
from engine.decide.limits import check_rate
from engine.decide.model import Denial
from engine.decide.tokens import check_token
from engine.passwords import TIMING_HASH, verify_password
from engine.policy import Snapshot
from engine.signing import read_token, verify_signature
from engine.store.models import ApiToken
from engine.store.models import User as UserRow
from engine.store.queries import use_store
from engine.web.incoming import Incoming, challenge
from engine.web.responses import error_response
from engine.web.state import Gateway, gateway, in_background

__all__ = ["admit", "after_request", "charge", "charge_tool", "finish_response", "guard", "mask_email"]

log = logging.getLogger("policygate.decision")

_VERIFIED_MAX: Final = 10_000
_REQUEST_ID: Final = re.compile(r"[A-Za-z0-9._-]{8,64}")
_Early = Response | None
_MCP_ROUTES: Final = frozenset({"routes/mcp", "routes/server-mcp"})


async def guard() -> Response | None:
    return await admit(gateway(), Incoming.from_request(request))


async def admit(gw: Gateway, incoming: Incoming) -> Response | None:
    """The refusal of `incoming`, or None with its facts and decision kept on `g`."""
    if gw.store is not None:
        use_store(gw.store)
    g.incoming = incoming
    supplied = incoming.header("x-request-id") or ""
    g.request_id = supplied if _REQUEST_ID.fullmatch(supplied) else secrets.token_hex(16)
    snapshot = gw.engine.current
    g.snapshot = snapshot
    if incoming.method == "OPTIONS" and incoming.header("access-control-request-method") is not None:
        return _preflight(snapshot, incoming)
    now = time.time()
    ctx = await _context(gw, snapshot, now, incoming)
    if isinstance(ctx, Response):
        return _challenged(ctx, snapshot, incoming)
    decision = decide(snapshot, ctx)
    g.decision = decision
    g.ctx = ctx
    g.user = ctx.user
    g.token = ctx.token
    if not decision.allow:
        _log(decision, snapshot, incoming)
        headers = {"Retry-After": str(decision.retry_after)} if decision.retry_after is not None else {}
        refusal = error_response(decision.status, str(decision.reason), decision.message, headers=headers)
        return _challenged(refusal, snapshot, incoming)
    if log.isEnabledFor(logging.DEBUG):
        _log(decision, snapshot, incoming)
    if ctx.token is not None and ctx.token.jti and ctx.token.claims.get("token_use") == "api":
        _note_use(gw, ctx.token.jti, ctx.now)
    return None


def _challenged(refusal: Response, snapshot: Snapshot, incoming: Incoming) -> Response:
    """`refusal`, pointing an MCP client that must sign in to the authorization server.

    Only refusals look the route up again; an admitted request matches it once.
    """
    if refusal.status_code == 401:
        found = match_route(snapshot.access, incoming.method, incoming.path)
        if found is not None and found[0].ref.id in _MCP_ROUTES:
            refusal.headers["WWW-Authenticate"] = challenge(incoming)
    return refusal


_USE_INTERVAL: Final = 60.0


def _note_use(gw: Gateway, jti: str, now: float) -> None:
    """Record an API token's last use, at most once a minute per token and process.

    The write runs in the background so a request never waits for it, and losing one
    (a store hiccup) only makes `last_used_at` a minute staler.
    """
    if now - gw.last_used.get(jti, 0.0) < _USE_INTERVAL:
        return
    if len(gw.last_used) >= _VERIFIED_MAX:
        gw.last_used.clear()
    gw.last_used[jti] = now
    in_background(gw, _write_use(jti, now))


async def _write_use(jti: str, now: float) -> None:
    try:
        await ApiToken.filter(jti=jti).update(last_used_at=dt.datetime.fromtimestamp(now, tz=dt.UTC))
    except Exception as err:
        log.warning("could not record token use: %s", type(err).__name__)


async def _context(gw: Gateway, snapshot: Snapshot, now: float, incoming: Incoming) -> RequestContext | Response:
    """The facts `decide` judges, or a refusal made before it (a forged token, wrong
    credentials, an unsupported scheme)."""
    method, path = incoming.method, incoming.path
    client_ip = incoming.remote_addr
    found = match_route(snapshot.access, method, path)
    if found is None or not found[0].route_class.authenticate:
        if found is not None and snapshot.limits.enabled and method not in ("GET", "HEAD"):
            # Unauthenticated writes (login, registration) are counted per address, so
            # password guessing meets the same budgets; health checks are not.
            rate = await _count(gw, snapshot, now, client_ip, None, None)
            return RequestContext(method, path, now, client_ip, rate=rate)
        return RequestContext(method, path, now, client_ip)
    route = found[0]
    header = incoming.header("authorization") or ""
    scheme, _, credential = header.partition(" ")
    scheme, credential = scheme.lower(), credential.strip()
    tokens = snapshot.tokens
    user: User | None = None
    revoked: bool | None = False
    token: Token | None = None
    # Budgets are charged to a token only once it is known to be ours and valid: the
    # claims of a forged one (an `alg` the policy refuses) would spend a victim's budget.
    holder: Token | None = None
    if scheme == "bearer" and credential:
        token, early = _bearer(gw, snapshot, credential)
        if early is not None:
            return await _refused(gw, snapshot, now, client_ip, early)
        auth = AuthMethod.BEARER
        if token is not None and check_token(tokens, token, now) is None:
            holder = token
            subject = token.claims.get("sub")
            if not isinstance(subject, str):
                refusal = error_response(401, "token_claim_invalid", "claim `sub` must name a user")
                return await _refused(gw, snapshot, now, client_ip, refusal)
            found_user = await gw.directory.lookup(subject, token.jti)
            user, revoked = found_user.user, found_user.revoked
    elif scheme == "basic" and credential:
        auth = AuthMethod.BASIC
        kind = route.route_class.basic_auth
        if kind is not None and tokens.basic_auth[kind]:
            user = await _basic_user(gw, credential)
            if user is None:
                refusal = error_response(401, "invalid_credentials", "the email or password is wrong")
                return await _refused(gw, snapshot, now, client_ip, refusal)
    elif header:
        refusal = error_response(401, "auth_scheme_unsupported", "use `Authorization: Bearer <token>`")
        return await _refused(gw, snapshot, now, client_ip, refusal)
    elif tokens.proxy_trusted and (proxied := incoming.header(tokens.proxy_header)):
        auth = AuthMethod.PROXY
        found_user = await gw.directory.lookup(proxied, None)
        user, revoked = found_user.user, found_user.revoked
    else:
        auth = AuthMethod.NONE
    rate = await _count(gw, snapshot, now, client_ip, holder, user) if snapshot.limits.enabled else {}
    return RequestContext(method, path, now, client_ip, auth, token, user, revoked, rate=rate)


def _bearer(gw: Gateway, snapshot: Snapshot, raw: str) -> tuple[Token | None, _Early]:
    """The token, once its signature is known to be ours; refusals the policy cannot make."""
    cached = gw.verified.get(raw)
    if cached is not None:
        token: Token = cached
        return token, None
    parts = read_token(raw)
    if parts is None:
        return None, error_response(401, "token_malformed", "the bearer token is not a JWT")
    token = Token(dict(parts.header), dict(parts.claims))
    tokens = snapshot.tokens
    if token.alg not in tokens.algorithms or not tokens.forbidden_headers.isdisjoint(parts.header):
        # The policy refuses this header itself, with its own reason and rule.
        return token, None
    if not verify_signature(gw.keys, parts, tokens.algorithms):
        return None, error_response(401, "token_signature_invalid", "the token's signature does not verify")
    if len(gw.verified) >= _VERIFIED_MAX:
        gw.verified.clear()
    gw.verified[raw] = token
    return token, None


async def _basic_user(gw: Gateway, credential: str) -> User | None:
    try:
        email, _, password = base64.b64decode(credential, validate=True).decode().partition(":")
    except ValueError:  # not base64 (non-ASCII input included), or not UTF-8
        return None
    row = await UserRow.filter(email=email).first()
    # An unknown email costs the same scrypt run, so timing does not reveal accounts.
    stored = row.password_hash if row is not None else TIMING_HASH
    if not await asyncio.to_thread(verify_password, password, stored) or row is None:
        return None
    return (await gw.directory.lookup(email, None)).user


async def _refused(gw: Gateway, snapshot: Snapshot, now: float, client_ip: str | None, refusal: Response) -> Response:
    """A refusal made before `decide` (a forged token, wrong credentials) still counts
    against the address's budget, so guessing is throttled like everything else."""
    if not snapshot.limits.enabled:
        return refusal
    limited = check_rate(snapshot.limits, await _count(gw, snapshot, now, client_ip, None, None), now)
    return refusal if limited is None else _too_many(limited)


async def _count(
    gw: Gateway,
    snapshot: Snapshot,
    now: float,
    client_ip: str | None,
    token: Token | None,
    user: User | None,
    by: int = 1,
) -> dict[str, int]:
    """Count a request against every bucket keyed by who sent it.

    Tool buckets are not among them: a tool's budget is charged only for a call the
    caller was admitted to make (`charge_tool`), so nobody can spend it without the
    right to run the tool.
    """
    keys = {
        "token": token.jti if token is not None else None,
        "user": user.email if user is not None else None,
        "ip": client_ip,
        "server": token.server_id if token is not None else None,
    }
    return await _counted(gw, snapshot, now, keys, by)


async def _counted(gw: Gateway, snapshot: Snapshot, now: float, keys: dict[str, str | None], by: int) -> dict[str, int]:
    """The count of each bucket whose key has a value in `keys`, after adding `by`."""
    counts: dict[str, int] = {}
    # Without a shared cache each process counts alone: budgets then hold per worker.
    cache = gw.cache if gw.cache is not None else gw.counters
    for bucket in snapshot.limits.buckets:
        value = keys.get(bucket.key)
        if value is not None:
            counts[bucket.id] = await cache.count(f"{bucket.id}:{value}", bucket.window_s, now, by)
    return counts


async def charge(gw: Gateway, snapshot: Snapshot, ctx: RequestContext, extra: int) -> Response | None:
    """Count `extra` more requests against the budgets the admitted request `ctx` was
    counted in, as a batch of JSON-RPC messages is: the 429 when that exhausts one."""
    if not snapshot.limits.enabled or extra <= 0:
        return None
    counts = await _count(gw, snapshot, ctx.now, ctx.client_ip, ctx.token, ctx.user, extra)
    limited = check_rate(snapshot.limits, counts, ctx.now)
    return None if limited is None else _too_many(limited)


async def charge_tool(gw: Gateway, snapshot: Snapshot, now: float, tool_id: str) -> tuple[Denial, int] | None:
    """Count one call of `tool_id` against the tool buckets: the denial and the seconds
    until its window resets when that exhausts one. Charged over REST and MCP alike,
    once the caller has been admitted and the tool found visible to it."""
    if not snapshot.limits.enabled:
        return None
    return check_rate(snapshot.limits, await _counted(gw, snapshot, now, {"tool": tool_id}, 1), now)


def _too_many(limited: tuple[Denial, int]) -> Response:
    (reason, _, message), retry_after = limited
    return error_response(429, str(reason), message, headers={"Retry-After": str(retry_after)})


def _preflight(snapshot: Snapshot, incoming: Incoming) -> Response:
    network = snapshot.network
    origin = incoming.header("origin") or ""
    if not network.cors_enabled or origin not in network.allowed_origins:
        return error_response(403, "origin_not_allowed", "this origin may not call the gateway")
    response = Response("", status=204)
    response.headers["Access-Control-Allow-Methods"] = ", ".join(network.allowed_methods)
    response.headers["Access-Control-Allow-Headers"] = ", ".join(network.allowed_headers)
    response.headers["Access-Control-Max-Age"] = str(network.cors_max_age)
    return response


async def after_request(response: Response) -> Response:
    finish_response(response, g.get("snapshot"), request.headers.get("Origin"), g.get("request_id", ""))
    return response


def finish_response(response: Response, snapshot: Snapshot | None, origin: str | None, request_id: str) -> None:
    """Security headers from the policy, CORS for allowed origins, the request id."""
    if snapshot is not None:
        network = snapshot.network
        # One pass over the names already set: `Headers.setdefault` lowercases and scans
        # every header for each of the policy's dozen, on every response.
        present = {name.lower() for name, _ in response.headers.items()}
        response.headers.extend([(name, value) for name, value in network.headers if name.lower() not in present])
        if origin and network.cors_enabled and origin in network.allowed_origins:
            response.headers["Access-Control-Allow-Origin"] = origin
            response.headers["Vary"] = "Origin"
            if network.allow_credentials:
                response.headers["Access-Control-Allow-Credentials"] = "true"
            if network.exposed_headers:
                response.headers["Access-Control-Expose-Headers"] = ", ".join(network.exposed_headers)
    response.headers["X-Request-ID"] = request_id


def _log(decision: Decision, snapshot: Snapshot, incoming: Incoming) -> None:
    record: dict[str, Any] = {
        "event": "decision",
        "request_id": g.get("request_id"),
        "method": incoming.method,
        "path": incoming.path,
        "allow": decision.allow,
        "status": decision.status,
        "reason": str(decision.reason),
        "rule": decision.rule.id,
        "where": str(decision.rule.where),
        "route": decision.route,
        "principal": mask_email(decision.principal),
        "policy_version": snapshot.version[:12],
    }
    log.info(json.dumps(record))


def mask_email(email: str | None) -> str | None:
    """`u***@example.com`: enough to correlate, not enough to identify."""
    if not email or "@" not in email:
        return email
    local, _, domain = email.partition("@")
    return f"{local[:1]}***@{domain}"
