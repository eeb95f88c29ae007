"""The data folder's own encryption secret: made once, private, never empty."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from engine.federation.sealing import sealer_for
from engine.settings import SettingsError


def test_the_generated_secret_is_private_and_shared_by_every_later_start(tmp_path: Path) -> None:
    sealed = sealer_for(None, tmp_path).seal("credentials")
    assert sealer_for(None, tmp_path).open(sealed) == "credentials"
    secret = tmp_path / "encryption-secret"
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    assert len(secret.read_text()) >= 48
    assert [p.name for p in tmp_path.iterdir()] == ["encryption-secret"], "no draft is left behind"


def test_an_empty_secret_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "encryption-secret").write_text("\n")
    with pytest.raises(SettingsError, match="is empty"):
        sealer_for(None, tmp_path)
