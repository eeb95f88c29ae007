"""Visibility never grants more than the caller's own teams plus public items.

Whatever the `teams` claim says, for API tokens and session tokens, admin or not: the
result is either the admin's unrestricted view (only where the table says so) or a set
of teams that is inside what the claim or the real memberships allow.
"""

from __future__ import annotations

import hypothesis.strategies as st
from hypothesis import HealthCheck, given, settings

from engine.decide import Access, User, Visibility
from engine.decide.model import TeamsClaim
from engine.decide.visibility import resolve_visibility
from engine.policy import Snapshot

team = st.sampled_from(["a", "b", "c", "ops", "sec"])
teams = st.frozensets(team, max_size=4)


def _shape(listed: frozenset[str] | None, absent: bool) -> TeamsClaim:
    if absent:
        return TeamsClaim.ABSENT
    if listed is None:
        return TeamsClaim.NULL
    return TeamsClaim.LISTED if listed else TeamsClaim.EMPTY


@settings(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    claim=st.one_of(st.none(), teams),
    absent=st.booleans(),
    memberships=teams,
    admin=st.booleans(),
    session=st.booleans(),
)
def test_never_wider_than_own_teams(
    snapshot: Snapshot,
    claim: frozenset[str] | None,
    absent: bool,
    memberships: frozenset[str],
    admin: bool,
    session: bool,
) -> None:
    shape = _shape(claim, absent)
    user = User("u@example.com", admin=admin, teams=memberships)
    seen, _ = resolve_visibility(snapshot.visibility, shape, claim or frozenset(), user, session)
    if seen.access is Access.UNRESTRICTED:
        assert admin, "only admins are ever unrestricted"
        return
    if seen.access is Access.PUBLIC_ONLY:
        assert not seen.teams
        return
    if session:
        assert seen.teams <= memberships, "a session sees at most its real teams"
    else:
        assert seen.teams <= (claim or frozenset()), "an API token sees at most its claimed teams"


def test_an_absent_claim_never_unlocks_an_admin_in_the_default_table(snapshot: Snapshot) -> None:
    admin = User("root@example.com", admin=True, teams=frozenset({"ops"}))
    seen, rule = resolve_visibility(snapshot.visibility, TeamsClaim.ABSENT, frozenset(), admin, False)
    assert seen.access is Access.PUBLIC_ONLY
    assert rule.id == "visibility/absent-admin"


@given(
    access=st.sampled_from(list(Access)),
    seen=teams,
    item=st.tuples(st.sampled_from(["public", "team", "private"]), st.none() | team, st.sampled_from(["me", "you"])),
)
def test_one_item_is_shown_as_the_catalog_filter_would_show_it(
    access: Access, seen: frozenset[str], item: tuple[str, str | None, str]
) -> None:
    """The single-item answer streams use matches the catalog's query filter, clause by clause."""
    visibility, team_id, owner = item
    expected = (
        access is Access.UNRESTRICTED
        or visibility == "public"
        or (access is Access.TEAM_AND_PUBLIC and visibility == "team" and team_id in seen)
        or (access is Access.TEAM_AND_PUBLIC and visibility == "private" and owner == "me")
    )
    assert Visibility(access, seen).shows(visibility, team_id, owner, "me") is expected
    assert not Visibility(access, seen).shows("private", None, "me", None) or access is Access.UNRESTRICTED


@given(access=st.sampled_from(list(Access)), seen=teams)
def test_the_teams_a_caller_reaches_follow_its_access_not_the_teams_it_was_given(
    access: Access, seen: frozenset[str]
) -> None:
    """Team pages, catalog writes and MCP look-ups all ask `reach`: a public-only caller
    given teams reaches none of them, and an unrestricted one reaches every team."""
    visibility = Visibility(access, seen)
    expected = {Access.UNRESTRICTED: None, Access.TEAM_AND_PUBLIC: seen, Access.PUBLIC_ONLY: frozenset()}[access]
    assert visibility.reach == expected
    assert visibility.sees_own_private is (access is Access.TEAM_AND_PUBLIC)
