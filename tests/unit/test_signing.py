"""Signature checks: a key verifies only its own family's algorithms."""

from __future__ import annotations

import base64
from pathlib import Path

from jwcrypto import jwk, jws
from jwcrypto.common import json_encode

from engine.settings import Settings
from engine.signing import load_keys, read_token, sign, verify_signature

EVERY = frozenset({"HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "ES256", "PS256"})


def _hmac(secret: bytes, payload: dict[str, object], alg: str = "HS256") -> str:
    key = jwk.JWK(kty="oct", k=base64.urlsafe_b64encode(secret).rstrip(b"=").decode())
    token = jws.JWS(json_encode(payload).encode())
    token.add_signature(key, alg=alg, protected=json_encode({"alg": alg}))
    return str(token.serialize(compact=True))


def test_hs256_signed_with_the_rsa_public_key_never_verifies(tmp_path: Path) -> None:
    key = jwk.JWK.generate(kty="RSA", size=2048)
    public, private = tmp_path / "public.pem", tmp_path / "private.pem"
    public.write_bytes(key.export_to_pem())
    private.write_bytes(key.export_to_pem(private_key=True, password=None))
    keys = load_keys(
        Settings(jwt_algorithm="RS256", jwt_public_key_path=str(public), jwt_private_key_path=str(private))
    )
    forged = read_token(_hmac(public.read_bytes(), {"sub": "x"}))
    assert forged is not None
    # Even with every algorithm accepted by policy, an RSA key does not verify HMAC.
    assert not verify_signature(keys, forged, EVERY)
    genuine = read_token(sign(keys, {"sub": "x"}))
    assert genuine is not None
    assert verify_signature(keys, genuine, EVERY)
    assert not verify_signature(keys, genuine, frozenset({"HS256"}))


def test_hmac_round_trip_and_wrong_secret(tmp_path: Path) -> None:
    keys = load_keys(Settings(jwt_secret_key="s" * 40, data_dir=str(tmp_path)))
    token = read_token(sign(keys, {"sub": "x", "n": 1}))
    assert token is not None
    assert token.claims == {"sub": "x", "n": 1}
    assert verify_signature(keys, token, EVERY)
    other = read_token(_hmac(b"t" * 40, {"sub": "x"}))
    assert other is not None
    assert not verify_signature(keys, other, EVERY)


def test_a_development_secret_is_generated_once_with_0600(tmp_path: Path) -> None:
    first = load_keys(Settings(data_dir=str(tmp_path)))
    again = load_keys(Settings(data_dir=str(tmp_path)))
    assert first.generated
    assert (tmp_path / "jwt-secret").stat().st_mode & 0o777 == 0o600
    token = read_token(sign(first, {"sub": "x"}))
    assert token is not None
    assert verify_signature(again, token, EVERY)


def test_read_token_refuses_what_is_not_a_jwt() -> None:
    assert read_token("a.b") is None
    assert read_token("!!!.###.$$$") is None
    assert read_token(_hmac(b"k" * 32, {"a": 1}).replace(".", "..", 1)) is None
