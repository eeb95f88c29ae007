"""Registration, teams and their self-service flows, basic and proxy auth, proxy sessions."""

from __future__ import annotations

import base64
import sqlite3
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.integration.conftest import start_server, stop_server
from tests.integration.servers import ADMIN_EMAIL, ADMIN_PASSWORD, Gateway, claims, mint

PASSWORD = "a perfectly fine password"


@pytest.fixture(scope="module")
def open_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    """Every self-service flag on."""
    server = start_server(
        tmp_path_factory.mktemp("open"),
        PUBLIC_REGISTRATION_ENABLED="true",
        ALLOW_TEAM_CREATION="true",
        ALLOW_TEAM_JOIN_REQUESTS="true",
        ALLOW_TEAM_INVITATIONS="true",
        MCPGATEWAY_ADMIN_API_ENABLED="true",
    )
    yield server
    stop_server(server)


def _register(server: Gateway, email: str) -> str:
    response = httpx.post(f"{server.url}/auth/register", json={"email": email, "password": PASSWORD})
    assert response.status_code == 201, response.text
    return server.login(email, PASSWORD)


def test_self_service_flows_are_off_by_default(gateway: Gateway) -> None:
    register = httpx.post(f"{gateway.url}/auth/register", json={"email": "a@example.com", "password": PASSWORD})
    assert (register.status_code, register.json()["error"]["code"]) == (404, "feature_disabled")
    client = gateway.client(gateway.login())
    assert client.post("/teams", json={"name": "nope"}).json()["error"]["code"] == "feature_disabled"
    assert client.post("/teams/x/join-requests").json()["error"]["code"] == "feature_disabled"
    assert client.post("/teams/x/invitations", json={"email": "a@example.com"}).status_code == 404


def test_registration_refuses_duplicates(open_gateway: Gateway) -> None:
    _register(open_gateway, "once@example.com")
    again = httpx.post(f"{open_gateway.url}/auth/register", json={"email": "once@example.com", "password": PASSWORD})
    assert (again.status_code, again.json()["error"]["code"]) == (409, "user_exists")


def test_team_lifecycle(open_gateway: Gateway) -> None:
    server = open_gateway
    admin = server.client(server.login())
    admin.post("/admin/users", json={"email": "lead@example.com", "password": PASSWORD, "roles": ["developer"]})
    lead = server.client(server.login("lead@example.com", PASSWORD))
    team = lead.post("/teams", json={"name": "Platform Team"}).json()
    assert lead.get("/auth/me").json()["teams"] == [team["id"]]
    duplicate = lead.post("/teams", json={"name": "Platform Team"})
    assert duplicate.status_code == 409

    joiner_token = _register(server, "joiner@example.com")
    joiner = server.client(joiner_token)
    assert joiner.get(f"/teams/{team['id']}").status_code == 404, "outsiders do not learn the team exists"
    asked = joiner.post(f"/teams/{team['id']}/join-requests")
    assert asked.status_code == 201
    assert joiner.post(f"/teams/{team['id']}/join-requests").json()["error"]["code"] == "request_pending"
    pending = lead.get(f"/teams/{team['id']}/join-requests/pending").json()["items"]
    assert [p["email"] for p in pending] == ["joiner@example.com"]
    approved = lead.post(f"/teams/{team['id']}/join-requests/{pending[0]['id']}/approve")
    assert approved.json()["status"] == "approved"
    assert joiner.get("/auth/me").json()["teams"] == [team["id"]], "membership applies at once"

    invited_token = _register(server, "invited@example.com")
    invitation = lead.post(f"/teams/{team['id']}/invitations", json={"email": "invited@example.com"}).json()
    assert joiner.post(f"/invitations/{invitation['id']}/accept").status_code == 404, "not addressed to them"
    accepted = server.client(invited_token).post(f"/invitations/{invitation['id']}/accept")
    assert accepted.json() == {"team_id": team["id"], "role": "member"}

    members = lead.get(f"/teams/{team['id']}").json()["members"]
    assert {m["email"]: m["role"] for m in members} == {
        "lead@example.com": "owner",
        "joiner@example.com": "member",
        "invited@example.com": "member",
    }
    assert joiner.delete(f"/teams/{team['id']}/members/invited@example.com").status_code == 403
    assert lead.delete(f"/teams/{team['id']}/members/joiner@example.com").status_code == 204
    assert joiner.get("/auth/me").json()["teams"] == []
    last = lead.delete(f"/teams/{team['id']}/members/lead@example.com")
    assert (last.status_code, last.json()["error"]["code"]) == (409, "last_owner")


def test_an_api_token_reaches_only_the_teams_it_names(open_gateway: Gateway) -> None:
    """The teams API follows the token's `teams` claim, as the catalog does: a token
    limited to no team neither lists nor manages the teams its user owns."""
    server = open_gateway
    admin = server.client(server.login())
    admin.post("/admin/users", json={"email": "owner@example.com", "password": PASSWORD, "roles": ["developer"]})
    owner = server.client(server.login("owner@example.com", PASSWORD))
    first = owner.post("/teams", json={"name": "First"}).json()["id"]
    second = owner.post("/teams", json={"name": "Second"}).json()["id"]
    public_only = server.client(owner.post("/tokens", json={"name": "public", "teams": []}).json()["token"])
    assert public_only.get("/teams").json()["items"] == []
    assert public_only.get(f"/teams/{first}").status_code == 404
    joined = public_only.post(f"/teams/{first}/members", json={"email": ADMIN_EMAIL})
    assert joined.status_code == 404
    one = server.client(owner.post("/tokens", json={"name": "one", "teams": [first]}).json()["token"])
    assert [t["id"] for t in one.get("/teams").json()["items"]] == [first]
    assert one.get(f"/teams/{second}").status_code == 404
    assert [t["id"] for t in owner.get("/teams").json()["items"]] == [first, second], "a session reaches them all"
    # `teams: null` reaches every team only for an admin: in anyone else's token (one
    # made before a demotion) it reaches public items only, and so do its children.
    unbounded = server.client(mint(claims("owner@example.com", teams=None)))
    assert unbounded.get("/teams").json()["items"] == []
    child = unbounded.post("/tokens", json={"name": "child"})
    assert child.json()["teams"] == [], child.text
    wider = unbounded.post("/tokens", json={"name": "wider", "teams": [first]})
    assert (wider.status_code, wider.json()["error"]["code"]) == (403, "scope_exceeds_caller")


def test_reverse_proxy_sessions(open_gateway: Gateway) -> None:
    server = open_gateway
    assert httpx.get(f"{server.url}/reverse-proxy/sessions").status_code == 401
    alice = server.client(_register(server, "alice@example.com"))
    bob = server.client(_register(server, "bob@example.com"))
    chosen = str(uuid.uuid4())
    mine = alice.post("/reverse-proxy/sessions", json={"id": chosen, "name": "laptop"}).json()
    assert mine["id"] != chosen
    assert uuid.UUID(mine["id"]).version == 4
    bob.post("/reverse-proxy/sessions", json={"name": "desktop"})
    assert [s["name"] for s in alice.get("/reverse-proxy/sessions").json()["items"]] == ["laptop"]
    everyone = server.client(server.login()).get("/reverse-proxy/sessions").json()["items"]
    assert {"alice@example.com", "bob@example.com"} <= {s["owner"] for s in everyone}
    assert bob.delete(f"/reverse-proxy/sessions/{mine['id']}").status_code == 404
    assert bob.delete("/reverse-proxy/sessions/not-a-uuid").status_code == 404
    assert alice.delete(f"/reverse-proxy/sessions/{mine['id']}").status_code == 204


def test_basic_auth_when_the_policy_allows_it(start: Callable[..., Gateway]) -> None:
    server = start(API_ALLOW_BASIC_AUTH="true")
    good = base64.b64encode(f"{ADMIN_EMAIL}:{ADMIN_PASSWORD}".encode()).decode()
    bad = base64.b64encode(f"{ADMIN_EMAIL}:wrong".encode()).decode()
    assert server.client(Authorization=f"Basic {good}").get("/tokens").status_code == 200
    refused = server.client(Authorization=f"Basic {bad}").get("/tokens")
    assert (refused.status_code, refused.json()["error"]["code"]) == (401, "invalid_credentials")
    not_ascii = httpx.get(f"{server.url}/tokens", headers={"Authorization": "Basic é".encode()})
    assert (not_ascii.status_code, not_ascii.json()["error"]["code"]) == (401, "invalid_credentials")
    docs = server.client(Authorization=f"Basic {good}").get("/docs")
    assert (docs.status_code, docs.json()["error"]["code"]) == (401, "basic_auth_disabled")


def test_trusted_proxy_user_reaches_admin_routes_only(start: Callable[..., Gateway]) -> None:
    server = start(TRUST_PROXY_AUTH="true", MCPGATEWAY_ADMIN_API_ENABLED="true")
    proxied = server.client(**{"X-Forwarded-User": ADMIN_EMAIL})
    assert proxied.get("/admin/users").status_code == 200
    refused = proxied.get("/tokens")
    assert (refused.status_code, refused.json()["error"]["code"]) == (401, "proxy_auth_untrusted")
    unknown = server.client(**{"X-Forwarded-User": "ghost@example.com"}).get("/admin/users")
    assert (unknown.status_code, unknown.json()["error"]["code"]) == (401, "user_unknown")


def test_an_invitation_holds_only_while_its_sender_could_send_it(open_gateway: Gateway) -> None:
    server = open_gateway
    admin = server.client(server.login())
    for email in ("founder@example.com", "rogue@example.com"):
        admin.post("/admin/users", json={"email": email, "password": PASSWORD, "roles": ["developer"]})
    founder = server.client(server.login("founder@example.com", PASSWORD))
    team = founder.post("/teams", json={"name": "Invitations"}).json()["id"]
    promoted = founder.post(f"/teams/{team}/members", json={"email": "rogue@example.com", "role": "owner"})
    assert promoted.status_code == 201
    rogue = server.client(server.login("rogue@example.com", PASSWORD))
    accomplice = server.client(_register(server, "accomplice@example.com"))
    sent = rogue.post(f"/teams/{team}/invitations", json={"email": "accomplice@example.com", "role": "owner"}).json()
    withdrawn = founder.post(f"/teams/{team}/invitations", json={"email": "accomplice@example.com"}).json()
    pending = founder.get(f"/teams/{team}/invitations").json()["items"]
    assert [(i["id"], i["invited_by"]) for i in pending] == [
        (sent["id"], "rogue@example.com"),
        (withdrawn["id"], "founder@example.com"),
    ]
    assert founder.delete(f"/teams/{team}/invitations/{withdrawn['id']}").status_code == 204
    assert accomplice.post(f"/invitations/{withdrawn['id']}/accept").status_code == 404
    assert founder.delete(f"/teams/{team}/members/rogue@example.com").status_code == 204
    late = accomplice.post(f"/invitations/{sent['id']}/accept")
    assert late.status_code == 404, "a removed owner's invitation lets nobody in"
    assert accomplice.get("/auth/me").json()["teams"] == []
    assert founder.get(f"/teams/{team}/invitations").json()["items"] == []

    old = founder.post(f"/teams/{team}/invitations", json={"email": "accomplice@example.com"}).json()
    with sqlite3.connect(Path(server.env["DATA_DIR"]) / "policygate.db") as store:
        store.execute("UPDATE invitations SET created_at = '2000-01-01 00:00:00+00:00' WHERE id = ?", (old["id"],))
    assert accomplice.post(f"/invitations/{old['id']}/accept").status_code == 404, "invitations expire"
    fresh = founder.post(f"/teams/{team}/invitations", json={"email": "late@example.com"}).json()
    listed = [i["id"] for i in founder.get(f"/teams/{team}/invitations").json()["items"]]
    assert listed == [fresh["id"]], "an expired invitation is not listed beside a fresh one from the same sender"
    fresh = founder.post(f"/teams/{team}/invitations", json={"email": "accomplice@example.com"}).json()
    assert accomplice.post(f"/invitations/{fresh['id']}/accept").json() == {"team_id": team, "role": "member"}


def test_an_id_longer_than_the_store_holds_is_a_bad_request(open_gateway: Gateway) -> None:
    client = open_gateway.client(open_gateway.login())
    for path in ("/tools/" + "x" * 65, "/teams/" + "x" * 65, "/gateways/" + "x" * 65):
        found = client.get(path)
        assert (found.status_code, found.json()["error"]["code"]) in ((400, "invalid_value"), (404, "not_found"))
    team = client.post("/teams", json={"name": "Long names"}).json()["id"]
    refused = client.post(f"/teams/{team}/members", json={"email": "a" * 400 + "@example.com"})
    assert (refused.status_code, refused.json()["error"]["code"]) == (422, "invalid_body"), refused.text
