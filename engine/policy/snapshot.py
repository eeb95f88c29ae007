"""The compiled policy: one immutable value that every request is judged against.

A snapshot is built once per policy version and never changed; a reload builds a new one
and swaps a single reference. Everything in it is frozen (dataclasses, tuples,
frozensets, read-only mappings) except the Hyperscan databases, which are compiled once
and only ever scanned, and the decision memo, which only ever repeats what `decide`
answered for this snapshot (see `engine.decide.memo`). No I/O in this module.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from engine.decide.access import AccessTable
from engine.decide.content import ContentTable
from engine.decide.limits import LimitTable
from engine.decide.memo import DecisionMemo
from engine.decide.tokens import TokenTable
from engine.decide.visibility import VisibilityTable
from engine.errors import Location, PolicyError
from engine.policy.surface import NetworkTable, WellKnownTable

__all__ = ["Snapshot"]


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Every table the decision core and the shell read, plus how to explain them.

    `version` is a SHA-256 over the effective documents (overrides applied, comments and
    formatting ignored), so the same policy always has the same version on every worker.
    `origin` maps each rule id to where it is written.
    """

    version: str
    access: AccessTable
    tokens: TokenTable
    visibility: VisibilityTable
    content: ContentTable
    limits: LimitTable
    network: NetworkTable
    well_known: WellKnownTable
    origin: Mapping[str, Location]
    warnings: tuple[PolicyError, ...]
    memo: DecisionMemo = field(default_factory=DecisionMemo, compare=False, repr=False)
