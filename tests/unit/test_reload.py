"""A reload swaps the snapshot only when the new policy builds; otherwise nothing changes."""

from __future__ import annotations

import asyncio
import logging
import threading
from types import SimpleNamespace
from typing import Any

import pytest

from engine.policy import Build, Source
from engine.reload import Engine
from engine.schemas import validators
from engine.web.reloading import start_reload_triggers
from tests.conftest import POLICIES, default_layer


def test_good_reload_swaps_the_snapshot(default_build: Build) -> None:
    engine = Engine(default_build.snapshot)
    sizes = (POLICIES / "sizes.yaml").read_text().replace("maxBytes: 10240\n", "maxBytes: 20480\n")
    errors = engine.reload([default_layer(), [Source("new/sizes.yaml", sizes)]], validators=validators())
    assert errors is None
    assert engine.current is not default_build.snapshot
    assert engine.current.content.scanners["prompt"].max_bytes == 20480


def test_bad_reload_keeps_the_old_snapshot_and_says_where(default_build: Build) -> None:
    engine = Engine(default_build.snapshot)
    broken = (POLICIES / "sizes.yaml").read_text().replace("maxBytes: 10240\n", "maxBytes: ten\n")
    errors = engine.reload([default_layer(), [Source("new/sizes.yaml", broken)]], validators=validators())
    assert errors is not None
    assert engine.current is default_build.snapshot
    first = errors.errors[0]
    assert (first.where.file, first.code) == ("new/sizes.yaml", "schema.type")
    assert first.where.line == broken.splitlines().index("      maxBytes: ten") + 1


def test_a_request_keeps_the_snapshot_it_started_with(default_build: Build) -> None:
    engine = Engine(default_build.snapshot)
    held = engine.current
    assert engine.reload([default_layer()], validators=validators()) is None
    assert held is default_build.snapshot
    assert engine.current.version == held.version


def test_a_process_that_cannot_take_sighup_says_so(caplog: pytest.LogCaptureFixture) -> None:
    """Off the main thread the loop cannot take signals: an operator's SIGHUP would go
    unheard, so the worker warns instead of staying silent."""
    gw: Any = SimpleNamespace(settings=SimpleNamespace(policy_watch=False), background=set())

    async def start() -> None:
        start_reload_triggers(gw)

    with caplog.at_level(logging.WARNING, logger="policygate"):
        thread = threading.Thread(target=asyncio.run, args=(start(),))
        thread.start()
        thread.join(10)
    assert any("SIGHUP cannot reload the policy" in r.getMessage() for r in caplog.records), caplog.text
    assert not gw.background, "no reload is started for a signal that cannot come"
