"""The team-visibility truth table: which catalog items a caller may see.

The answer depends on the shape of the token's `teams` claim (absent, null, empty, a list)
and on whether the user is a platform admin. The two editions of the reference guide
disagree on two cells, which is exactly why the table is data. Session tokens follow their
own rule: their teams come from the store on every request. No I/O in this module.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType
from typing import Any

from engine.decide.model import Access, RuleRef, User, Visibility
from engine.errors import Location, PolicyError
from engine.policy.load import Document

__all__ = [
    "TeamsClaim",
    "VisibilityTable",
    "build_visibility_table",
    "resolve_visibility",
    "teams_claim_shape",
]


class TeamsClaim(StrEnum):
    """The four shapes a `teams` claim can take; each gets its own row of the table."""

    ABSENT = "absent"
    NULL = "null"
    EMPTY = "empty"
    LISTED = "listed"


@dataclass(frozen=True, slots=True)
class Cell:
    access: Access
    ref: RuleRef


@dataclass(frozen=True, slots=True)
class SessionRule:
    narrow_by_claim: bool
    admin_access: Access
    member_access: Access
    ref: RuleRef


@dataclass(frozen=True, slots=True)
class VisibilityTable:
    cells: Mapping[tuple[TeamsClaim, bool], Cell]
    session: SessionRule | None
    anonymous: RuleRef


def build_visibility_table(doc: Document) -> tuple[VisibilityTable | None, list[PolicyError]]:
    """Compile the table, insisting that every cell is defined exactly once."""
    errors: list[PolicyError] = []
    cells: dict[tuple[TeamsClaim, bool], Cell] = {}
    places: dict[tuple[TeamsClaim, bool], Location] = {}
    for i, raw in enumerate(doc.spec["cells"]):
        key = (TeamsClaim(raw["teamsClaim"]), bool(raw["admin"]))
        where = doc.locate(["cells", i, "id"])
        if key in cells:
            errors.append(
                PolicyError(
                    where,
                    "visibility.cell_duplicate",
                    f"cell `teamsClaim: {key[0]}, admin: {str(key[1]).lower()}` is already defined at {places[key]}",
                )
            )
            continue
        cells[key] = Cell(Access(raw["access"]), RuleRef(f"visibility/{raw['id']}", where))
        places[key] = where
    for shape in TeamsClaim:
        for admin in (True, False):
            if (shape, admin) not in cells:
                errors.append(
                    PolicyError(
                        doc.locate(["cells"], key=True),
                        "visibility.cell_missing",
                        f"no cell for `teamsClaim: {shape}, admin: {str(admin).lower()}`",
                    )
                )
    session = None
    raw_session = doc.spec.get("sessionTokens")
    if raw_session is not None and raw_session["resolveTeamsServerSide"]:
        session = SessionRule(
            narrow_by_claim=bool(raw_session["narrowByClaim"]),
            admin_access=Access(raw_session["adminAccess"]),
            member_access=Access(raw_session["memberAccess"]),
            ref=RuleRef("visibility/session-tokens", doc.locate(["sessionTokens"], key=True)),
        )
    if errors:
        return None, errors
    anonymous = RuleRef("visibility/anonymous", doc.locate(["cells"], key=True))
    return VisibilityTable(MappingProxyType(cells), session, anonymous), []


def teams_claim_shape(claims: Mapping[str, Any]) -> TeamsClaim | None:
    """Classify the `teams` claim; None when it is not a list of strings or null."""
    if "teams" not in claims:
        return TeamsClaim.ABSENT
    teams = claims["teams"]
    if teams is None:
        return TeamsClaim.NULL
    if isinstance(teams, list) and all(isinstance(t, str) for t in teams):
        return TeamsClaim.LISTED if teams else TeamsClaim.EMPTY
    return None


def resolve_visibility(
    table: VisibilityTable,
    claims: Mapping[str, Any],
    shape: TeamsClaim,
    user: User,
    *,
    session: bool,
) -> tuple[Visibility, RuleRef]:
    """Apply the session rule or the truth table to one authenticated caller."""
    listed = frozenset(claims["teams"]) if shape is TeamsClaim.LISTED else frozenset()
    if session and table.session is not None:
        rule = table.session
        teams = user.teams
        narrowed = rule.narrow_by_claim and shape is TeamsClaim.LISTED
        if narrowed:
            # SECURITY: a claim can only narrow the real memberships, never add to them.
            teams = teams & listed
        if user.admin and not narrowed:
            return _visibility(rule.admin_access, teams), rule.ref
        return _visibility(rule.member_access, teams), rule.ref
    cell = table.cells[(shape, user.admin)]
    return _visibility(cell.access, listed), cell.ref


def _visibility(access: Access, teams: frozenset[str]) -> Visibility:
    return Visibility(access, teams if access is Access.TEAM_AND_PUBLIC else frozenset())
