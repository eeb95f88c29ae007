"""Waiting for what a server does in the background, with a deadline that fails the test.

A process starting, a worker reloading, a use recorded after the answer went out: the
test can only ask again until it holds. Asking without a deadline hangs CI; a deadline
that falls through silently moves the failure to a later, less telling assertion.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

__all__ = ["eventually"]

T = TypeVar("T")


def eventually(probe: Callable[[], T], *, within: float, failure: str | Callable[[], str], every: float = 0.05) -> T:
    """The first truthy answer of `probe`, asked every `every` seconds for `within` seconds.

    `failure` is the message of the AssertionError raised when time runs out; a callable
    is asked only then, for messages that quote a log. An exception from `probe` ends the
    wait at once, so a probe can fail early (a server that exited will not start).
    """
    deadline = time.monotonic() + within
    while not (answer := probe()):
        if time.monotonic() >= deadline:
            raise AssertionError(failure() if callable(failure) else failure)
        time.sleep(every)
    return answer
