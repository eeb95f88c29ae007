"""Shared fixtures: the default policy set, built once, and helpers to build variants."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import pytest

from engine.policy import Build, Source, compile_policy
from engine.schemas import validators
from engine.sources import read_layer

ROOT = Path(__file__).resolve().parent.parent
POLICIES = ROOT / "policies"
EXAMPLES = ROOT / "examples"

BuildFn = Callable[..., Build]


def default_layer() -> list[Source]:
    return read_layer([POLICIES])


@pytest.fixture(scope="session")
def default_build() -> Build:
    return compile_policy([default_layer()], validators=validators())


@pytest.fixture(scope="session")
def snapshot(default_build: Build):  # type: ignore[no-untyped-def]
    return default_build.snapshot


@pytest.fixture
def build() -> BuildFn:
    """Build the default set with extra layers laid over it and environment overrides."""

    def run(*overlays: Sequence[Source], env: Mapping[str, str] | None = None, now: float | None = None) -> Build:
        return compile_policy([default_layer(), *overlays], validators=validators(), env=env, now=now)

    return run
