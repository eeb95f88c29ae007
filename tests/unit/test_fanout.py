"""Publishing to the other workers never fails the request that publishes."""

from __future__ import annotations

from collections.abc import Coroutine
from typing import Any

from engine.web.fanout import Fanout


def test_an_event_nested_too_deep_to_encode_is_dropped_not_raised() -> None:
    spawned: list[Coroutine[Any, Any, None]] = []
    fanout = Fanout(client=None, deliver=lambda event: None, spawn=spawned.append)
    deep: Any = 1
    for _ in range(5000):
        deep = {"a": deep}
    fanout.publish({"kind": "answer", "session": "s", "message": {"id": "q", "result": deep}})
    assert spawned == []
    fanout.publish({"kind": "answer", "session": "s", "message": {"id": "q", "result": {}}})
    assert len(spawned) == 1, "an event that encodes is sent"
    spawned[0].close()
