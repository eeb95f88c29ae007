"""The team-visibility truth table end to end, for both editions' policies.

Each cell is a real token sent to a real gateway; `/auth/me` reports what the caller may
see. The legacy run lays `examples/legacy-v0.9` over the default set: same code, other
data, other answers in exactly the two cells the editions disagree on.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import EXAMPLES, POLICIES
from tests.integration.conftest import start_server, stop_server
from tests.integration.servers import ADMIN_EMAIL, Gateway, claims, mint

MEMBER = "member@example.com"
ABSENT: Any = object()

# (teams claim, admin?) -> (access, teams) for v1.0-RC-3; the v0.9 differences are below.
CELLS = {
    (ABSENT, True): ("public_only", []),
    (ABSENT, False): ("public_only", []),
    (None, True): ("unrestricted", []),
    (None, False): ("public_only", []),
    ((), True): ("public_only", []),
    ((), False): ("public_only", []),
    (("blue",), True): ("team_and_public", ["blue"]),
    (("blue",), False): ("team_and_public", ["blue"]),
}
LEGACY = {**CELLS, (ABSENT, True): ("unrestricted", [])}


@pytest.fixture(scope="module", params=["v1.0-rc3", "v0.9"])
def edition(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, Gateway, str]]:
    """A gateway for one edition, with a member of team `blue` (whose id is made here)."""
    paths = str(POLICIES) if request.param == "v1.0-rc3" else f"{POLICIES},{EXAMPLES / 'legacy-v0.9' / 'policies'}"
    server = start_server(
        tmp_path_factory.mktemp("tt"),
        POLICY_PATHS=paths,
        MCPGATEWAY_ADMIN_API_ENABLED="true",
        ALLOW_TEAM_CREATION="true",
    )
    admin = server.client(server.login())
    assert admin.post("/admin/users", json={"email": MEMBER, "password": "member password 12"}).status_code == 201
    blue = admin.post("/teams", json={"name": "blue"}).json()["id"]
    assert admin.post(f"/teams/{blue}/members", json={"email": MEMBER}).status_code == 201
    yield request.param, server, blue
    stop_server(server)


@pytest.mark.parametrize(("teams", "admin"), list(CELLS), ids=[f"{t!r}-{'admin' if a else 'member'}" for t, a in CELLS])
def test_cell(edition: tuple[str, Gateway, str], teams: Any, admin: bool) -> None:
    name, server, blue = edition
    real = [blue if t == "blue" else t for t in teams] if isinstance(teams, tuple) else teams
    extra = {} if teams is ABSENT else {"teams": real}
    token = mint(claims(ADMIN_EMAIL if admin else MEMBER, **extra))
    seen = server.client(token).get("/auth/me").json()["visibility"]
    access, listed = (LEGACY if name == "v0.9" else CELLS)[(teams, admin)]
    assert (seen["access"], seen["teams"]) == (access, [blue if t == "blue" else t for t in listed])


def test_listed_teams_count_only_while_the_member_belongs_to_them(edition: tuple[str, Gateway, str]) -> None:
    _, server, blue = edition
    token = mint(claims(MEMBER, teams=[blue, "never-joined"]))
    assert server.client(token).get("/auth/me").json()["visibility"]["teams"] == [blue]
