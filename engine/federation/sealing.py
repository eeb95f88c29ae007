"""Upstream credentials at rest: sealed with Fernet (AES-128-CBC + HMAC-SHA256).

The key comes from AUTH_ENCRYPTION_SECRET, stretched with HKDF so any long random string
works; outside production a random one is generated once in the data folder (0600).
Sealed values are opaque to the API: they are never returned, only used to call out.
"""

from __future__ import annotations

import base64
import logging
import os
import secrets
import stat
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

__all__ = ["Sealer", "sealer_for"]

log = logging.getLogger("policygate")


class Sealer:
    def __init__(self, secret: str) -> None:
        key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"policygate upstream credentials").derive(
            secret.encode()
        )
        self._fernet = Fernet(base64.urlsafe_b64encode(key))

    def seal(self, value: str) -> str:
        return self._fernet.encrypt(value.encode()).decode() if value else ""

    def open(self, sealed: str) -> str:
        """The plain value; an empty string for nothing stored or a key that changed."""
        if not sealed:
            return ""
        try:
            return self._fernet.decrypt(sealed.encode()).decode()
        except InvalidToken:
            log.error("stored upstream credentials cannot be decrypted with the current AUTH_ENCRYPTION_SECRET")
            return ""


def sealer_for(secret: str | None, data_dir: Path) -> Sealer:
    if secret:
        return Sealer(secret)
    path = data_dir / "encryption-secret"
    if path.exists():
        return Sealer(path.read_text().strip())
    data_dir.mkdir(parents=True, exist_ok=True)
    value = secrets.token_urlsafe(48)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, stat.S_IRUSR | stat.S_IWUSR)
    with os.fdopen(descriptor, "w") as out:
        out.write(value)
    log.warning("no AUTH_ENCRYPTION_SECRET set: generated one in %s", path)
    return Sealer(value)
