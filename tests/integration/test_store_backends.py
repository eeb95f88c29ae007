"""The store suite on SQLite and on a real PostgreSQL, with and without a real Redis.

The same flows run on every backend: bootstrap, login, token containment, revocation on
the next request, user changes, teams. Then what only a shared cache can show: two
gateway instances (or two workers) agreeing on a revocation at once, a Redis that lost
its data, a Redis that stops answering, and a store outage failing closed.
"""

from __future__ import annotations

import base64
import contextlib
import json
import shutil
import signal
import subprocess
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.mcp_client import UPSTREAM_TOKEN, upstream_server
from tests.integration.servers import ROOT, Gateway, claims, create_database, mint, postgres_server, redis_server
from tests.integration.waiting import eventually

BACKENDS = ["sqlite", "postgres", "postgres+redis"]


@pytest.fixture(scope="module")
def postgres() -> Iterator[str]:
    with postgres_server() as server:
        yield server.url


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> dict[str, str]:
    if request.param == "sqlite":
        return {}
    env = {"DATABASE_URL": create_database(request.getfixturevalue("postgres"), f"pg_{uuid.uuid4().hex[:8]}")}
    if request.param.endswith("+redis"):
        env["REDIS_URL"] = request.getfixturevalue("redis_url")
    return env


def test_store_suite(start: Callable[..., Gateway], backend: dict[str, str]) -> None:
    server = start(MCPGATEWAY_ADMIN_API_ENABLED="true", ALLOW_TEAM_CREATION="true", **backend)
    ready = httpx.get(f"{server.url}/ready").json()
    assert ready["checks"] == ({"store": True, "redis": True} if "REDIS_URL" in backend else {"store": True})
    admin = server.client(server.login())
    user = {"email": "dev@example.com", "password": "developer password", "roles": ["developer"]}
    assert admin.post("/admin/users", json=user).status_code == 201
    assert admin.post("/admin/users", json=user).status_code == 409
    dev = server.client(server.login(user["email"], user["password"]))
    team = dev.post("/teams", json={"name": "green"}).json()
    assert dev.get("/auth/me").json()["teams"] == [team["id"]]
    created = dev.post("/tokens", json={"name": "t", "teams": [team["id"]], "scopes": {"permissions": ["tools.read"]}})
    token = created.json()
    api = server.client(token["token"])
    assert api.get("/auth/me").json()["visibility"]["teams"] == [team["id"]]
    assert dev.delete(f"/tokens/{token['jti']}").status_code == 204
    assert api.get("/auth/me").json()["error"]["code"] == "token_revoked"
    assert admin.patch("/admin/users/dev@example.com", json={"is_active": False}).status_code == 200
    assert dev.get("/auth/me").json()["error"]["code"] == "account_disabled"
    actions = [e["action"] for e in admin.get("/admin/audit").json()["items"]]
    assert {"user.create", "team.create", "token.create", "token.revoke", "user.change"} <= set(actions)


def _pages(client: httpx.Client, path: str, limit: int) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    params: dict[str, Any] = {"limit": limit}
    while True:
        body = client.get(path, params=params).json()
        assert len(body["items"]) <= limit
        items += body["items"]
        if "next_cursor" not in body:
            return items
        params["cursor"] = body["next_cursor"]


def test_audit_and_revocations_page_through_all_once(start: Callable[..., Gateway], backend: dict[str, str]) -> None:
    """Every row once, newest first, whatever the page size, on every backend; a cursor
    the API did not give is a 400, never a query error."""
    server = start(MCPGATEWAY_ADMIN_API_ENABLED="true", **backend)
    admin = server.client(server.login())
    jtis = [f"stray-{i}" for i in range(7)]
    for jti in jtis:
        assert admin.post("/admin/revocations", json={"jti": jti}).status_code == 201
    whole = admin.get("/admin/revocations").json()["items"]
    assert "next_cursor" not in admin.get("/admin/revocations").json()
    paged = _pages(admin, "/admin/revocations", 2)
    assert [r["jti"] for r in paged] == [r["jti"] for r in whole]
    assert sorted(r["jti"] for r in paged) == jtis
    assert [r["revoked_at"] for r in paged] == sorted((r["revoked_at"] for r in paged), reverse=True)
    events = admin.get("/admin/audit").json()["items"]
    assert _pages(admin, "/admin/audit", 3) == events
    assert sum(e["action"] == "token.revoke" for e in events) == len(jtis)
    for path in ("/admin/audit", "/admin/revocations"):
        for raw in (
            "x", "1234567890123", "2024-01-01 x", "2024-01-01T00:00:00+00:00 x", "\u00b2",
            "0001-01-01T00:00:00+05:00 x", "2024-01-01T00:00:00+00:00 a\x00b", "2024-01-01T00:00:00+00:00 " + "j" * 65,
        ):  # fmt: skip
            cursor = base64.urlsafe_b64encode(raw.encode()).decode()
            if path == "/admin/revocations" and raw.endswith("00:00 x"):
                assert admin.get(path, params={"cursor": cursor}).json()["items"] == []
                continue
            refused = admin.get(path, params={"cursor": cursor})
            assert (refused.status_code, refused.json()["error"]["code"]) == (400, "bad_request"), (path, cursor)
        assert admin.get(path, params={"limit": 0}).status_code == 400


def test_two_owners_removing_each_other_at_once_leave_one(
    start: Callable[..., Gateway], backend: dict[str, str]
) -> None:
    """Each removal first counts the owners; run at once, neither may count the other.
    SQLite runs one transaction at a time anyway: PostgreSQL is where this can fail."""
    server = start(MCPGATEWAY_ADMIN_API_ENABLED="true", ALLOW_TEAM_CREATION="true", **backend)
    admin = server.client(server.login())
    for email in ("left@example.com", "right@example.com"):
        admin.post("/admin/users", json={"email": email, "password": "a fine password", "roles": ["developer"]})
    tokens = {email: server.login(email, "a fine password") for email in ("left@example.com", "right@example.com")}
    for attempt in range(5):
        owner = server.client(tokens["left@example.com"])
        team = owner.post("/teams", json={"name": f"Duel {attempt}"}).json()["id"]
        owner.post(f"/teams/{team}/members", json={"email": "right@example.com", "role": "owner"})
        with ThreadPoolExecutor(2) as pool:
            left = pool.submit(_remove, server, tokens["left@example.com"], team, "right@example.com")
            right = pool.submit(_remove, server, tokens["right@example.com"], team, "left@example.com")
            codes = sorted((left.result(), right.result()))
        members = admin.get(f"/teams/{team}").json()["members"]
        assert [m["role"] for m in members] == ["owner"], (codes, members)
        # The second finds its caller no longer an owner (403) or member (404), or itself
        # the last owner (409), depending on where the first one's removal caught it.
        assert codes in ([204, 403], [204, 404], [204, 409]), codes


def _remove(server: Gateway, token: str, team: str, email: str) -> int:
    headers = {"Authorization": f"Bearer {token}"}
    return httpx.delete(f"{server.url}/teams/{team}/members/{email}", headers=headers).status_code


def test_two_join_requests_sent_at_once_leave_one_pending(
    start: Callable[..., Gateway], backend: dict[str, str]
) -> None:
    server = start(
        MCPGATEWAY_ADMIN_API_ENABLED="true", ALLOW_TEAM_CREATION="true", ALLOW_TEAM_JOIN_REQUESTS="true", **backend
    )
    admin = server.client(server.login())
    admin.post("/admin/users", json={"email": "eager@example.com", "password": "a fine password"})
    token = server.login("eager@example.com", "a fine password")
    headers = {"Authorization": f"Bearer {token}"}
    for attempt in range(5):
        team = admin.post("/teams", json={"name": f"Queue {attempt}"}).json()["id"]
        with ThreadPoolExecutor(2) as pool:
            asked = [pool.submit(httpx.post, f"{server.url}/teams/{team}/join-requests", headers=headers)
                     for _ in range(2)]  # fmt: skip
            codes = sorted(a.result().status_code for a in asked)
        assert codes == [201, 409], codes
        assert len(admin.get(f"/teams/{team}/join-requests/pending").json()["items"]) == 1


def test_two_instances_agree_on_a_revocation_at_once(
    start: Callable[..., Gateway], postgres: str, redis_url: str
) -> None:
    shared = {"DATABASE_URL": create_database(postgres, "shared"), "REDIS_URL": redis_url}
    first = start(MCPGATEWAY_ADMIN_API_ENABLED="true", **shared)
    second = start(**shared)
    token = claims(teams=None)
    assert second.client(mint(token)).get("/auth/me").status_code == 200  # now cached in the second
    first.client(first.login()).post("/admin/revocations", json={"jti": token["jti"]})
    assert second.client(mint(token)).get("/auth/me").json()["error"]["code"] == "token_revoked"


def test_a_reload_through_the_api_reaches_the_other_instances(
    start: Callable[..., Gateway], postgres: str, redis_url: str, tmp_path: Path
) -> None:
    """Each instance rebuilds from its own files, as hosts do once their files are deployed."""
    shared = {
        "DATABASE_URL": create_database(postgres, "reloads"), "REDIS_URL": redis_url, "POLICY_WATCH": "false",
        "MCPGATEWAY_ADMIN_API_ENABLED": "true",
    }  # fmt: skip
    folders = [tmp_path / name for name in ("first", "second")]
    for folder in folders:
        shutil.copytree(ROOT / "policies", folder)
    first = start(POLICY_PATHS=folders[0], **shared)
    second = start(POLICY_PATHS=folders[1], **shared)
    old = httpx.get(f"{second.url}/ready").json()["policy_version"]
    for folder in folders:
        sizes = folder / "sizes.yaml"
        sizes.write_text(sizes.read_text().replace("maxBytes: 10240\n", "maxBytes: 20480\n"))
    new = first.client(first.login()).post("/admin/policies/reload").json()["version"]
    assert new != old

    def version() -> str | None:
        seen: str = httpx.get(f"{second.url}/ready").json()["policy_version"]
        return seen if seen != old else None

    assert eventually(version, within=15, failure="the other instance kept the old policy") == new


def test_several_workers_share_revocations_through_redis(
    start: Callable[..., Gateway], postgres: str, redis_url: str
) -> None:
    server = start(
        WORKERS="2", MCPGATEWAY_ADMIN_API_ENABLED="true", REDIS_URL=redis_url,
        DATABASE_URL=create_database(postgres, "workers"),
    )  # fmt: skip
    token = claims(teams=None)
    client = server.client(mint(token))
    assert all(client.get("/auth/me").status_code == 200 for _ in range(10))
    server.client(server.login()).post("/admin/revocations", json={"jti": token["jti"]})
    assert {client.get("/auth/me").status_code for _ in range(20)} == {401}


def _sessions_with_a_stream(
    server: Gateway, headers: dict[str, str], streams: contextlib.ExitStack, count: int = 8
) -> list[tuple[str, Iterator[str]]]:
    """`count` sessions, each with one event stream on its own connection (which the
    kernel places on either worker, SO_REUSEPORT): each session's id and stream lines."""
    init = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": "2025-11-25"}}
    opened = []
    for _ in range(count):
        session = httpx.post(f"{server.url}/mcp", headers=headers, json=init).headers["mcp-session-id"]
        stream_headers = {**headers, "Accept": "text/event-stream", "Mcp-Session-Id": session}
        client = streams.enter_context(httpx.Client(timeout=5))
        stream = streams.enter_context(client.stream("GET", f"{server.url}/mcp", headers=stream_headers))
        assert stream.status_code == 200
        line_iter = stream.iter_lines()
        assert next(line_iter) == ": connected"
        opened.append((session, line_iter))
    return opened


def test_every_worker_pushes_list_changes_made_in_another(
    start: Callable[..., Gateway], postgres: str, redis_url: str
) -> None:
    """Event streams on both workers hear a change made through either one. Each stream
    is of its own session (a session hears a change on one of its streams); eight of
    them all landing on one worker is a 1 in 128 chance."""
    server = start(WORKERS="2", REDIS_URL=redis_url, DATABASE_URL=create_database(postgres, "fanout"))
    token = mint(claims(teams=None))
    headers = {"Authorization": f"Bearer {token}", "Accept": "application/json, text/event-stream"}
    with contextlib.ExitStack() as streams:
        opened = _sessions_with_a_stream(server, headers, streams)
        created = server.client(token).post(
            "/prompts", json={"name": "fresh", "template": "hi", "visibility": "public"}
        )
        assert created.status_code == 201
        for _, line_iter in opened:
            data = next(line for line in line_iter if line.startswith("data:"))
            assert json.loads(data[5:])["method"] == "notifications/prompts/list_changed"


def test_closing_a_session_ends_its_streams_on_every_worker(
    start: Callable[..., Gateway], postgres: str, redis_url: str
) -> None:
    """Each DELETE is its own connection, as each stream is, so about half of them reach
    the other worker; a stream left there would end only at its next keep-alive (15 s),
    after the 5 s this test reads for."""
    server = start(WORKERS="2", REDIS_URL=redis_url, DATABASE_URL=create_database(postgres, "closing"))
    token = mint(claims(teams=None))
    headers = {"Authorization": f"Bearer {token}", "Accept": "application/json, text/event-stream"}
    with contextlib.ExitStack() as streams:
        for session, line_iter in _sessions_with_a_stream(server, headers, streams):
            closed = httpx.delete(f"{server.url}/mcp", headers={**headers, "Mcp-Session-Id": session})
            assert closed.status_code == 204
            assert [line for line in line_iter if line.startswith("data:")] == [], "the stream ended without a word"


def test_closing_a_session_ends_its_calls_on_every_worker(
    start: Callable[..., Gateway], postgres: str, redis_url: str
) -> None:
    """A call waiting on the client's answer runs in the worker its connection reached;
    the DELETE, on a connection of its own, reaches either. Six rounds: all six landing
    on the calling worker is a 1 in 64 chance. Left running, a call waits 300 s."""
    server = start(WORKERS="2", REDIS_URL=redis_url, DATABASE_URL=create_database(postgres, "calls"))
    token = mint(claims(teams=None))
    headers = {"Authorization": f"Bearer {token}", "Accept": "application/json, text/event-stream"}
    params = {"protocolVersion": "2025-11-25", "capabilities": {"elicitation": {}}}
    init = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": params}
    call = {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "up__confirm", "arguments": {}}}
    with upstream_server() as upstream:
        up = {"name": "up", "url": upstream, "visibility": "public", "credentials": {"bearer_token": UPSTREAM_TOKEN}}
        assert server.client(token).post("/gateways", json=up).status_code == 201
        for _ in range(6):
            session = {
                **headers,
                "Mcp-Session-Id": httpx.post(f"{server.url}/mcp", headers=headers, json=init).headers["mcp-session-id"],
            }
            with (
                httpx.Client(timeout=5) as caller,
                caller.stream("POST", f"{server.url}/mcp", headers=session, json=call) as stream,
            ):
                lines = stream.iter_lines()
                assert "elicitation/create" in next(line for line in lines if line.startswith("data:"))
                assert httpx.delete(f"{server.url}/mcp", headers=session).status_code == 204
                rest = list(lines)  # ends when the gateway ends the call; a read timeout fails
            assert not any('"result"' in line for line in rest), "an ended call has no result"


def test_an_answer_reaches_the_worker_that_asked(start: Callable[..., Gateway], postgres: str, redis_url: str) -> None:
    """The upstream's question goes out on the call's stream; the client's answer comes
    back on a new connection, which may reach the other worker. Four rounds: all four
    answers landing on the asking worker is a 1 in 16 chance."""
    server = start(WORKERS="2", REDIS_URL=redis_url, DATABASE_URL=create_database(postgres, "answers"))
    token = mint(claims(teams=None))
    headers = {"Authorization": f"Bearer {token}", "Accept": "application/json, text/event-stream"}
    with upstream_server() as upstream:
        up = {"name": "up", "url": upstream, "visibility": "public", "credentials": {"bearer_token": UPSTREAM_TOKEN}}
        assert server.client(token).post("/gateways", json=up).status_code == 201
        params = {"protocolVersion": "2025-11-25", "capabilities": {"elicitation": {}}}
        init = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": params}
        session = httpx.post(f"{server.url}/mcp", headers=headers, json=init).headers["mcp-session-id"]
        headers["Mcp-Session-Id"] = session
        for round_ in range(4):
            call = {"jsonrpc": "2.0", "id": 10 + round_, "method": "tools/call",
                    "params": {"name": "up__confirm", "arguments": {}}}  # fmt: skip
            with (
                httpx.Client(timeout=10) as caller,
                caller.stream("POST", f"{server.url}/mcp", headers=headers, json=call) as stream,
            ):
                events = (json.loads(line[5:]) for line in stream.iter_lines() if line.startswith("data:"))
                question = next(events)
                assert question["method"] == "elicitation/create"
                answer = {
                    "jsonrpc": "2.0",
                    "id": question["id"],
                    "result": {"action": "accept", "content": {"ok": True}},
                }
                assert httpx.post(f"{server.url}/mcp", headers=headers, json=answer).status_code == 202
                reply = next(events)
            assert reply["id"] == 10 + round_
            assert reply["result"]["content"][0]["text"] == "accept: {'ok': True}"


def test_a_redis_that_lost_its_data_does_not_forget_revocations(
    start: Callable[..., Gateway], postgres: str, tmp_path: Path
) -> None:
    with redis_server(tmp_path / "redis") as (url, _):
        server = start(
            MCPGATEWAY_ADMIN_API_ENABLED="true", REDIS_URL=url, DATABASE_URL=create_database(postgres, "lost")
        )
        token = claims(teams=None)
        server.client(server.login()).post("/admin/revocations", json={"jti": token["jti"]})
        port = url.rsplit(":", 1)[1].split("/")[0]
        subprocess.run(["redis-cli", "-p", port, "FLUSHALL"], check=True, capture_output=True)
        assert server.client(mint(token)).get("/auth/me").json()["error"]["code"] == "token_revoked"
        # The look-up that found the set gone has the gateway fill it again from the store.
        command = ["redis-cli", "-p", port, "SISMEMBER", "policygate:revoked", token["jti"]]
        eventually(
            lambda: subprocess.run(command, check=True, capture_output=True, text=True).stdout.strip() == "1",
            within=10, failure="the revocation set was not filled again", every=0.1,
        )  # fmt: skip
        assert server.client(mint(token)).get("/auth/me").json()["error"]["code"] == "token_revoked"


def test_a_store_outage_fails_closed(start: Callable[..., Gateway]) -> None:
    with postgres_server() as postgres:
        server = start(DATABASE_URL=postgres.url)
        assert server.client(mint(claims(teams=None))).get("/auth/me").status_code == 200
        postgres.stop()
        refused = server.client(mint(claims("someone-new@example.com"))).get("/auth/me")
        assert (refused.status_code, refused.json()["error"]["code"]) == (503, "revocation_unavailable")
        ready = httpx.get(f"{server.url}/ready")
        assert (ready.status_code, ready.json()["error"]["code"]) == (503, "not_ready")


def test_a_redis_that_stops_answering_slows_requests_but_never_hangs_them(
    start: Callable[..., Gateway], tmp_path: Path
) -> None:
    """A frozen Redis (SIGSTOP: the socket stays open, nothing answers, as with a
    half-open connection or a stalled server) is waited for two seconds per command. The
    user is then read from the store, readiness says Redis is down, and once Redis
    answers again everything recovers without a restart. Rate limits, which only Redis
    can count across workers, refuse what they cannot count."""
    overlay = tmp_path / "limits"
    overlay.mkdir()
    (overlay / "ratelimits.yaml").write_text(
        "apiVersion: policygate/v1\nkind: RateLimits\nmetadata: {name: default}\nspec:\n  enabled: true\n"
        "  buckets: [{id: per-user, key: user, limit: 100, windowSeconds: 60}]\n"
    )
    with redis_server(tmp_path / "redis") as (url, redis):
        server = start(REDIS_URL=url)
        limited = start(REDIS_URL=url, POLICY_PATHS=f"{ROOT / 'policies'},{overlay}")
        client = server.client(mint(claims(teams=None)))
        assert client.get("/auth/me").status_code == 200
        assert limited.client(mint(claims(teams=None))).get("/auth/me").status_code == 200
        redis.send_signal(signal.SIGSTOP)
        try:
            me = client.get("/auth/me")
            assert me.status_code == 200, me.text
            assert "cache look-up failed, asking the store: TimeoutError" in server.log.read_text()
            uncounted = limited.client(mint(claims(teams=None))).get("/auth/me")
            assert (uncounted.status_code, uncounted.json()["error"]["code"]) == (503, "unavailable")
            ready = httpx.get(f"{server.url}/ready", timeout=30)
            assert ready.status_code == 503
            assert ready.json()["error"]["details"]["checks"] == {"store": True, "redis": False}
        finally:
            redis.send_signal(signal.SIGCONT)

        def recovered() -> httpx.Response | None:
            ready = httpx.get(f"{server.url}/ready", timeout=30)
            return ready if ready.status_code == 200 else None

        ready = eventually(recovered, within=20, failure="the gateway did not recover with Redis", every=0.2)
        assert ready.json()["checks"] == {"store": True, "redis": True}
        assert client.get("/auth/me").status_code == 200


def test_a_nul_character_is_a_bad_value_on_every_backend(
    start: Callable[..., Gateway], backend: dict[str, str]
) -> None:
    """PostgreSQL refuses a NUL in text where SQLite stores or compares it: either way the
    request is at fault, never the store (no 503, and nothing is written)."""
    server = start(**backend)
    admin = server.client(mint(claims(teams=None)))
    stored = admin.post("/prompts", json={"name": "nul", "template": "x", "arguments": [{"name": "a\x00"}]})
    assert (stored.status_code, stored.json()["error"]["code"]) == (422, "invalid_body")
    assert admin.get("/prompts").json()["items"] == []
    found = admin.get("/tools/a%00b")  # SQLite compares and finds nothing; PostgreSQL refuses to compare
    assert (found.status_code, found.json()["error"]["code"]) in ((404, "not_found"), (400, "invalid_value"))
    headers = {"Accept": "application/json, text/event-stream"}
    init = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": "2025-11-25"}}
    session = admin.post("/mcp", headers=headers, json=init).headers["mcp-session-id"]
    call = {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "a\x00b", "arguments": {}}}
    called = admin.post("/mcp", headers={**headers, "Mcp-Session-Id": session}, json=call)
    assert called.status_code in (200, 400), called.text
    assert called.json()["error"]["code"] in (-32602, "invalid_value")
