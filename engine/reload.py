"""Hold the current snapshot and replace it safely.

Requests read `Engine.current` once and keep that snapshot to the end, so swapping the
reference mid-request cannot mix two policies. A reload builds the new snapshot completely
before assigning it; if the build fails, the old snapshot stays and the errors are returned.
Building is CPU work, so the server calls `reload` from a worker thread.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from engine.errors import PolicyErrors
from engine.policy import Snapshot, Source, compile_policy

__all__ = ["Engine"]


class Engine:
    """The one mutable thing in the decision path: a reference to the current snapshot."""

    def __init__(self, snapshot: Snapshot) -> None:
        self._current = snapshot

    @property
    def current(self) -> Snapshot:
        return self._current

    def reload(
        self,
        layers: Sequence[Sequence[Source]],
        *,
        validators: Mapping[str, Any],
        env: Mapping[str, str] | None = None,
        now: float | None = None,
        clock: Callable[[], float] | None = None,
    ) -> PolicyErrors | None:
        """Build from `layers` and swap it in; on failure keep the old snapshot and return why."""
        try:
            build = compile_policy(layers, validators=validators, env=env, now=now, clock=clock)
        except PolicyErrors as errors:
            return errors
        self.swap(build.snapshot)
        return None

    def swap(self, snapshot: Snapshot) -> None:
        """Put a snapshot built elsewhere (a worker thread) in force."""
        # INVARIANT: one reference assignment; readers see the old snapshot or the new one.
        self._current = snapshot
