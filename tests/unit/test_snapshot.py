"""The snapshot is immutable, and its version names exactly the effective policy."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

import pytest

from engine.policy import Build, Snapshot, Source
from tests.conftest import POLICIES, BuildFn


def _walk(value: Any, seen: set[int], path: str) -> list[str]:
    """Paths to every mutable container reachable from `value`."""
    if id(value) in seen or isinstance(value, str | bytes | int | float | bool | type(None)):
        return []
    seen.add(id(value))
    if type(value).__module__.startswith("hyperscan"):
        return []  # the compiled database: opaque, and never exposed for writing
    if isinstance(value, list | dict | set | bytearray):
        return [path]
    found: list[str] = []
    if isinstance(value, MappingProxyType | Mapping):
        for key, item in value.items():
            found += _walk(item, seen, f"{path}[{key!r}]")
    elif isinstance(value, tuple | frozenset):
        for i, item in enumerate(value):
            found += _walk(item, seen, f"{path}[{i}]")
    elif dataclasses.is_dataclass(value):
        params = getattr(type(value), "__dataclass_params__", None)
        if params is not None and not params.frozen:
            found.append(f"{path} (mutable dataclass {type(value).__name__})")
        for field in dataclasses.fields(value):
            found += _walk(getattr(value, field.name), seen, f"{path}.{field.name}")
    return found


def test_snapshot_holds_no_mutable_container(snapshot: Snapshot) -> None:
    assert _walk(snapshot, set(), "snapshot") == []


def test_snapshot_fields_cannot_be_assigned(snapshot: Snapshot) -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        snapshot.version = "x"  # type: ignore[misc]


def test_the_immutability_walk_finds_a_list() -> None:
    @dataclasses.dataclass(frozen=True)
    class Holder:
        items: Any

    assert _walk(Holder(({"a": [1]},)), set(), "h") == ["h.items[0]"]


def test_same_sources_same_version(build: BuildFn, default_build: Build) -> None:
    assert build().snapshot.version == default_build.snapshot.version
    assert len(default_build.snapshot.version) == 64


def _with_sizes(text: str) -> list[Source]:
    return [Source("overlay/sizes.yaml", text)]


def test_comments_and_layout_do_not_change_the_version(build: BuildFn, default_build: Build) -> None:
    original = (POLICIES / "sizes.yaml").read_text()
    reformatted = "# a new comment\n\n" + original.replace("maxBytes: 10240\n", "maxBytes:    10240   # ten KiB\n")
    assert reformatted != original
    assert build(_with_sizes(reformatted)).snapshot.version == default_build.snapshot.version


def test_a_changed_value_changes_the_version(build: BuildFn, default_build: Build) -> None:
    changed = (POLICIES / "sizes.yaml").read_text().replace("maxBytes: 10240\n", "maxBytes: 20480\n")
    assert build(_with_sizes(changed)).snapshot.version != default_build.snapshot.version


def test_an_override_changes_the_version(build: BuildFn, default_build: Build) -> None:
    overridden = build(env={"CONTENT_MAX_PROMPT_SIZE": "20480"})
    assert overridden.snapshot.version != default_build.snapshot.version
    assert overridden.snapshot.content.scanners["prompt"].max_bytes == 20480


def test_unrelated_environment_does_not_change_the_version(build: BuildFn, default_build: Build) -> None:
    assert build(env={"HOME": "/root", "PATH": "/bin"}).snapshot.version == default_build.snapshot.version


def test_every_rule_id_has_an_origin(snapshot: Snapshot) -> None:
    for rule_id, where in snapshot.origin.items():
        assert where.file.startswith(str(POLICIES)), rule_id
        assert where.line > 0
