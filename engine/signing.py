"""Signing and verifying the gateway's JWTs with jwcrypto.

The decision core judges a token's header and claims; this module only answers whether
the signature is genuine. A key of one family verifies only that family's algorithms, so
an HS256 token "signed" with the RSA public key as an HMAC secret never verifies: the
HMAC family has no key here when RSA keys are configured. Headers that point at keys
elsewhere (`jku`, `x5u`, `jwk`, `x5c`) are refused by policy before verification; this
module never fetches or uses a key from a token.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import os
import secrets
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from jwcrypto import jwk, jws
from jwcrypto.common import JWException, json_encode

from engine.settings import Settings, SettingsError

__all__ = ["Keys", "TokenParts", "load_keys", "read_token", "sign", "verify_signature"]

_FAMILIES: Final = {
    "HS": ("HS256", "HS384", "HS512"),
    "RS": ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512"),
    "PS": ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512"),
    "ES": ("ES256", "ES384", "ES512"),
}
MIN_SECRET_LENGTH: Final = 32


@dataclass(frozen=True, slots=True)
class Keys:
    """The key that signs new tokens and the key that verifies presented ones."""

    algorithm: str
    verifying: jwk.JWK = field(repr=False)
    signing: jwk.JWK | None = field(repr=False)
    generated: bool = False

    @property
    def algorithms(self) -> tuple[str, ...]:
        """Every algorithm this key can verify; the policy's list narrows it further."""
        return _FAMILIES[self.algorithm[:2]]


@dataclass(frozen=True, slots=True)
class TokenParts:
    """A compact JWT split into its decoded header and claims, not yet verified."""

    raw: str
    header: Mapping[str, Any]
    claims: Mapping[str, Any]


def load_keys(settings: Settings) -> Keys:
    """Keys from JWT_SECRET_KEY or the PEM files; a development secret is generated once.

    Raises:
        SettingsError: a key is missing, unreadable or too weak for the environment.
    """
    family = settings.jwt_algorithm[:2]
    if family == "HS":
        secret, generated = settings.jwt_secret_key, False
        if not secret:
            if settings.production:
                raise SettingsError("`JWT_SECRET_KEY` is required in production for HMAC algorithms")
            secret, generated = _development_secret(Path(settings.data_dir)), True
        key = jwk.JWK(kty="oct", k=base64.urlsafe_b64encode(secret.encode()).rstrip(b"=").decode())
        return Keys(settings.jwt_algorithm, key, key, generated)
    public_path, private_path = settings.jwt_public_key_path, settings.jwt_private_key_path
    if not public_path:
        raise SettingsError(f"`JWT_PUBLIC_KEY_PATH` is required for `{settings.jwt_algorithm}`")
    public = _pem(public_path, "JWT_PUBLIC_KEY_PATH")
    private = _pem(private_path, "JWT_PRIVATE_KEY_PATH") if private_path else None
    expected = "EC" if family == "ES" else "RSA"
    for key, name in ((public, "JWT_PUBLIC_KEY_PATH"), (private, "JWT_PRIVATE_KEY_PATH")):
        if key is not None and key.get("kty") != expected:
            raise SettingsError(f"`{name}` holds a {key.get('kty')} key; `{settings.jwt_algorithm}` needs {expected}")
    return Keys(settings.jwt_algorithm, public, private)


def sign(keys: Keys, claims: Mapping[str, Any]) -> str:
    """A compact JWS over `claims` with the configured algorithm.

    Raises:
        SettingsError: no private key is configured, so this gateway cannot issue tokens.
    """
    if keys.signing is None:
        raise SettingsError("no private key is configured (`JWT_PRIVATE_KEY_PATH`): tokens cannot be issued")
    token = jws.JWS(json_encode(dict(claims)).encode())
    token.add_signature(keys.signing, alg=keys.algorithm, protected=json_encode({"alg": keys.algorithm, "typ": "JWT"}))
    return str(token.serialize(compact=True))


def read_token(raw: str) -> TokenParts | None:
    """Decode a compact JWT without trusting it; None when it is not one."""
    parts = raw.split(".")
    if len(parts) != 3 or len(raw) > 16384:
        return None
    try:
        header = json.loads(_unb64(parts[0]))
        claims = json.loads(_unb64(parts[1]))
    except (ValueError, binascii.Error, RecursionError):
        return None
    if not isinstance(header, dict) or not isinstance(claims, dict) or not isinstance(header.get("alg"), str):
        return None
    return TokenParts(raw, header, claims)


def verify_signature(keys: Keys, token: TokenParts, accepted: frozenset[str]) -> bool:
    """Whether `token` carries a valid signature by our key in an accepted algorithm."""
    alg = token.header["alg"]
    if alg not in accepted or alg not in keys.algorithms:
        return False
    verifier = jws.JWS()
    verifier.allowed_algs = [alg]
    try:
        verifier.deserialize(token.raw)
        verifier.verify(keys.verifying, alg=alg)
    except (JWException, ValueError, TypeError):
        return False
    return True


def _unb64(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def _pem(path: str, name: str) -> jwk.JWK:
    try:
        data = Path(path).read_bytes()
        return jwk.JWK.from_pem(data)
    except OSError as err:
        raise SettingsError(f"`{name}`: cannot read `{path}`: {err.strerror}") from err
    except (ValueError, TypeError) as err:
        raise SettingsError(f"`{name}`: `{path}` is not a PEM key") from err


def _development_secret(data_dir: Path) -> str:
    """A random HMAC secret kept in the data folder (0600), so restarts keep tokens valid."""
    path = data_dir / "jwt-secret"
    if path.exists():
        return path.read_text().strip()
    data_dir.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_urlsafe(48)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, stat.S_IRUSR | stat.S_IWUSR)
    with os.fdopen(descriptor, "w") as out:
        out.write(secret)
    logging.getLogger("policygate").warning("no JWT_SECRET_KEY set: generated a development secret in %s", path)
    return secret
