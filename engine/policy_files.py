"""The policy as the gateway runs it: its folders, read and built with the environment.

Kept free of the web stack so the server can build the snapshot on a second thread while
the first imports Quart and tortoise: Hyperscan's compile releases the GIL, so the two
overlap and start-up gets shorter.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from typing import NamedTuple

from engine.policy import Snapshot, Source, compile_policy
from engine.schemas import validators
from engine.sources import read_layer

__all__ = ["BuiltPolicy", "build_policy", "load_policy", "read_policy", "sources_digest"]

Layers = list[list[Source]]


class BuiltPolicy(NamedTuple):
    """A snapshot with the digest of the files it was built from (see `sources_digest`),
    so the first reload of unchanged files is as cheap as every later one."""

    snapshot: Snapshot
    digest: str


def read_policy(paths: Sequence[str]) -> Layers:
    """The gateway's policy files, one layer per configured path.

    Raises:
        PolicyErrors: a file is not readable UTF-8 text.
        MissingPath: a policy folder is gone.
    """
    return [read_layer([path], without_tests=True) for path in paths]


def build_policy(layers: Layers) -> Snapshot:
    """Compile `layers` with this process's environment overrides.

    Raises:
        PolicyErrors: the policy does not build.
    """
    return compile_policy(layers, validators=validators(), env=os.environ).snapshot


def load_policy(paths: Sequence[str]) -> BuiltPolicy:
    """Read and compile the policy layers as the gateway runs them.

    Raises:
        PolicyErrors: the policy does not build.
        MissingPath: a policy folder is gone.
    """
    layers = read_policy(paths)
    return BuiltPolicy(build_policy(layers), sources_digest(layers))


def sources_digest(layers: Layers) -> str:
    """A fingerprint of everything a build reads that can change while a worker runs.

    The build is pure and a process's environment is fixed, so equal digests mean an
    equal snapshot: a reload that finds the digest in force can skip the half-second
    compile. That is what lets one reload reach every worker by signalling all of them,
    the one that asked included.
    """
    digest = hashlib.sha256()
    for layer in layers:
        digest.update(b"\x1d")
        for source in layer:
            for part in (source.label, source.text):
                encoded = part.encode()
                digest.update(len(encoded).to_bytes(8, "big") + encoded)
    return digest.hexdigest()
