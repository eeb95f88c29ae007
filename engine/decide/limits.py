"""Rate limits: request budgets per token, user, address, server or tool.

The shell counts requests in fixed windows aligned to the epoch and passes the counts in
the context; this module only does the arithmetic, so the same counts always give the
same answer. No I/O in this module.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from engine.decide.model import Denial, Reason, RuleRef
from engine.errors import PolicyError

if TYPE_CHECKING:
    from engine.policy.load import Document

__all__ = ["Bucket", "LimitTable", "build_limit_table", "check_rate"]


@dataclass(frozen=True, slots=True)
class Bucket:
    """One budget: at most `limit` requests per `window_s` for each value of `key`."""

    id: str
    key: str
    limit: int
    window_s: int
    ref: RuleRef


@dataclass(frozen=True, slots=True)
class LimitTable:
    enabled: bool
    buckets: tuple[Bucket, ...]


def build_limit_table(doc: Document) -> tuple[LimitTable, list[PolicyError]]:
    """Compile `RateLimits`; bucket ids must be unique because the shell counts by id."""
    errors: list[PolicyError] = []
    buckets: list[Bucket] = []
    for i, raw in enumerate(doc.spec.get("buckets", [])):
        where = doc.locate(["buckets", i, "id"])
        if any(b.id == raw["id"] for b in buckets):
            errors.append(PolicyError(where, "ref.duplicate_id", f"rate-limit bucket `{raw['id']}` is defined twice"))
            continue
        buckets.append(
            Bucket(
                raw["id"],
                raw["key"],
                raw["limit"],
                raw["windowSeconds"],
                RuleRef(f"ratelimits/{raw['id']}", where),
            )
        )
    return LimitTable(bool(doc.spec.get("enabled", False)), tuple(buckets)), errors


def check_rate(table: LimitTable, counts: Mapping[str, int], now: float) -> tuple[Denial, int] | None:
    """The first exhausted bucket and the seconds until its window resets, if any."""
    if not table.enabled:
        return None
    for bucket in table.buckets:
        if counts.get(bucket.id, 0) > bucket.limit:
            retry_after = bucket.window_s - int(now) % bucket.window_s
            message = f"more than {bucket.limit} requests in {bucket.window_s} s per {bucket.key}"
            return (Reason.RATE_LIMITED, bucket.ref, message), retry_after
    return None
