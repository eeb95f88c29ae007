"""Policy errors with their source locations.

A bad policy must never take effect, and whoever wrote it must be told exactly where it is
wrong. Every problem found while loading, checking or building policy documents is a
`PolicyError` pointing at `file:line:col`; they are collected into one `PolicyErrors`
exception so the author sees all of them at once, sorted by place.

    Exception
    └── PolicyErrors        one or more PolicyError values; never empty

This module is part of the pure core: no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

__all__ = ["Location", "PolicyError", "PolicyErrors", "Severity"]


@dataclass(frozen=True, slots=True, order=True)
class Location:
    """A place in a policy source, 1-based like every editor."""

    file: str
    line: int = 1
    col: int = 1

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}"


class Severity(StrEnum):
    """Errors stop a policy from taking effect; warnings are reported and let it through."""

    ERROR = "error"
    WARNING = "warning"


@dataclass(frozen=True, slots=True, order=True)
class PolicyError:
    """One problem in a policy source; `code` is stable API, `message` is for people."""

    where: Location
    code: str
    message: str
    severity: Severity = Severity.ERROR

    def __str__(self) -> str:
        prefix = "warning: " if self.severity is Severity.WARNING else ""
        return f"{self.where}: {prefix}{self.code}: {self.message}"


class PolicyErrors(Exception):
    """Every error found in a set of policy sources, sorted by location.

    Raised only with at least one error: an empty list would be a bug, so it is refused.
    """

    errors: tuple[PolicyError, ...]

    def __init__(self, errors: Iterable[PolicyError]) -> None:
        collected = tuple(sorted(set(errors)))
        # INVARIANT: a PolicyErrors always carries at least one error.
        if not collected:
            raise ValueError("PolicyErrors needs at least one error")
        self.errors = collected
        super().__init__(str(self))

    def __str__(self) -> str:
        count = len(self.errors)
        head = "1 error occurred:" if count == 1 else f"{count} errors occurred:"
        return "\n".join([head, *map(str, self.errors)])
