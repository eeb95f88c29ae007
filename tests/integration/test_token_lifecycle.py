"""API tokens over HTTP: containment on creation, listing, revocation on the next request."""

from __future__ import annotations

import base64
import datetime as dt
import json
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests.integration.servers import ROOT, Gateway, claims, mint
from tests.integration.waiting import eventually

DEV = "dev@example.com"
DEV_PASSWORD = "developer password 123"


@pytest.fixture(scope="module")
def developer(gateway: Gateway) -> str:
    """A developer in team `blue`; returns their session token."""
    admin = gateway.client(gateway.login())
    created = admin.post("/admin/users", json={"email": DEV, "password": DEV_PASSWORD, "roles": ["developer"]})
    assert created.status_code == 201, created.text
    team = admin.post("/teams", json={"name": "blue"})
    assert team.status_code in (201, 404), team.text  # team creation is off by default
    return gateway.login(DEV, DEV_PASSWORD)


def test_create_list_and_use_a_token(gateway: Gateway, developer: str) -> None:
    client = gateway.client(developer)
    created = client.post("/tokens", json={"name": "ci", "scopes": {"permissions": ["tools.read"]}})
    assert created.status_code == 201, created.text
    body = created.json()
    listed = client.get("/tokens").json()["items"]
    assert [t["jti"] for t in listed if t["name"] == "ci"] == [body["jti"]]
    assert "token" not in listed[0]
    scoped = gateway.client(body["token"])
    me = scoped.get("/auth/me").json()
    assert me["permissions"] == ["tools.read"]

    def last_used() -> str | None:  # the use is recorded in the background
        return {t["jti"]: t["last_used_at"] for t in client.get("/tokens").json()["items"]}[body["jti"]]

    eventually(last_used, within=5, failure="the token's use was not recorded")


def test_a_token_cannot_hold_more_than_its_creator(gateway: Gateway, developer: str) -> None:
    client = gateway.client(developer)
    beyond = client.post("/tokens", json={"name": "x", "scopes": {"permissions": ["admin.system_config"]}})
    assert (beyond.status_code, beyond.json()["error"]["code"]) == (403, "scope_exceeds_caller")
    foreign = client.post("/tokens", json={"name": "x", "teams": ["red"]})
    assert (foreign.status_code, foreign.json()["error"]["code"]) == (403, "scope_exceeds_caller")
    bypass = client.post("/tokens", json={"name": "x", "teams": None})
    assert bypass.status_code == 403
    too_long = client.post("/tokens", json={"name": "x", "expires_in_minutes": 600_000})
    assert (too_long.status_code, too_long.json()["error"]["code"]) == (422, "lifetime_exceeded")
    bad_cidr = client.post("/tokens", json={"name": "x", "scopes": {"ip_restrictions": ["10.0.0.300/8"]}})
    assert bad_cidr.status_code == 422


def test_a_scoped_token_cannot_mint_a_wider_one(gateway: Gateway, developer: str) -> None:
    narrow = gateway.client(developer).post(
        "/tokens", json={"name": "narrow", "scopes": {"permissions": ["tokens.create", "tools.read"]}}
    )
    child = gateway.client(narrow.json()["token"]).post(
        "/tokens", json={"name": "child", "scopes": {"permissions": ["tools.execute"]}}
    )
    assert (child.status_code, child.json()["error"]["code"]) == (403, "scope_exceeds_caller")
    unscoped = gateway.client(narrow.json()["token"]).post("/tokens", json={"name": "unscoped"})
    assert unscoped.json()["scopes"]["permissions"] == ["tokens.create", "tools.read"]
    me = gateway.client(unscoped.json()["token"]).get("/auth/me").json()
    assert me["permissions"] == ["tokens.create", "tools.read"], "no scope means the creating token's, not the roles'"


def test_revocation_takes_effect_on_the_next_request(gateway: Gateway, developer: str) -> None:
    token = gateway.client(developer).post("/tokens", json={"name": "short-lived"}).json()
    user = gateway.client(token["token"])
    assert user.get("/auth/me").status_code == 200
    assert gateway.client(developer).delete(f"/tokens/{token['jti']}").status_code == 204
    refused = user.get("/auth/me")
    assert (refused.status_code, refused.json()["error"]["code"]) == (401, "token_revoked")
    listed = {t["jti"]: t["revoked"] for t in gateway.client(developer).get("/tokens").json()["items"]}
    assert listed[token["jti"]] is True


def test_only_the_owner_or_an_admin_can_revoke(gateway: Gateway, developer: str) -> None:
    admin_token = gateway.client(gateway.login()).post("/tokens", json={"name": "admins"}).json()
    other = gateway.client(developer).delete(f"/tokens/{admin_token['jti']}")
    assert other.status_code == 404
    assert gateway.client(admin_token["token"]).get("/auth/me").status_code == 200


def test_ip_restricted_token_is_refused_from_elsewhere(gateway: Gateway, developer: str) -> None:
    client = gateway.client(developer)
    far = client.post("/tokens", json={"name": "far", "scopes": {"ip_restrictions": ["203.0.113.0/24"]}}).json()
    near = client.post("/tokens", json={"name": "near", "scopes": {"ip_restrictions": ["127.0.0.0/8"]}}).json()
    refused = gateway.client(far["token"]).get("/auth/me")
    assert (refused.status_code, refused.json()["error"]["code"]) == (403, "ip_not_allowed")
    assert gateway.client(near["token"]).get("/auth/me").status_code == 200


def test_deactivating_a_user_stops_their_tokens_at_once(gateway: Gateway) -> None:
    admin = gateway.client(gateway.login())
    admin.post("/admin/users", json={"email": "temp@example.com", "password": "temporary password 1"})
    session = gateway.login("temp@example.com", "temporary password 1")
    assert gateway.client(session).get("/auth/me").status_code == 200
    assert admin.patch("/admin/users/temp@example.com", json={"is_active": False}).status_code == 200
    refused = gateway.client(session).get("/auth/me")
    assert (refused.status_code, refused.json()["error"]["code"]) == (403, "account_disabled")
    login = httpx.post(
        f"{gateway.url}/auth/login", json={"email": "temp@example.com", "password": "temporary password 1"}
    )
    assert login.status_code == 403


def test_a_token_for_a_user_the_store_does_not_know_is_refused(gateway: Gateway) -> None:
    response = gateway.client(mint(claims("nobody@example.com"))).get("/auth/me")
    assert (response.status_code, response.json()["error"]["code"]) == (401, "user_unknown")


def test_the_cli_prints_a_working_token(gateway: Gateway) -> None:
    import subprocess
    import sys

    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "engine",
            "token",
            "create",
            "--username",
            DEV,
            "--teams",
            "blue",
            "--expires-minutes",
            "5",
        ],
        env=gateway.env,
        capture_output=True,
        text=True,
        check=True,
        cwd=gateway.log.parent,
    )
    assert "bypasses" in result.stderr
    token = result.stdout.strip()
    payload = token.split(".")[1]
    assert json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))["teams"] == ["blue"]
    me = gateway.client(token).get("/auth/me").json()
    assert me["email"] == DEV
    assert me["visibility"]["teams"] == [], "the claim reaches only teams the user belongs to"


def test_a_restricted_token_passes_its_limits_on(gateway: Gateway, developer: str) -> None:
    client = gateway.client(developer)
    parent = client.post(
        "/tokens",
        json={"name": "parent", "expires_in_minutes": 10, "teams": [],
              "scopes": {"permissions": ["tokens.create", "tools.read"], "ip_restrictions": ["127.0.0.0/8"]}},
    ).json()  # fmt: skip
    minting = gateway.client(parent["token"])
    child = minting.post("/tokens", json={"name": "child", "expires_in_minutes": 600}).json()
    assert child["scopes"]["ip_restrictions"] == ["127.0.0.0/8"]
    assert child["teams"] == []
    assert child["expires_at"] <= parent["expires_at"]
    wider = minting.post("/tokens", json={"name": "wider", "scopes": {"ip_restrictions": ["0.0.0.0/0"]}})
    assert (wider.status_code, wider.json()["error"]["code"]) == (403, "scope_exceeds_caller")


def test_a_token_asked_for_without_a_lifetime_gets_the_longest_the_policy_allows(
    start: Callable[..., Gateway], tmp_path: Path
) -> None:
    overlay = tmp_path / "overlay"
    overlay.mkdir()
    rules = (ROOT / "policies" / "tokens.yaml").read_text()
    (overlay / "tokens.yaml").write_text(rules.replace("maxLifetimeMinutes: 525600", "maxLifetimeMinutes: 1440"))
    server = start(POLICY_PATHS=f"{ROOT / 'policies'},{overlay}")
    before = dt.datetime.now(dt.UTC)
    # A token made with another expires no later than it: this one lives a whole day.
    creator = mint(claims(teams=None, exp=int(before.timestamp()) + 86400))
    made = server.client(creator).post("/tokens", json={"name": "default-lifetime"})
    assert made.status_code == 201, made.text
    lifetime = dt.datetime.fromisoformat(made.json()["expires_at"]) - before
    assert dt.timedelta(hours=23) < lifetime <= dt.timedelta(days=1)


def test_a_session_narrowed_by_its_teams_claim_cannot_make_a_wider_token(gateway: Gateway) -> None:
    """A session an accepted issuer narrowed to listed teams reaches only those of the
    user's teams; a token it makes reaches no more, not every team through `teams: null`."""
    narrowed = gateway.client(mint(claims(token_use="session", teams=["t-listed"])))
    assert narrowed.get("/auth/me").json()["visibility"]["teams"] == []
    for teams in (None, ["t-listed"], ["t-other"]):
        child = narrowed.post("/tokens", json={"name": "wider", "teams": teams})
        assert (child.status_code, child.json()["error"]["code"]) == (403, "scope_exceeds_caller"), teams
    same = narrowed.post("/tokens", json={"name": "same"})
    assert (same.status_code, same.json()["teams"]) == (201, [])
    unrestricted = gateway.client(gateway.login()).post("/tokens", json={"name": "all", "teams": None})
    assert (unrestricted.status_code, unrestricted.json()["teams"]) == (201, None)


def test_a_session_narrowed_by_its_scopes_passes_them_on(gateway: Gateway) -> None:
    """An accepted issuer's session that carries scopes makes tokens within them: its
    permissions when none are asked for, and its server and addresses."""
    scopes = {"permissions": ["tokens.create", "tools.read"], "ip_restrictions": ["127.0.0.0/8"]}
    narrowed = gateway.client(mint(claims(token_use="session", teams=None, scopes=scopes)))
    child = narrowed.post("/tokens", json={"name": "child"})
    assert child.status_code == 201, child.text
    assert child.json()["scopes"]["permissions"] == ["tokens.create", "tools.read"]
    assert child.json()["scopes"]["ip_restrictions"] == ["127.0.0.0/8"]
    wider = narrowed.post("/tokens", json={"name": "wider", "scopes": {"ip_restrictions": ["10.0.0.0/8"]}})
    assert (wider.status_code, wider.json()["error"]["code"]) == (403, "scope_exceeds_caller")
