"""Crafted tokens: every one of them is refused, each with its own stable code.

A gateway that accepts any of these is broken, so the suite also asserts that the
correctly made token of each family is accepted: a refusal must come from the check, not
from a gateway that refuses everything.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from jwcrypto import jwk, jws
from jwcrypto.common import json_encode

from tests.integration.servers import ADMIN_EMAIL, ADMIN_PASSWORD, Gateway, claims, mint, unsigned

NOW = int(time.time())

HS_ATTACKS: dict[str, tuple[Callable[[], str], int, str]] = {
    "alg none": (lambda: unsigned(claims(), {"alg": "none", "typ": "JWT"}), 401, "token_algorithm_forbidden"),
    "alg NONE": (lambda: unsigned(claims(), {"alg": "NONE"}), 401, "token_algorithm_forbidden"),
    "wrong secret": (lambda: mint(claims(), secret="x" * 40), 401, "token_signature_invalid"),
    "jku header": (lambda: mint(claims(), header={"jku": "https://evil.example/jwks"}), 401, "token_header_forbidden"),
    "x5u header": (lambda: mint(claims(), header={"x5u": "https://evil.example/cert"}), 401, "token_header_forbidden"),
    "embedded jwk": (
        lambda: mint(claims(), header={"jwk": {"kty": "oct", "k": "AAAA"}}),
        401,
        "token_header_forbidden",
    ),
    "expired": (lambda: mint(claims(iat=NOW - 7200, exp=NOW - 3600)), 401, "token_expired"),
    "not yet valid": (lambda: mint(claims(nbf=NOW + 3600, exp=NOW + 7200)), 401, "token_not_yet_valid"),
    "no exp": (lambda: mint(claims(exp=None)), 401, "token_missing_exp"),
    "no jti": (lambda: mint(claims(jti=None)), 401, "token_missing_jti"),
    "wrong audience": (lambda: mint(claims(aud="someone-else")), 401, "token_audience_invalid"),
    "wrong issuer": (lambda: mint(claims(iss="evil-issuer")), 401, "token_issuer_invalid"),
    "lifetime too long": (lambda: mint(claims(exp=NOW + 10 * 365 * 86400)), 401, "token_lifetime_exceeded"),
    "teams not a list": (lambda: mint(claims(teams="blue")), 401, "token_claim_invalid"),
    "no subject": (lambda: mint(claims(sub=None)), 401, "token_claim_invalid"),
    "exp NaN": (lambda: mint(claims(exp=float("nan"))), 401, "token_claim_invalid"),
    "nbf infinite": (lambda: mint(claims(nbf=float("-inf"))), 401, "token_claim_invalid"),
    "exp past a float's range": (lambda: mint(claims(exp=10**400)), 401, "token_claim_invalid"),
    "iat hugely negative": (lambda: mint(claims(iat=-(10**30))), 401, "token_claim_invalid"),
    "forged, with an exp past a float's range": (
        lambda: unsigned(claims(exp=10**400), {"alg": "HS256"}),
        401,
        "token_signature_invalid",
    ),
    "issuer in a list": (lambda: mint(claims(iss=["mcpgateway"])), 401, "token_claim_invalid"),
    "not a jwt": (lambda: "definitely-not-a-token", 401, "token_malformed"),
    "two parts": (lambda: "eyJhbGciOiJIUzI1NiJ9.e30", 401, "token_malformed"),
    "tampered payload": (lambda: _tampered(), 401, "token_signature_invalid"),
    "deeply nested header": (lambda: _nested(), 401, "token_malformed"),
    "malformed weekdays": (
        lambda: mint(claims(scopes={"time_restrictions": [{"weekdays": [[1]]}]})),
        401,
        "token_claim_invalid",
    ),
}


def _nested() -> str:
    header = base64.urlsafe_b64encode(b"[" * 11000).rstrip(b"=").decode()
    return f"{header}.e30.c2ln"


def _tampered() -> str:
    header, _, signature = mint(claims()).split(".")
    forged = base64.urlsafe_b64encode(json_encode(claims(teams=None)).encode()).rstrip(b"=").decode()
    return f"{header}.{forged}.{signature}"


@pytest.mark.parametrize("name", sorted(HS_ATTACKS))
def test_crafted_token_is_refused(gateway: Gateway, name: str) -> None:
    make, status, code = HS_ATTACKS[name]
    response = gateway.client(make()).get("/auth/me")
    assert (response.status_code, response.json()["error"]["code"]) == (status, code)
    assert response.headers["www-authenticate"].startswith("Bearer")


def test_a_well_made_token_is_accepted(gateway: Gateway) -> None:
    assert gateway.client(mint(claims())).get("/auth/me").status_code == 200


def test_other_schemes_and_spoofed_proxy_headers_are_refused(gateway: Gateway) -> None:
    basic = gateway.client(Authorization="Basic " + base64.b64encode(b"root@example.com:x").decode()).get("/tokens")
    assert (basic.status_code, basic.json()["error"]["code"]) == (401, "basic_auth_disabled")
    other = gateway.client(Authorization="Token abc").get("/tokens")
    assert (other.status_code, other.json()["error"]["code"]) == (401, "auth_scheme_unsupported")
    spoofed = gateway.client(**{"X-Forwarded-User": ADMIN_EMAIL}).get("/admin/users")
    assert (spoofed.status_code, spoofed.json()["error"]["code"]) == (401, "auth_required")


def _pem_pair(folder: Path, key: jwk.JWK, name: str) -> tuple[Path, Path]:
    private, public = folder / f"{name}-private.pem", folder / f"{name}-public.pem"
    private.write_bytes(key.export_to_pem(private_key=True, password=None))
    public.write_bytes(key.export_to_pem())
    return private, public


def _sign(key: jwk.JWK, alg: str, payload: dict[str, object]) -> str:
    token = jws.JWS(json_encode(payload).encode())
    token.add_signature(key, alg=alg, protected=json_encode({"alg": alg, "typ": "JWT"}))
    return str(token.serialize(compact=True))


@pytest.mark.parametrize(("alg", "kty", "extra"), [("RS256", "RSA", {"size": 2048}), ("ES256", "EC", {"crv": "P-256"})])
def test_asymmetric_keys_and_algorithm_confusion(
    start: Callable[..., Gateway], tmp_path: Path, alg: str, kty: str, extra: dict[str, object]
) -> None:
    ours = jwk.JWK.generate(kty=kty, **extra)
    theirs = jwk.JWK.generate(kty=kty, **extra)
    private, public = _pem_pair(tmp_path, ours, "ours")
    server = start(JWT_ALGORITHM=alg, JWT_PRIVATE_KEY_PATH=private, JWT_PUBLIC_KEY_PATH=public, JWT_SECRET_KEY="")
    assert server.client(_sign(ours, alg, claims())).get("/auth/me").status_code == 200
    assert server.client(server.login()).get("/auth/me").status_code == 200
    foreign = server.client(_sign(theirs, alg, claims())).get("/auth/me")
    assert foreign.json()["error"]["code"] == "token_signature_invalid"
    # The classic confusion: an HS256 token whose HMAC secret is our public key's PEM.
    # JWT_ALGORITHM narrows the policy to one algorithm, so the header is refused first;
    # tests/unit/test_signing.py shows the key family refusing it too.
    confused = mint(claims(), secret=public.read_text())
    refused = server.client(confused).get("/auth/me")
    assert (refused.status_code, refused.json()["error"]["code"]) == (401, "token_algorithm_forbidden")


def test_environment_claim_is_checked_when_validation_is_on(start: Callable[..., Gateway]) -> None:
    server = start(ENVIRONMENT="staging", VALIDATE_TOKEN_ENVIRONMENT="true", EMBED_ENVIRONMENT_IN_TOKENS="true")
    other = server.client(mint(claims(env="production"))).get("/auth/me")
    assert (other.status_code, other.json()["error"]["code"]) == (401, "token_environment_mismatch")
    assert server.client(mint(claims(env="staging"))).get("/auth/me").status_code == 200
    issued = server.login()
    payload = issued.split(".")[1]
    assert b'"env":"staging"' in base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)).replace(b" ", b"")


def test_a_gateway_holding_only_a_public_key_verifies_but_issues_nothing(
    start: Callable[..., Gateway], tmp_path: Path
) -> None:
    ours = jwk.JWK.generate(kty="EC", crv="P-256")
    _, public = _pem_pair(tmp_path, ours, "ours")
    server = start(JWT_ALGORITHM="ES256", JWT_PUBLIC_KEY_PATH=public, JWT_PRIVATE_KEY_PATH=None, JWT_SECRET_KEY="")
    client = server.client(_sign(ours, "ES256", claims()))
    assert client.get("/auth/me").status_code == 200
    login = server.client().post("/auth/login", json={"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD})
    assert (login.status_code, login.json()["error"]["code"]) == (503, "token_issuing_unavailable")
    made = client.post("/tokens", json={"name": "never-issued"})
    assert (made.status_code, made.json()["error"]["code"]) == (503, "token_issuing_unavailable")
    assert client.get("/tokens").json()["items"] == [], "no record of a token nobody received"
    assert server.new_tracebacks() == ""
