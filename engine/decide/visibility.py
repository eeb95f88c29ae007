"""The team-visibility truth table: which catalog items a caller may see.

The answer depends on the shape of the token's `teams` claim (absent, null, empty, a list)
and on whether the user is a platform admin. The two editions of the reference guide
disagree on two cells, which is exactly why the table is data. Session tokens follow their
own rule: their teams come from the store on every request. No I/O in this module.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Final

from engine.decide.model import Access, RuleRef, TeamsClaim, User, Visibility
from engine.errors import Location, PolicyError

if TYPE_CHECKING:
    from engine.policy.load import Document

__all__ = [
    "TeamsClaim",
    "VisibilityTable",
    "build_visibility_table",
    "resolve_visibility",
]


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
    narrow_api_tokens: bool = False


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
    narrow = bool(doc.spec.get("apiTokens", {}).get("narrowToMemberships", False))
    return VisibilityTable(MappingProxyType(cells), session, anonymous, narrow), []


def resolve_visibility(
    table: VisibilityTable, shape: TeamsClaim, listed: frozenset[str], user: User, session: bool
) -> tuple[Visibility, RuleRef]:
    """Apply the session rule or the truth table to one authenticated caller.

    `shape` and `listed` describe the token's `teams` claim; callers without a token
    (basic or proxy authentication) count as sessions, since only the store knows their
    teams.
    """
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
    if table.narrow_api_tokens and not user.admin:
        # SECURITY: a listed team the user has since left no longer counts.
        listed = listed & user.teams
    return _visibility(cell.access, listed), cell.ref


_TEAMS: Final = Access.TEAM_AND_PUBLIC
_WITHOUT_TEAMS: Final = {access: Visibility(access) for access in Access}
_tuple_new = tuple.__new__  # skips the NamedTuple's Python-level `__new__`, as in `decide`


def _visibility(access: Access, teams: frozenset[str]) -> Visibility:
    if access is _TEAMS:
        visibility: Visibility = _tuple_new(Visibility, (access, teams))
        return visibility
    return _WITHOUT_TEAMS[access]
