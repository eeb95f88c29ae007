"""What every worker must hear: `list_changed` notifications and answers to relayed questions.

An MCP client's event stream and the question a tool call put to it live in the worker
that serves them; the change to the catalog, or the client's answer, may reach another
worker. With Redis, each worker publishes such an event on one channel and every other
worker delivers it to its own streams and questions. Without Redis there is one worker
per store (see `_open_cache`), and local delivery is all there is.

A lost event costs a client a stale list or a question that times out, never access:
answers are judged by the worker that asked, as they are when it takes them itself.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, Final

__all__ = ["Fanout"]

log = logging.getLogger("policygate.fanout")

_CHANNEL: Final = "policygate:events"
_RETRY_S: Final = 1.0

Deliver = Callable[[dict[str, Any]], None]
Spawn = Callable[[Coroutine[Any, Any, None]], None]


@dataclass
class Fanout:
    """Publishes this worker's events and delivers the other workers' to `deliver`."""

    client: Any
    """A `redis.asyncio.Redis` without a socket timeout: the subscription waits for ever."""
    deliver: Deliver
    spawn: Spawn
    """Runs a coroutine on a task the gateway holds and ends at shutdown."""
    origin: str = field(default_factory=lambda: secrets.token_hex(8))

    def publish(self, event: dict[str, Any]) -> None:
        """Send `event` to the other workers, without making the caller wait for Redis."""
        try:
            text = json.dumps({**event, "origin": self.origin})
        except RecursionError:  # a client's answer nested deeper than the encoder goes
            log.warning("an event too deeply nested to publish was dropped")
            return
        self.spawn(self._send(text))

    async def _send(self, text: str) -> None:
        try:
            await self.client.publish(_CHANNEL, text)
        except Exception as err:  # a lost event is a stale list, not an error to show
            log.warning("could not publish an event to the other workers: %s", type(err).__name__)

    async def listen(self, ready: asyncio.Event | None = None) -> None:
        """Deliver the other workers' events until cancelled, resubscribing after a failure."""
        while True:
            try:
                async with self.client.pubsub(ignore_subscribe_messages=True) as pubsub:
                    await pubsub.subscribe(_CHANNEL)
                    if ready is not None:
                        ready.set()
                    async for message in pubsub.listen():
                        self._take(message.get("data"))
            except asyncio.CancelledError:
                raise
            except Exception as err:
                log.warning("event subscription lost, retrying: %s", type(err).__name__)
                await asyncio.sleep(_RETRY_S)

    def _take(self, raw: Any) -> None:
        try:
            event = json.loads(raw)
        except (TypeError, ValueError):
            return
        if isinstance(event, dict) and event.get("origin") != self.origin:
            self.deliver(event)

    async def close(self) -> None:
        await self.client.aclose()
