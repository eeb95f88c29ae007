"""The in-process rate counters: a flood of distinct keys must not reset anyone's budget."""

from __future__ import annotations

import asyncio

from engine.cache import LocalCache


async def _count_after_a_flood() -> tuple[int, int, int]:
    cache = LocalCache(0)
    now = 10_000.0
    for _ in range(3):
        await cache.count("per-ip:203.0.113.7", 60, now)
    # Keys from a window that has ended fill the counters; the next new key overflows them.
    for i in range(100_000):
        await cache.count(f"per-ip:old-{i}", 60, now - 120)
    fresh = await cache.count("per-ip:198.51.100.1", 60, now, by=5)
    kept = await cache.count("per-ip:203.0.113.7", 60, now)
    return kept, fresh, len(cache.counters)


def test_ended_windows_are_dropped_before_live_counts() -> None:
    kept, fresh, size = asyncio.run(_count_after_a_flood())
    assert kept == 4
    assert fresh == 5
    assert size == 2
