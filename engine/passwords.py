"""Password hashing with scrypt, a memory-hard KDF from the standard library.

scrypt with n=2**14, r=8 needs 16 MiB per guess, which makes GPU cracking of a leaked
table expensive while a login stays around 50 ms. The stored form names its parameters so
they can be raised later without invalidating existing hashes.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from typing import Final

__all__ = ["TIMING_HASH", "hash_password", "verify_password"]

_N: Final = 2**14
_R: Final = 8
_P: Final = 1
_LENGTH: Final = 32

TIMING_HASH: Final = "scrypt$16384$8$1$x-ScGz9TuLlWMcjjgt7xKg$WeUwV7yVC-yqgBEBPc2_nqNswP4HtnU6pHMvueX7me8"
"""The hash of a random password nobody kept: checked for unknown emails so that both
answers take one scrypt run and timing does not reveal which accounts exist."""


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=_N, r=_R, p=_P, dklen=_LENGTH)
    return f"scrypt${_N}${_R}${_P}${_b64(salt)}${_b64(digest)}"


def verify_password(password: str, stored: str) -> bool:
    """Compare in constant time; an unreadable stored hash never verifies."""
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        expected = base64.urlsafe_b64decode(digest + "==")
        actual = hashlib.scrypt(
            password.encode(),
            salt=base64.urlsafe_b64decode(salt + "=="),
            n=int(n),
            r=int(r),
            p=int(p),
            dklen=len(expected),
            maxmem=2**26,
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(actual, expected)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()
