"""The admin API: who may reach it, what it changes, and policy reloads."""

from __future__ import annotations

import contextlib
import shutil
import signal
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from engine.web.sessions import MAX_PER_OWNER
from tests.integration.servers import ROOT, Gateway, claims, mint, redis_server, start_gateway
from tests.integration.waiting import eventually


def test_admin_api_is_off_by_default(start: Callable[..., Gateway]) -> None:
    server = start()
    response = server.client(server.login()).get("/admin/users")
    assert (response.status_code, response.json()["error"]["code"]) == (404, "feature_disabled")


def test_admin_routes_refuse_non_admins_and_server_scoped_tokens(gateway: Gateway) -> None:
    admin = gateway.client(gateway.login())
    admin.post("/admin/users", json={"email": "plain@example.com", "password": "plain user password"})
    plain = gateway.client(gateway.login("plain@example.com", "plain user password")).get("/admin/users")
    assert (plain.status_code, plain.json()["error"]["code"]) == (403, "admin_required")
    scoped = gateway.client(mint(claims(teams=None, scopes={"server_id": "srv-1"}))).get("/admin/users")
    assert (scoped.status_code, scoped.json()["error"]["code"]) == (403, "server_scope_denied")


def test_grant_admin_takes_effect_on_the_next_request(gateway: Gateway) -> None:
    admin = gateway.client(gateway.login())
    admin.post("/admin/users", json={"email": "rising@example.com", "password": "rising star password"})
    session = gateway.client(gateway.login("rising@example.com", "rising star password"))
    assert session.get("/admin/users").status_code == 403
    assert admin.patch("/admin/users/rising@example.com", json={"is_admin": True}).json()["is_admin"] is True
    assert session.get("/admin/users").status_code == 200
    assert admin.patch("/admin/users/rising@example.com", json={"is_admin": False}).status_code == 200
    assert session.get("/admin/users").status_code == 403


def test_admins_cannot_lock_themselves_out(gateway: Gateway) -> None:
    admin = gateway.client(gateway.login())
    me = admin.get("/auth/me").json()["email"]
    response = admin.patch(f"/admin/users/{me}", json={"is_active": False})
    assert (response.status_code, response.json()["error"]["code"]) == (409, "self_lockout")


def test_revoke_any_jti_and_read_the_audit_log(gateway: Gateway) -> None:
    admin = gateway.client(gateway.login())
    stray = claims(teams=None)
    assert gateway.client(mint(stray)).get("/auth/me").status_code == 200
    revoked = admin.post("/admin/revocations", json={"jti": stray["jti"], "reason": "leaked in a log"})
    assert revoked.status_code == 201
    assert admin.post("/admin/revocations", json={"jti": stray["jti"]}).status_code == 200
    assert gateway.client(mint(stray)).get("/auth/me").json()["error"]["code"] == "token_revoked"
    assert stray["jti"] in {r["jti"] for r in admin.get("/admin/revocations").json()["items"]}
    events = admin.get("/admin/audit", params={"limit": 50}).json()["items"]
    revocation = next(e for e in events if e["action"] == "token.revoke" and e["target"] == stray["jti"])
    assert revocation["detail"] == {"reason": "leaked in a log"}
    assert all("password" not in str(e["detail"]).lower() for e in events)


def test_unknown_users_and_bad_changes(gateway: Gateway) -> None:
    admin = gateway.client(gateway.login())
    assert admin.patch("/admin/users/nobody@example.com", json={"is_active": True}).status_code == 404
    assert admin.patch("/admin/users/nobody@example.com", json={}).status_code == 422
    assert admin.post("/admin/users", json={"email": "x@example.com", "password": "short"}).status_code == 422
    dup = admin.post("/admin/users", json={"email": "dup@example.com", "password": "long enough password"})
    again = admin.post("/admin/users", json={"email": "dup@example.com", "password": "long enough password"})
    assert (dup.status_code, again.status_code, again.json()["error"]["code"]) == (201, 409, "user_exists")
    assert admin.get("/admin/audit", params={"limit": "lots"}).status_code == 400


def test_demoting_another_admin_keeps_the_caller_and_counts_only_active_admins(gateway: Gateway) -> None:
    """Sent one after another, a change always leaves the caller as an active admin; the
    last-admin refusal is for changes sent at once (test_admin_races.py)."""
    admin = gateway.client(gateway.login())
    admin.post("/admin/users", json={"email": "deputy@example.com", "password": "deputy password", "is_admin": True})
    deputy = gateway.client(gateway.login("deputy@example.com", "deputy password"))
    assert deputy.get("/admin/users").status_code == 200
    demoted = admin.patch("/admin/users/deputy@example.com", json={"is_admin": False, "roles": ["developer"]})
    assert (demoted.status_code, demoted.json()["is_admin"], demoted.json()["roles"]) == (200, False, ["developer"])
    refused = deputy.patch(f"/admin/users/{admin.get('/auth/me').json()['email']}", json={"is_admin": False})
    assert (refused.status_code, refused.json()["error"]["code"]) == (403, "admin_required")
    events = admin.get("/admin/audit", params={"limit": 5}).json()["items"]
    change = next(e for e in events if e["action"] == "user.change" and e["target"] == "deputy@example.com")
    assert change["detail"] == {"is_admin": False, "roles": ["developer"]}


def test_a_change_the_cache_was_not_told_of_is_stored_and_audited(
    start: Callable[..., Gateway], tmp_path: Path
) -> None:
    """The store holds the change and its audit row before the cache is told; a cache
    that cannot be told makes the answer a 503, never a change without its audit row."""
    with redis_server(tmp_path / "redis") as (url, redis):
        server = start(MCPGATEWAY_ADMIN_API_ENABLED="true", REDIS_URL=url)
        admin = server.client(server.login())
        admin.post("/admin/users", json={"email": "cached@example.com", "password": "cached user password"})
        redis.terminate()
        redis.wait(timeout=10)
        changed = admin.patch("/admin/users/cached@example.com", json={"is_active": False})
        assert (changed.status_code, changed.json()["error"]["code"]) == (503, "unavailable")
    users = {u["email"]: u for u in admin.get("/admin/users").json()["items"]}
    assert users["cached@example.com"]["is_active"] is False
    events = admin.get("/admin/audit", params={"limit": 5}).json()["items"]
    assert any(e["action"] == "user.change" and e["target"] == "cached@example.com" for e in events), events


def test_an_email_the_user_routes_cannot_address_is_refused(start: Callable[..., Gateway]) -> None:
    server = start(MCPGATEWAY_ADMIN_API_ENABLED="true", PUBLIC_REGISTRATION_ENABLED="true")
    admin = server.client(server.login())
    password = "a long enough password"
    emails = ["a/b@example.com", "a@b/c", "a\\b@example.com", "a?b@example.com", "a#b@example.com", "a%2Fb@example.com"]
    for email in emails:
        created = admin.post("/admin/users", json={"email": email, "password": password})
        registered = httpx.post(f"{server.url}/auth/register", json={"email": email, "password": password})
        for refused in (created, registered):
            assert (refused.status_code, refused.json()["error"]["code"]) == (422, "invalid_body"), email
            assert "email" in refused.json()["error"]["details"]
    assert not set(emails) & {u["email"] for u in admin.get("/admin/users").json()["items"]}


def test_a_body_with_a_number_the_store_cannot_hold_is_refused_and_stores_nothing(gateway: Gateway) -> None:
    admin = gateway.client(gateway.login())
    wide = ("123456789012345678901234567890", "9223372036854775808", "-9223372036854775809")
    for number in (*wide, "NaN", "-Infinity", "1e400"):
        body = f'{{"name": "huge-{len(number)}", "input_schema": {{"x": {number}}}}}'
        refused = admin.post("/tools", content=body, headers={"Content-Type": "application/json"})
        expected = (422, "invalid_body") if number in wide else (400, "invalid_json")
        assert (refused.status_code, refused.json()["error"]["code"]) == expected, number
    assert not [t for t in admin.get("/tools").json()["items"] if t["name"].startswith("huge-")]


def test_a_narrowed_admin_token_sees_and_closes_only_its_own_sessions(gateway: Gateway) -> None:
    """The store says admin, but the token's scope leaves no admin permission: the admin
    API refuses such a token, and the sessions of others stay out of its reach too."""
    admin = gateway.client(gateway.login())
    admin.post("/admin/users", json={"email": "proxied@example.com", "password": "proxied user password"})
    user = gateway.client(gateway.login("proxied@example.com", "proxied user password"))
    theirs = user.post("/reverse-proxy/sessions", json={"name": "theirs"}).json()
    narrowed = gateway.client(mint(claims(teams=None, scopes={"permissions": ["tools.read"]})))
    assert narrowed.get("/admin/users").json()["error"]["code"] == "permission_missing"
    own = narrowed.post("/reverse-proxy/sessions", json={"name": "own"}).json()
    listed = narrowed.get("/reverse-proxy/sessions").json()["items"]
    assert {s["owner"] for s in listed} == {own["owner"]}
    assert narrowed.delete(f"/reverse-proxy/sessions/{theirs['id']}").status_code == 404
    assert theirs["id"] in {s["id"] for s in admin.get("/reverse-proxy/sessions").json()["items"]}
    assert admin.delete(f"/reverse-proxy/sessions/{theirs['id']}").status_code == 204
    assert narrowed.delete(f"/reverse-proxy/sessions/{own['id']}").status_code == 204


def test_each_user_keeps_a_bounded_number_of_sessions(gateway: Gateway) -> None:
    admin = gateway.client(gateway.login())
    admin.post("/admin/users", json={"email": "hoarder@example.com", "password": "hoarder password"})
    bare = gateway.client(mint(claims("hoarder@example.com", teams=None, scopes={"permissions": []})))
    opened = [bare.post("/reverse-proxy/sessions", json={}) for _ in range(MAX_PER_OWNER)]
    assert {r.status_code for r in opened} == {201}
    refused = bare.post("/reverse-proxy/sessions", json={})
    assert (refused.status_code, refused.json()["error"]["code"]) == (409, "session_limit")
    assert len(bare.get("/reverse-proxy/sessions").json()["items"]) == MAX_PER_OWNER
    assert bare.delete(f"/reverse-proxy/sessions/{opened[0].json()['id']}").status_code == 204
    assert bare.post("/reverse-proxy/sessions", json={}).status_code == 201


def _policy_copy(folder: Path) -> Path:
    target = folder / "policies"
    shutil.copytree(ROOT / "policies", target)
    return target


def test_reload_swaps_the_policy_and_a_bad_one_keeps_the_old(start: Callable[..., Gateway], tmp_path: Path) -> None:
    policies = _policy_copy(tmp_path)
    server = start(POLICY_PATHS=policies, MCPGATEWAY_ADMIN_API_ENABLED="true")
    admin = server.client(server.login())
    before = admin.get("/admin/policies/status").json()
    unchanged = admin.post("/admin/policies/reload").json()
    assert (unchanged["reloads"], unchanged["loaded_at"]) == (0, before["loaded_at"]), "the files at start-up are known"
    sizes = policies / "sizes.yaml"
    sizes.write_text(sizes.read_text().replace("maxBytes: 10240\n", "maxBytes: 20480\n"))
    reloaded = admin.post("/admin/policies/reload")
    assert reloaded.status_code == 200
    assert reloaded.json()["version"] != before["version"]
    good_version = reloaded.json()["version"]
    sizes.write_text(sizes.read_text().replace("maxBytes: 20480\n", "maxBytes: lots\n"))
    refused = admin.post("/admin/policies/reload")
    assert (refused.status_code, refused.json()["error"]["code"]) == (422, "policy_invalid")
    error = refused.json()["error"]["details"][0]
    assert (error["file"], error["code"]) == (str(sizes), "schema.type")
    assert error["line"] == sizes.read_text().splitlines().index("      maxBytes: lots") + 1
    status = admin.get("/admin/policies/status").json()
    assert status["version"] == good_version
    assert status["last_error"][0]["where"].startswith(f"{sizes}:")
    assert httpx.get(f"{server.url}/ready").json()["policy_version"] == good_version
    sizes.write_text(sizes.read_text().replace("maxBytes: lots\n", "maxBytes: 20480\n"))
    restored = admin.post("/admin/policies/reload").json()
    assert (restored["version"], restored["last_error"]) == (good_version, [])
    assert restored["reloads"] == status["reloads"], "the files of the policy in force are not built again"


def test_a_reload_through_the_api_reaches_every_worker(start: Callable[..., Gateway], tmp_path: Path) -> None:
    """The API request reaches one of two workers; the other must not go on enforcing the
    old policy. Each `/ready` below is a new connection, which the kernel places on
    either worker (SO_REUSEPORT): twenty in a row on one worker is a 1 in 10^6 chance."""
    policies = _policy_copy(tmp_path)
    server = start(POLICY_PATHS=policies, POLICY_WATCH="false", WORKERS="2", MCPGATEWAY_ADMIN_API_ENABLED="true")
    sizes = policies / "sizes.yaml"
    sizes.write_text(sizes.read_text().replace("maxBytes: 10240\n", "maxBytes: 20480\n"))
    reloaded = server.client(server.login()).post("/admin/policies/reload")
    assert reloaded.status_code == 200
    new = reloaded.json()["version"]
    deadline, in_a_row = time.monotonic() + 15, 0
    while in_a_row < 20:
        assert time.monotonic() < deadline, "a worker kept the old policy"
        in_a_row = in_a_row + 1 if httpx.get(f"{server.url}/ready").json()["policy_version"] == new else 0
        time.sleep(0.02)


def test_a_change_in_the_policy_folder_reloads(start: Callable[..., Gateway], tmp_path: Path) -> None:
    policies = _policy_copy(tmp_path)
    server = start(POLICY_PATHS=policies, POLICY_WATCH="true")
    first = httpx.get(f"{server.url}/ready").json()["policy_version"]
    features = policies / "features.yaml"
    features.write_text(features.read_text().replace("adminApi: false", "adminApi: true"))
    _wait_for_version_change(server, first)
    assert server.client(server.login()).get("/admin/users").status_code == 200


def test_sighup_reloads(start: Callable[..., Gateway], tmp_path: Path) -> None:
    policies = _policy_copy(tmp_path)
    server = start(POLICY_PATHS=policies, POLICY_WATCH="false")
    first = httpx.get(f"{server.url}/ready").json()["policy_version"]
    features = policies / "features.yaml"
    features.write_text(features.read_text().replace("adminApi: false", "adminApi: true"))
    time.sleep(0.5)
    assert httpx.get(f"{server.url}/ready").json()["policy_version"] == first, "nothing reloads without a trigger"
    server.process.send_signal(signal.SIGHUP)
    _wait_for_version_change(server, first)
    assert server.client(server.login()).get("/admin/users").status_code == 200


def _wait_for_version_change(server: Gateway, old: str) -> None:
    def changed() -> bool:
        return bool(httpx.get(f"{server.url}/ready").json()["policy_version"] != old)

    eventually(changed, within=15, failure="the policy was not reloaded", every=0.1)


def test_a_reload_passed_on_while_workers_start_ends_none_of_them(tmp_path: Path) -> None:
    """A worker that is serving passes a reload on through the supervisor to every worker,
    some perhaps still starting, before their loops take SIGHUP (whose default action
    ends a process). They must survive it, and end up on the files as they now are."""
    policies = _policy_copy(tmp_path)
    server = start_gateway(tmp_path / "gw", {"POLICY_PATHS": str(policies), "WORKERS": "2"}, wait=False)
    children = Path(f"/proc/{server.process.pid}/task/{server.process.pid}/children")
    try:
        eventually(lambda: children.read_text().split(), within=20, failure="no worker was started", every=0.01)
        sizes = policies / "sizes.yaml"
        sizes.write_text(sizes.read_text().replace("maxBytes: 10240\n", "maxBytes: 20480\n"))

        def serving_while_signalled() -> bool:
            server.process.send_signal(signal.SIGHUP)
            with contextlib.suppress(httpx.TransportError):
                return httpx.get(f"{server.url}/ready", timeout=1).status_code == 200
            return False

        eventually(serving_while_signalled, within=20, failure=lambda: server.log.read_text(), every=0.05)
        for _ in range(10):
            server.process.send_signal(signal.SIGHUP)
            time.sleep(0.05)
        workers = [
            pid for pid in children.read_text().split() if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes()
        ]
        assert len(workers) == 2, server.log.read_text()
        versions = {httpx.get(f"{server.url}/ready").json()["policy_version"] for _ in range(20)}
        eventually(
            lambda: len({httpx.get(f"{server.url}/ready").json()["policy_version"] for _ in range(20)}) == 1,
            within=15,
            failure=f"the workers disagree on the policy: {versions}",
        )
    finally:
        server.stop()
    assert server.new_tracebacks() == ""
