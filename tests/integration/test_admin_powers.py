"""A platform admin's powers outside `/admin` take the admin permission the admin API asks.

The store's admin flag stays with every API token the admin makes, however far its
`scopes.permissions` narrow it. Each power below is tried three ways: with an admin's
token that holds what the route needs but not the power's permission (refused, with the
answer an ordinary user gets), with one that also holds it (allowed), and as an ordinary
owner (unaffected). The refused tokens hold the other admin permission, so each power is
shown to take its own.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.integration.conftest import start_server, stop_server
from tests.integration.mcp_client import upstream_server
from tests.integration.servers import ADMIN_EMAIL, ROOT, Gateway, claims, free_port, mint

PASSWORD = "admin powers test password"
USERS = "admin.user_management"
CONFIG = "admin.system_config"
_TEAM_FLAGS = {"ALLOW_TEAM_CREATION": "true", "ALLOW_TEAM_JOIN_REQUESTS": "true", "ALLOW_TEAM_INVITATIONS": "true"}


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    server = start_server(tmp_path_factory.mktemp("powers"), MCPGATEWAY_ADMIN_API_ENABLED="true", **_TEAM_FLAGS)
    yield server
    stop_server(server)


def _user(server: Gateway, email: str, role: str = "developer") -> httpx.Client:
    """A new user's signed-in client."""
    made = server.client(server.login()).post(
        "/admin/users", json={"email": email, "password": PASSWORD, "roles": [role]}
    )
    assert made.status_code == 201, made.text
    return server.client(server.login(email, PASSWORD))


def _admin(server: Gateway, *permissions: str, teams: list[str] | None = None) -> httpx.Client:
    """The platform admin's API token, narrowed to `permissions` (`teams: null` by default)."""
    return server.client(mint(claims(teams=teams, scopes={"permissions": list(permissions)})))


def _answer(response: httpx.Response) -> tuple[int, str]:
    return response.status_code, response.json()["error"]["code"]


def test_revoking_another_users_token_takes_user_management(gw: Gateway) -> None:
    holder = _user(gw, "holder@example.com")
    peer = _user(gw, "peer@example.com")
    jti = holder.post("/tokens", json={"name": "held"}).json()["jti"]
    narrowed = _admin(gw, "tokens.revoke", CONFIG)
    assert _answer(narrowed.delete(f"/tokens/{jti}")) == (404, "not_found")
    assert _answer(peer.delete(f"/tokens/{jti}")) == (404, "not_found"), "as for any other user"
    assert jti not in {r["jti"] for r in gw.client(gw.login()).get("/admin/revocations").json()["items"]}
    own = gw.client(gw.login()).post("/tokens", json={"name": "the admin's own"}).json()["jti"]
    assert narrowed.delete(f"/tokens/{own}").status_code == 204, "its own user's tokens it still revokes"

    allowed = _admin(gw, "tokens.revoke", USERS)
    assert allowed.delete(f"/tokens/{jti}").status_code == 204
    assert jti in {r["jti"] for r in gw.client(gw.login()).get("/admin/revocations").json()["items"]}

    mine = holder.post("/tokens", json={"name": "mine"}).json()["jti"]
    assert holder.delete(f"/tokens/{mine}").status_code == 204


def test_other_peoples_teams_take_user_management(gw: Gateway) -> None:
    lead = _user(gw, "lead@example.com")
    member = _user(gw, "member@example.com")
    hopeful = _user(gw, "hopeful@example.com")
    foreign = lead.post("/teams", json={"name": "Foreign"}).json()["id"]
    joined = lead.post("/teams", json={"name": "Joined"}).json()["id"]
    for email in (ADMIN_EMAIL, "member@example.com"):
        assert lead.post(f"/teams/{joined}/members", json={"email": email}).status_code == 201
    asked = hopeful.post(f"/teams/{joined}/join-requests").json()["id"]
    team_work = ("teams.read", "teams.manage_members")

    narrowed = _admin(gw, *team_work, CONFIG)
    assert {t["id"] for t in narrowed.get("/teams").json()["items"]} == {joined}
    for path in (f"/teams/{foreign}", f"/teams/{foreign}/invitations", f"/teams/{foreign}/join-requests/pending"):
        assert _answer(narrowed.get(path)) == (404, "not_found"), path
    added = narrowed.post(f"/teams/{foreign}/members", json={"email": "member@example.com"})
    assert _answer(added) == (404, "not_found")
    named = _admin(gw, *team_work, CONFIG, teams=[foreign])
    assert (named.get("/teams").json()["items"], _answer(named.get(f"/teams/{foreign}"))) == ([], (404, "not_found"))
    # In a team it belongs to but does not own, the narrowed admin is a member like `member`.
    for client in (narrowed, member):
        assert client.get(f"/teams/{joined}").status_code == 200
        refused = [
            client.get(f"/teams/{joined}/join-requests/pending"),
            client.post(f"/teams/{joined}/join-requests/{asked}/approve"),
            client.get(f"/teams/{joined}/invitations"),
            client.post(f"/teams/{joined}/invitations", json={"email": "hopeful@example.com", "role": "owner"}),
            client.delete(f"/teams/{joined}/members/lead@example.com"),
        ]
        assert {_answer(r) for r in refused} == {(403, "team_owner_required")}
    members = {m["email"]: m["role"] for m in lead.get(f"/teams/{joined}").json()["members"]}
    assert members == {"lead@example.com": "owner", ADMIN_EMAIL: "member", "member@example.com": "member"}
    assert [p["id"] for p in lead.get(f"/teams/{joined}/join-requests/pending").json()["items"]] == [asked]
    assert lead.get(f"/teams/{joined}/invitations").json()["items"] == []

    allowed = _admin(gw, *team_work, USERS)
    assert {foreign, joined} <= {t["id"] for t in allowed.get("/teams").json()["items"]}
    assert allowed.post(f"/teams/{foreign}/members", json={"email": "member@example.com"}).status_code == 201
    assert allowed.post(f"/teams/{joined}/join-requests/{asked}/approve").json()["status"] == "approved"
    sent = allowed.post(f"/teams/{foreign}/invitations", json={"email": "hopeful@example.com"}).json()
    accepted = hopeful.post(f"/invitations/{sent['id']}/accept")
    assert accepted.json() == {"team_id": foreign, "role": "member"}, "an admin's invitation stands"

    assert lead.get(f"/teams/{foreign}/join-requests/pending").status_code == 200
    assert lead.delete(f"/teams/{foreign}/members/member@example.com").status_code == 204


def test_other_owners_items_and_teams_outside_the_token_take_system_config(gw: Gateway) -> None:
    maker = _user(gw, "maker@example.com", "team-admin")
    peer = _user(gw, "maker-peer@example.com", "team-admin")
    team = maker.post("/teams", json={"name": "Makers"}).json()["id"]
    tool = maker.post("/tools", json={"name": "maker-tool", "visibility": "public"}).json()["id"]
    tool_work = ("tools.read", "tools.create", "tools.update", "tools.delete")
    into_team = {"visibility": "team", "team_id": team}

    narrowed = _admin(gw, *tool_work, USERS)
    own = narrowed.post("/tools", json={"name": "admin-public-tool", "visibility": "public"}).json()["id"]
    for client, name in ((narrowed, "admin-team-tool"), (peer, "peer-team-tool")):
        assert _answer(client.patch(f"/tools/{tool}", json={"description": "defaced"})) == (403, "not_owner")
        assert _answer(client.delete(f"/tools/{tool}")) == (403, "not_owner")
        assert _answer(client.post("/tools", json={"name": name, **into_team})) == (403, "not_team_member")
    assert _answer(narrowed.patch(f"/tools/{own}", json=into_team)) == (403, "not_team_member")
    stored = {t["name"]: t for t in maker.get("/tools", params={"limit": 500}).json()["items"]}
    assert (stored["maker-tool"]["description"], stored["admin-public-tool"]["visibility"]) == ("", "public")
    assert not {"admin-team-tool", "peer-team-tool"} & set(stored)

    allowed = _admin(gw, *tool_work, CONFIG)
    assert allowed.patch(f"/tools/{tool}", json={"description": "reviewed"}).json()["description"] == "reviewed"
    assert allowed.post("/tools", json={"name": "admin-team-tool", **into_team}).status_code == 201
    assert allowed.patch(f"/tools/{own}", json=into_team).json()["team_id"] == team
    assert {"admin-team-tool", "admin-public-tool"} <= {
        t["name"] for t in maker.get("/tools", params={"limit": 500}).json()["items"]
    }

    assert maker.post("/tools", json={"name": "maker-team-tool", **into_team}).status_code == 201
    assert maker.patch(f"/tools/{tool}", json={"description": "mine"}).status_code == 200
    assert maker.delete(f"/tools/{tool}").status_code == 204


def test_changed_tools_and_other_owners_gateways_take_system_config(gw: Gateway) -> None:
    """The admin owns one upstream and an ordinary user (who may register upstreams) the
    other; both rewrite their `add` tool, so each approval waits on someone's review."""
    owner = _user(gw, "ops@example.com", "team-admin")
    admin = gw.client(mint(claims(teams=None)))
    ports = free_port(), free_port()
    with upstream_server(None, port=ports[0]) as mine, upstream_server(None, port=ports[1]) as theirs:
        own = admin.post("/gateways", json={"name": "adm", "url": mine, "visibility": "public", "prefix": "adm_"})
        other = owner.post("/gateways", json={"name": "ops", "url": theirs, "visibility": "public", "prefix": "ops_"})
        own_id, other_id = own.json()["id"], other.json()["id"]
    with upstream_server(None, port=ports[0], variant="2"), upstream_server(None, port=ports[1], variant="2"):
        assert admin.post(f"/gateways/{own_id}/refresh").json()["discovered"]["changed"] == ["adm_add"]
        assert owner.post(f"/gateways/{other_id}/refresh").json()["discovered"]["changed"] == ["ops_add"]
        tools = {t["name"]: t for t in admin.get("/tools", params={"limit": 500}).json()["items"]}
        own_tool, other_tool = tools["adm_add"], tools["ops_add"]
        work = ("tools.read", "tools.update", "gateways.update", "gateways.delete")

        narrowed = _admin(gw, *work, USERS)
        assert "current_hash" not in narrowed.get(f"/tools/{own_tool['id']}").json()
        approve = {"approve_change": own_tool["current_hash"]}
        assert _answer(narrowed.patch(f"/tools/{own_tool['id']}", json=approve)) == (403, "admin_required")
        approve_other = {"approve_change": other_tool["current_hash"]}
        assert _answer(narrowed.patch(f"/tools/{other_tool['id']}", json=approve_other)) == (403, "not_owner")
        assert _answer(narrowed.post(f"/gateways/{other_id}/refresh")) == (403, "not_owner")
        assert _answer(narrowed.delete(f"/gateways/{other_id}")) == (403, "not_owner")
        assert narrowed.post(f"/gateways/{own_id}/refresh").status_code == 200, "its own user's it still refreshes"
        assert "current_hash" not in owner.get(f"/tools/{other_tool['id']}").json()
        assert _answer(owner.patch(f"/tools/{other_tool['id']}", json=approve_other)) == (403, "admin_required")
        flagged = {t["name"]: t["changed"] for t in admin.get("/tools", params={"limit": 500}).json()["items"]}
        assert (flagged["adm_add"], flagged["ops_add"]) == (True, True), "nothing was approved"

        allowed = _admin(gw, *work, CONFIG)
        assert allowed.get(f"/tools/{other_tool['id']}").json()["current_hash"] == other_tool["current_hash"]
        assert allowed.patch(f"/tools/{own_tool['id']}", json=approve).json()["changed"] is False
        assert allowed.patch(f"/tools/{other_tool['id']}", json=approve_other).json()["changed"] is False
        assert allowed.post(f"/gateways/{other_id}/refresh").json()["discovered"]["changed"] == []
        assert allowed.delete(f"/gateways/{other_id}").status_code == 204
        assert _answer(owner.delete(f"/gateways/{own_id}")) == (403, "not_owner")
        assert allowed.delete(f"/gateways/{own_id}").status_code == 204


def test_everyones_proxy_sessions_take_user_management(gw: Gateway) -> None:
    user = _user(gw, "proxy-user@example.com")
    theirs = user.post("/reverse-proxy/sessions", json={"name": "theirs"}).json()["id"]
    narrowed = _admin(gw, CONFIG)
    assert theirs not in {s["id"] for s in narrowed.get("/reverse-proxy/sessions").json()["items"]}
    assert narrowed.delete(f"/reverse-proxy/sessions/{theirs}").status_code == 404
    allowed = _admin(gw, USERS)
    assert theirs in {s["id"] for s in allowed.get("/reverse-proxy/sessions").json()["items"]}
    assert allowed.delete(f"/reverse-proxy/sessions/{theirs}").status_code == 204


def test_the_power_follows_the_policys_admin_grant_not_the_flag(start: Callable[..., Gateway], tmp_path: Path) -> None:
    """With an admin role that leaves out `admin.user_management`, even the admin's own
    session is a member like any other in teams, and an invitation the admin sent as an
    owner lapses when they stop being one, as any owner's does: the admin could no
    longer send it."""
    overlay = tmp_path / "overlay"
    overlay.mkdir()
    text = (ROOT / "policies" / "permissions.yaml").read_text()
    granted = [p for p in text.split("  permissions:\n", 1)[1].split("  roles:", 1)[0].split() if p != "-"]
    narrowed = [p for p in granted if p != USERS]
    assert len(narrowed) == len(granted) - 1
    # Registered users are developers, since this admin cannot give anyone a role.
    changed = text.replace('permissions: ["*"]', f"permissions: {narrowed}").replace(
        "defaultRole: viewer", "defaultRole: developer"
    )
    (overlay / "permissions.yaml").write_text(changed)
    server = start(POLICY_PATHS=f"{ROOT / 'policies'},{overlay}", PUBLIC_REGISTRATION_ENABLED="true", **_TEAM_FLAGS)
    admin = server.client(server.login())
    assert USERS not in admin.get("/auth/me").json()["permissions"]
    clients = {}
    for email in ("second@example.com", "guest@example.com"):
        registered = httpx.post(f"{server.url}/auth/register", json={"email": email, "password": PASSWORD})
        assert registered.status_code == 201, registered.text
        clients[email] = server.client(server.login(email, PASSWORD))
    second, guest = clients["second@example.com"], clients["guest@example.com"]

    elsewhere = second.post("/teams", json={"name": "Elsewhere"}).json()["id"]
    assert elsewhere not in {t["id"] for t in admin.get("/teams").json()["items"]}
    assert _answer(admin.get(f"/teams/{elsewhere}")) == (404, "not_found")

    team = admin.post("/teams", json={"name": "Admins"}).json()["id"]
    sent = admin.post(f"/teams/{team}/invitations", json={"email": "guest@example.com", "role": "owner"}).json()
    assert (
        admin.post(f"/teams/{team}/members", json={"email": "second@example.com", "role": "owner"}).status_code == 201
    )
    assert second.delete(f"/teams/{team}/members/{ADMIN_EMAIL}").status_code == 204
    assert _answer(guest.post(f"/invitations/{sent['id']}/accept")) == (404, "not_found")
    assert guest.get("/auth/me").json()["teams"] == []
