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
import tempfile
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from engine.settings import SettingsError

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
    """The sealer for AUTH_ENCRYPTION_SECRET, or for the data folder's own secret.

    Raises:
        SettingsError: the data folder's secret file is empty.
    """
    if secret:
        return Sealer(secret)
    path = data_dir / "encryption-secret"
    if not path.exists():
        _generate(path)
    stored = path.read_text().strip()
    if not stored:
        # A key anyone could derive would seal nothing.
        raise SettingsError(f"{path} is empty: remove it to generate a secret, or set AUTH_ENCRYPTION_SECRET")
    return Sealer(stored)


def _generate(path: Path) -> None:
    """A new secret, written privately and linked into place only once whole: of two
    instances starting on one data folder, the first link wins and both read that one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, draft = tempfile.mkstemp(dir=path.parent, prefix=".encryption-secret.")  # mode 0600
    try:
        with os.fdopen(descriptor, "w") as out:
            out.write(secrets.token_urlsafe(48))
        try:
            os.link(draft, path)
        except FileExistsError:
            return
        log.warning("no AUTH_ENCRYPTION_SECRET set: generated one in %s", path)
    finally:
        os.unlink(draft)
