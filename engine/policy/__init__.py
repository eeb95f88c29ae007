"""Policy text in, compiled snapshot out.

`compile_policy` runs the load, check and build passes over layers of sources and returns
the snapshot together with what the CLI reports about it; `build_snapshot` is the short
form for callers that only want the snapshot. Pure: the caller reads files and the
environment and passes them in.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from engine.policy.build import ERROR_LIMIT, PASSES, Build, compile_policy
from engine.policy.check import make_validators
from engine.policy.load import API_VERSION, KINDS, Document, Source
from engine.policy.overrides import OVERRIDES, Applied
from engine.policy.snapshot import Snapshot

__all__ = [
    "API_VERSION",
    "ERROR_LIMIT",
    "KINDS",
    "OVERRIDES",
    "PASSES",
    "Applied",
    "Build",
    "Document",
    "Snapshot",
    "Source",
    "build_snapshot",
    "compile_policy",
    "make_validators",
]


def build_snapshot(
    sources: Sequence[Source],
    *,
    validators: Mapping[str, Any],
    env: Mapping[str, str] | None = None,
) -> Snapshot:
    """Build the snapshot of one policy set.

    Raises:
        PolicyErrors: the sources do not make a valid policy.
    """
    return compile_policy([sources], validators=validators, env=env).snapshot
