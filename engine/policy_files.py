"""The policy as the gateway runs it: its folders, read and built with the environment.

Kept free of the web stack so the server can build the snapshot on a second thread while
the first imports Quart and tortoise: Hyperscan's compile releases the GIL, so the two
overlap and start-up gets shorter.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from engine.policy import Snapshot, compile_policy
from engine.schemas import validators
from engine.sources import read_layer

__all__ = ["gateway_snapshot"]


def gateway_snapshot(paths: Sequence[str]) -> Snapshot:
    """Read and compile the policy layers as the gateway runs them.

    Raises:
        PolicyErrors: the policy does not build.
        MissingPath: a policy folder is gone.
    """
    layers = [read_layer([path], without_tests=True) for path in paths]
    return compile_policy(layers, validators=validators(), env=os.environ).snapshot
