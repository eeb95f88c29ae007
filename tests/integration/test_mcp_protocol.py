"""The MCP endpoint's protocol rules, checked with raw HTTP where the SDK would hide them."""

from __future__ import annotations

import asyncio
import http.client
import json
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from mcp import MCPError

from engine.web.mcp_endpoint import STREAMS_PER_SESSION
from tests.integration.conftest import start_server, stop_server
from tests.integration.mcp_client import mcp_session, register_upstream, upstream_server
from tests.integration.servers import ROOT, Gateway, claims, free_port, mint
from tests.integration.waiting import eventually

INIT = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": "2025-11-25"}}


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    with upstream_server() as upstream_url:
        gw = start_server(tmp_path_factory.mktemp("mcpp"))
        up = register_upstream(gw, upstream_url)
        admin = gw.client(mint(claims(teams=None)))
        tools = {t["name"]: t["id"] for t in admin.get("/tools").json()["items"]}
        server = admin.post(
            "/servers", json={"name": "adder", "visibility": "public", "tool_ids": [tools["add"]]}
        ).json()
        yield {"gw": gw, "server": server, "tools": tools, "upstream": up, "upstream_url": upstream_url}
        stop_server(gw)


def _headers(token: str, **extra: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", "Accept": "application/json, text/event-stream", **extra}


def _open(gw: Gateway, token: str, path: str = "/mcp") -> str:
    response = httpx.post(f"{gw.url}{path}", headers=_headers(token), json=INIT)
    assert response.status_code == 200, response.text
    return response.headers["mcp-session-id"]


def _call(gw: Gateway, token: str, session: str, message: Any, path: str = "/mcp", **headers: str) -> httpx.Response:
    return httpx.post(
        f"{gw.url}{path}", headers=_headers(token, **{"Mcp-Session-Id": session, **headers}), json=message
    )


def test_version_negotiation(env: dict[str, Any]) -> None:
    gw, token = env["gw"], mint(claims(teams=None))
    for offered, agreed in (("2025-06-18", "2025-06-18"), ("2025-03-26", "2025-03-26"), ("1999-01-01", "2025-11-25")):
        message = {**INIT, "params": {"protocolVersion": offered}}
        reply = httpx.post(f"{gw.url}/mcp", headers=_headers(token), json=message).json()
        assert reply["result"]["protocolVersion"] == agreed


def test_protocol_header_session_and_batch_rules(env: dict[str, Any]) -> None:
    gw, token = env["gw"], mint(claims(teams=None))
    session = _open(gw, token)
    ping = {"jsonrpc": "2.0", "id": 2, "method": "ping"}
    assert _call(gw, token, session, ping).json() == {"jsonrpc": "2.0", "id": 2, "result": {}}
    bad_version = _call(gw, token, session, ping, **{"MCP-Protocol-Version": "2024-01-01"})
    assert (bad_version.status_code, bad_version.json()["error"]["code"]) == (400, "protocol_version_unsupported")
    unknown = _call(gw, token, "f" * 32, ping)
    assert (unknown.status_code, unknown.json()["error"]["code"]) == (404, "session_not_found")
    other_user = mint(claims("someone@example.com", teams=None))
    assert _call(gw, other_user, session, ping).status_code in (401, 404), "a session cannot be borrowed"
    missing = httpx.post(f"{gw.url}/mcp", headers=_headers(token), json=ping)
    assert (missing.status_code, missing.json()["error"]["code"]) == (400, "session_required")
    batch = _call(gw, token, session, [ping, {**ping, "id": 3}])
    assert (batch.status_code, batch.json()["error"]["code"]) == (400, "batch_not_supported")
    notification = _call(gw, token, session, {"jsonrpc": "2.0", "method": "notifications/initialized"})
    assert (notification.status_code, notification.text) == (202, "")
    parse = httpx.post(f"{gw.url}/mcp", headers=_headers(token, **{"Mcp-Session-Id": session}), content=b"{oops")
    assert (parse.status_code, parse.json()["error"]["code"]) == (400, -32700)
    unknown_method = _call(gw, token, session, {"jsonrpc": "2.0", "id": 9, "method": "sampling/createMessage"})
    assert unknown_method.json()["error"]["code"] == -32601
    discover = _call(gw, token, session, {"jsonrpc": "2.0", "id": 10, "method": "server/discover"})
    assert discover.json()["error"]["code"] == -32601
    level = _call(
        gw, token, session, {"jsonrpc": "2.0", "id": 11, "method": "logging/setLevel", "params": {"level": "info"}}
    )
    assert level.json()["result"] == {}
    bad_level = _call(gw, token, session, {"jsonrpc": "2.0", "id": 12, "method": "logging/setLevel", "params": {}})
    assert bad_level.json()["error"]["code"] == -32602
    completion = {"ref": {"type": "ref/prompt", "name": "p"}, "argument": {"name": "a", "value": "x"}}
    completed = _call(
        gw, token, session, {"jsonrpc": "2.0", "id": 13, "method": "completion/complete", "params": completion}
    )
    assert completed.json()["result"]["completion"]["values"] == []
    assert httpx.delete(f"{gw.url}/mcp", headers=_headers(token, **{"Mcp-Session-Id": session})).status_code == 204
    assert _call(gw, token, session, ping).status_code == 404


def test_old_clients_may_batch(env: dict[str, Any]) -> None:
    gw, token = env["gw"], mint(claims(teams=None))
    reply = httpx.post(
        f"{gw.url}/mcp", headers=_headers(token), json={**INIT, "params": {"protocolVersion": "2025-03-26"}}
    )
    session = reply.headers["mcp-session-id"]
    batch = _call(gw, token, session, [{"jsonrpc": "2.0", "id": i, "method": "ping"} for i in (1, 2)])
    assert [r["id"] for r in batch.json()] == [1, 2]
    # `initialize` opens the session the rest of a batch would need, so it comes alone.
    call = {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "add", "arguments": {"a": 1}}}
    old = {**INIT, "params": {"protocolVersion": "2025-03-26"}}
    sneaked = httpx.post(f"{gw.url}/mcp", headers=_headers(token), json=[old, call])
    assert (sneaked.status_code, sneaked.json()["error"]["code"]) == (400, "batch_not_supported")
    assert "mcp-session-id" not in sneaked.headers


def test_a_message_the_endpoint_cannot_take_is_a_400_and_never_a_500(env: dict[str, Any]) -> None:
    gw, token = env["gw"], mint(claims(teams=None))
    session = _open(gw, token)
    json_type = {"Content-Type": "application/json"}
    headers = _headers(token, **{"Mcp-Session-Id": session}, **json_type)
    deep = b"[" * 1000 + b"1" + b"]" * 1000  # orjson reads it; echoing it back cannot be encoded
    for body in (
        b'{"jsonrpc":"2.0","id":%s,"method":"ping"}' % deep,
        b'{"jsonrpc":"2.0","id":null,"method":"ping"}',
        b'{"jsonrpc":"2.0","id":true,"method":"ping"}',
        b'{"jsonrpc":"1.0","method":"notifications/initialized"}',
        b'{"jsonrpc":"2.0","id":7}',  # neither a request nor an answer
    ):
        refused = httpx.post(f"{gw.url}/mcp", headers=headers, content=body)
        assert (refused.status_code, refused.json()["error"]["code"]) == (400, -32600), body[:60]
        assert refused.json()["id"] is None
    opening = b'{"jsonrpc":"2.0","id":%s,"method":"initialize","params":{"protocolVersion":"2025-11-25"}}' % deep
    refused = httpx.post(f"{gw.url}/mcp", headers=_headers(token, **json_type), content=opening)
    assert refused.status_code == 400
    assert "mcp-session-id" not in refused.headers, "no session is opened for a message that is refused"
    # An answer to no question is dropped, however deep it nests.
    answer = b'{"jsonrpc":"2.0","id":"q-1","result":%s}' % (b'{"a":' * 1000 + b"1" + b"}" * 1000)
    assert httpx.post(f"{gw.url}/mcp", headers=headers, content=answer).status_code == 202
    # In an old client's batch, each message is answered apart, the bad one without its id.
    old_init = {**INIT, "params": {"protocolVersion": "2025-03-26"}}
    old = httpx.post(f"{gw.url}/mcp", headers=_headers(token), json=old_init)
    batch = b'[{"jsonrpc":"2.0","id":%s,"method":"ping"},{"jsonrpc":"2.0","id":2,"method":"ping"}]' % deep
    old_headers = _headers(token, **{"Mcp-Session-Id": old.headers["mcp-session-id"]}, **json_type)
    replies = httpx.post(f"{gw.url}/mcp", headers=old_headers, content=batch)
    assert replies.status_code == 200
    assert [(r["id"], r.get("error", {}).get("code")) for r in replies.json()] == [(None, -32600), (2, None)]


def test_a_batch_with_a_refused_message_runs_none_of_it(env: dict[str, Any]) -> None:
    """A 403 after a tool call ran would lose its answer, and a retry would run it twice."""
    gw = env["gw"]
    token = mint(claims(teams=None, scopes={"permissions": ["tools.read", "tools.execute"]}))
    old_init = {**INIT, "params": {"protocolVersion": "2025-03-26"}}
    session = httpx.post(f"{gw.url}/mcp", headers=_headers(token), json=old_init).headers["mcp-session-id"]
    leak = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "leak", "arguments": {}}}
    alone = _call(gw, token, session, [leak])
    assert alone.json()[0]["error"]["data"]["code"] == "content_pii", "the call runs (and its answer is refused)"
    violations = gw.log.read_text().count("content_violation")
    listing = {"jsonrpc": "2.0", "id": 2, "method": "prompts/list"}
    refused = _call(gw, token, session, [leak, listing])
    assert (refused.status_code, refused.json()["error"]["code"]) == (403, "permission_missing")
    assert _call(gw, token, session, [{"jsonrpc": "2.0", "id": 3, "method": "ping"}]).status_code == 200
    assert gw.log.read_text().count("content_violation") == violations, "the call in the refused batch never ran"


def test_sse_answers_when_only_sse_is_accepted(env: dict[str, Any]) -> None:
    gw, token = env["gw"], mint(claims(teams=None))
    response = httpx.post(f"{gw.url}/mcp", headers=_headers(token, Accept="text/event-stream"), json=INIT)
    assert response.headers["content-type"].startswith("text/event-stream")
    data = next(line for line in response.text.splitlines() if line.startswith("data:"))
    assert json.loads(data[5:])["result"]["protocolVersion"] == "2025-11-25"


def test_a_call_without_notifications_is_answered_as_json(env: dict[str, Any]) -> None:
    gw, token = env["gw"], mint(claims(teams=None))
    session = _open(gw, token)
    call = {"jsonrpc": "2.0", "id": 6, "method": "tools/call", "params": {"name": "add", "arguments": {"a": 1}}}
    response = _call(gw, token, session, call)
    assert response.headers["content-type"].startswith("application/json")
    assert response.json()["result"]["content"][0]["text"] == "2"
    sse_only = _call(gw, token, session, call, Accept="text/event-stream")
    assert sse_only.headers["content-type"].startswith("text/event-stream")
    data = next(line for line in sse_only.text.splitlines() if line.startswith("data:"))
    assert json.loads(data[5:])["result"]["content"][0]["text"] == "2"


def test_calls_to_an_upstream_reuse_one_connection(env: dict[str, Any]) -> None:
    gw, token = env["gw"], mint(claims(teams=None))
    session = _open(gw, token)
    ports = set()
    for ident in range(12):
        call = {"jsonrpc": "2.0", "id": ident, "method": "tools/call", "params": {"name": "peer", "arguments": {}}}
        ports.add(_call(gw, token, session, call).json()["result"]["content"][0]["text"])
    assert len(ports) <= 2, f"the gateway opened a connection per call: ports {sorted(ports)}"


def test_an_answer_to_no_question_is_accepted_and_ignored(env: dict[str, Any]) -> None:
    gw, token = env["gw"], mint(claims(teams=None))
    session = _open(gw, token)
    stray = {"jsonrpc": "2.0", "id": "pg-0000", "result": {"action": "accept"}}
    assert _call(gw, token, session, stray).status_code == 202
    assert _call(gw, token, session, {"jsonrpc": "2.0", "id": 9, "method": "ping"}).json()["result"] == {}


def test_progress_and_log_notifications_stream_before_the_result(env: dict[str, Any]) -> None:
    gw, token = env["gw"], mint(claims(teams=None))
    session = _open(gw, token)
    call = {"jsonrpc": "2.0", "id": 5, "method": "tools/call",
            "params": {"name": "count", "arguments": {}, "_meta": {"progressToken": "p-1"}}}  # fmt: skip
    response = _call(gw, token, session, call)
    assert response.headers["content-type"].startswith("text/event-stream")
    messages = [json.loads(line[5:]) for line in response.text.splitlines() if line.startswith("data:")]
    progress = [m["params"]["progress"] for m in messages if m.get("method") == "notifications/progress"]
    logs = [m["params"]["data"] for m in messages if m.get("method") == "notifications/message"]
    assert progress == [1, 2, 3]
    assert all(m["params"]["progressToken"] == "p-1" for m in messages if m.get("method") == "notifications/progress")
    assert logs == ["step 1", "step 2", "step 3"]
    assert messages[-1]["id"] == 5
    assert messages[-1]["result"]["content"][0]["text"] == "counted"
    json_only = _call(gw, token, session, call, Accept="application/json")
    assert json_only.json()["result"]["content"][0]["text"] == "counted"


def test_foreign_origins_are_refused(env: dict[str, Any]) -> None:
    gw, token = env["gw"], mint(claims(teams=None))
    refused = httpx.post(f"{gw.url}/mcp", headers=_headers(token, Origin="https://evil.example"), json=INIT)
    assert (refused.status_code, refused.json()["error"]["code"]) == (403, "origin_not_allowed")
    assert httpx.post(f"{gw.url}/mcp", headers=_headers(token, Origin=gw.url), json=INIT).status_code == 200
    rebound = _headers(token, Host="evil.example.com", Origin="http://evil.example.com")
    rebinding = httpx.post(f"{gw.url}/mcp", headers=rebound, json=INIT)
    assert (rebinding.status_code, rebinding.json()["error"]["code"]) == (403, "host_not_allowed")


def test_a_gateway_reached_by_name_trusts_only_the_origins_the_policy_lists(tmp_path: Path) -> None:
    # Bound beyond loopback, any Host may arrive: under DNS rebinding an attacker's page
    # sends its own name as Host and Origin, so only listed origins and address Hosts pass.
    gw = start_server(tmp_path, address="0.0.0.0", ALLOWED_ORIGINS="https://gw.example.com")  # noqa: S104
    try:
        token = mint(claims(teams=None))

        def post(host: str, origin: str) -> httpx.Response:
            return httpx.post(f"{gw.url}/mcp", headers=_headers(token, Host=host, Origin=origin), json=INIT)

        rebinding = post("evil.example.com:4444", "http://evil.example.com:4444")
        assert (rebinding.status_code, rebinding.json()["error"]["code"]) == (403, "origin_not_allowed")
        assert post("gw.example.com", "https://gw.example.com").status_code == 200
        by_address = gw.url.removeprefix("http://")
        assert post(by_address, gw.url).status_code == 200
        assert post(by_address, "http://evil.example.com").status_code == 403
    finally:
        stop_server(gw)


def test_a_server_scoped_token_reaches_only_its_server(env: dict[str, Any]) -> None:
    gw, server = env["gw"], env["server"]
    scoped = mint(claims(teams=None, scopes={"server_id": server["id"]}))
    path = f"/servers/{server['id']}/mcp"

    async def scenario() -> set[str]:
        async with mcp_session(f"{gw.url}{path}", scoped) as client:
            result = await client.call_tool("add", {"a": 20, "b": 22})
            assert result.content[0].text == "42"
            return {t.name for t in (await client.list_tools()).tools}

    assert asyncio.run(scenario()) == {"add"}
    everything = httpx.post(f"{gw.url}/mcp", headers=_headers(scoped), json=INIT)
    assert (everything.status_code, everything.json()["error"]["code"]) == (403, "server_scope_denied")
    other = httpx.post(f"{gw.url}/servers/another/mcp", headers=_headers(scoped), json=INIT)
    assert (other.status_code, other.json()["error"]["code"]) == (403, "server_scope_mismatch")
    rest = httpx.get(f"{gw.url}/tools", headers=_headers(scoped))
    assert rest.status_code == 403
    docs = httpx.get(f"{gw.url}/openapi.json", headers=_headers(scoped))
    assert docs.status_code == 200, "docs are exempt from server scoping"


def test_team_tokens_see_only_their_teams_tools(env: dict[str, Any]) -> None:
    gw = env["gw"]
    admin = gw.client(mint(claims(teams=None)))
    admin.post("/tools", json={"name": "red-only", "team_id": "red", "visibility": "team"})
    admin.post("/tools", json={"name": "blue-only", "team_id": "blue", "visibility": "team"})

    async def names(teams: list[str] | None) -> set[str]:
        async with mcp_session(f"{gw.url}/mcp", mint(claims(teams=teams))) as client:
            return {t.name for t in (await client.list_tools()).tools}

    red = asyncio.run(names(["red"]))
    assert "red-only" in red
    assert "blue-only" not in red
    public_only = asyncio.run(names([]))
    assert not public_only & {"red-only", "blue-only"}
    assert {"red-only", "blue-only"} <= asyncio.run(names(None))


def _listening(
    gw: Gateway, token: str, session: str, *, until_data: bool, path: str = "/mcp"
) -> tuple[threading.Thread, list[str]]:
    """A thread reading the session's event stream into a list, started once the stream
    is open; with `until_data` it stops after the first message."""
    lines: list[str] = []
    opened = threading.Event()

    def listen() -> None:
        headers = _headers(token, Accept="text/event-stream", **{"Mcp-Session-Id": session})
        with httpx.stream("GET", f"{gw.url}{path}", headers=headers, timeout=10) as stream:
            for line in stream.iter_lines():
                opened.set()
                lines.append(line)
                if until_data and line.startswith("data:"):
                    return

    listener = threading.Thread(target=listen, daemon=True)
    listener.start()
    assert opened.wait(5)
    return listener, lines


def test_list_changed_is_pushed_on_the_event_stream(env: dict[str, Any]) -> None:
    gw, token = env["gw"], mint(claims(teams=None))
    listener, lines = _listening(gw, token, _open(gw, token), until_data=True)
    gw.client(token).post("/prompts", json={"name": "fresh", "template": "hello", "visibility": "public"})
    listener.join(10)
    received = [json.loads(line[5:])["method"] for line in lines if line.startswith("data:")]
    assert received == ["notifications/prompts/list_changed"]


def test_a_session_holds_a_few_event_streams_at_most(env: dict[str, Any]) -> None:
    gw, token = env["gw"], mint(claims(teams=None))
    session = _open(gw, token)
    streams = [_listening(gw, token, session, until_data=False) for _ in range(STREAMS_PER_SESSION)]
    headers = _headers(token, Accept="text/event-stream", **{"Mcp-Session-Id": session})
    one_more = httpx.get(f"{gw.url}/mcp", headers=headers, timeout=10)
    assert (one_more.status_code, one_more.json()["error"]["code"]) == (429, "too_many_streams")
    other = _open(gw, token)
    streams.append(_listening(gw, token, other, until_data=False))  # another session is not held back
    for closed in (session, other):
        assert httpx.delete(f"{gw.url}/mcp", headers=_headers(token, **{"Mcp-Session-Id": closed})).status_code == 204
    for listener, _ in streams:
        listener.join(10)
        assert not listener.is_alive()


def test_a_session_hears_a_change_once_and_only_when_it_can_see_what_changed(env: dict[str, Any]) -> None:
    gw = env["gw"]
    admin = gw.client(mint(claims(teams=None)))
    red = mint(claims(teams=["red"]))
    session = _open(gw, red)
    streams = [_listening(gw, red, session, until_data=False) for _ in range(2)]
    stamp = time.monotonic_ns()
    for team in ("blue", "red"):  # the blue one is hidden from this caller
        created = admin.post(
            "/prompts", json={"name": f"{team}-{stamp}", "template": "hi", "team_id": team, "visibility": "team"}
        )
        assert created.status_code == 201, created.text

    def heard() -> list[str]:
        return [line for _, lines in streams for line in lines if line.startswith("data:")]

    eventually(heard, within=5, failure="no stream heard the change", every=0.02)
    time.sleep(0.3)  # room for a duplicate or a late hidden change to arrive
    # Closing the session ends both its streams at once.
    assert httpx.delete(f"{gw.url}/mcp", headers=_headers(red, **{"Mcp-Session-Id": session})).status_code == 204
    for listener, _ in streams:
        listener.join(10)
        assert not listener.is_alive()
    assert [json.loads(line[5:])["method"] for line in heard()] == ["notifications/prompts/list_changed"]


def test_a_virtual_servers_streams_hear_its_membership_change(env: dict[str, Any]) -> None:
    gw, tools = env["gw"], env["tools"]
    token = mint(claims(teams=None))
    admin = gw.client(token)
    server = admin.post("/servers", json={"name": f"s-{time.monotonic_ns()}", "visibility": "public"}).json()
    path = f"/servers/{server['id']}/mcp"
    listener, lines = _listening(gw, token, _open(gw, token, path), until_data=True, path=path)
    assert admin.patch(f"/servers/{server['id']}", json={"tool_ids": [tools["add"]]}).status_code == 200
    listener.join(10)
    assert [json.loads(line[5:])["method"] for line in lines if line.startswith("data:")] == [
        "notifications/tools/list_changed"
    ]


def test_an_event_stream_ends_with_its_session_or_its_token(env: dict[str, Any]) -> None:
    gw = env["gw"]
    admin = gw.client(mint(claims(teams=None)))

    def stream_after(end: Callable[[dict[str, str], str], None]) -> list[str]:
        """What a stream hears when `end(created, session)` runs and then a list changes."""
        created = admin.post("/tokens", json={"name": f"stream-{time.monotonic_ns()}"}).json()
        session = _open(gw, created["token"])
        listener, lines = _listening(gw, created["token"], session, until_data=False)
        end(created, session)
        admin.post("/prompts", json={"name": f"p{time.monotonic_ns()}", "template": "hi", "visibility": "public"})
        listener.join(10)
        assert not listener.is_alive(), "the stream outlived what entitled it"
        return [line for line in lines if line.startswith("data:")]

    def delete(created: dict[str, str], session: str) -> None:
        headers = _headers(created["token"], **{"Mcp-Session-Id": session})
        assert httpx.delete(f"{gw.url}/mcp", headers=headers).status_code == 204

    def revoke(created: dict[str, str], _: str) -> None:
        assert admin.delete(f"/tokens/{created['jti']}").status_code == 204

    assert stream_after(delete) == []
    assert stream_after(revoke) == []


def test_an_unreachable_upstream_fails_alone(env: dict[str, Any]) -> None:
    gw = env["gw"]
    admin = gw.client(mint(claims(teams=None)))
    url = "http://user:hunter2@127.0.0.1:9/mcp?api_key=abc123"
    dead = admin.post("/gateways", json={"name": "dead", "url": url, "visibility": "public"})
    assert dead.status_code == 201
    assert dead.json()["status"] == "unreachable"
    assert dead.json()["url"] == "http://127.0.0.1:9/mcp?***", "secrets in the URL are never shown"
    assert admin.get("/gateways").json()["items"]
    token = mint(claims(teams=None))

    async def still_works() -> str:
        async with mcp_session(f"{gw.url}/mcp", token) as client:
            return str((await client.call_tool("add", {"a": 1, "b": 1})).content[0].text)

    assert asyncio.run(still_works()) == "2"


def test_a_changed_upstream_tool_is_blocked_until_approved(tmp_path_factory: pytest.TempPathFactory) -> None:
    port = free_port()
    gw = start_server(tmp_path_factory.mktemp("poison"), MCPGATEWAY_ADMIN_API_ENABLED="true")
    try:
        with upstream_server(None, port=port, variant="1") as url:
            admin = gw.client(mint(claims(teams=None)))
            up = admin.post("/gateways", json={"name": "p", "url": url, "visibility": "public", "prefix": "p_"}).json()
        with upstream_server(None, port=port, variant="2"):
            refreshed = admin.post(f"/gateways/{up['id']}/refresh").json()
            assert refreshed["discovered"]["changed"] == ["p_add"]

            async def call() -> Any:
                async with mcp_session(f"{gw.url}/mcp", mint(claims(teams=None))) as client:
                    listed = "p_add" in {t.name for t in (await client.list_tools()).tools}
                    try:
                        return listed, (await client.call_tool("p_add", {"a": 1})).content[0].text
                    except MCPError as err:
                        return listed, err.code

            assert asyncio.run(call()) == (False, -32012), "a tool `tools/call` refuses is not listed"
            tool = next(t for t in admin.get("/tools").json()["items"] if t["name"] == "p_add")
            assert tool["changed"] is True
            developer = {"email": "dev@example.com", "password": "developer password", "roles": ["developer"]}
            assert admin.post("/admin/users", json=developer).status_code == 201
            not_admin = gw.client(mint(claims("dev@example.com", teams=[])))
            # Taken before redaction: only the admins who approve see it.
            assert "current_hash" not in not_admin.get(f"/tools/{tool['id']}").json()
            refused = not_admin.patch(f"/tools/{tool['id']}", json={"approve_change": tool["current_hash"]})
            assert (refused.status_code, refused.json()["error"]["code"]) == (403, "not_owner")
            approved = admin.patch(f"/tools/{tool['id']}", json={"approve_change": tool["current_hash"]}).json()
            assert approved["changed"] is False
            assert asyncio.run(call()) == (True, "2")
    finally:
        stop_server(gw)


def _patched_slowly(gw: Gateway, token: str, path: str, body: dict[str, Any], meanwhile: Callable[[], None]) -> Any:
    """PATCH `path`, running `meanwhile` after the gateway has the request's head and
    has read the item, and before it has the body; returns the status and JSON answer."""
    host, port = gw.url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    data = json.dumps(body).encode()
    try:
        connection.putrequest("PATCH", path)
        for name, value in (("Authorization", f"Bearer {token}"), ("Content-Type", "application/json"),
                            ("Content-Length", str(len(data)))):  # fmt: skip
            connection.putheader(name, value)
        connection.endheaders()
        time.sleep(0.5)
        meanwhile()
        connection.send(data)
        answer = connection.getresponse()
        return answer.status, json.loads(answer.read())
    finally:
        connection.close()


def test_a_sync_during_an_edit_or_after_a_review_is_never_overwritten(tmp_path_factory: pytest.TempPathFactory) -> None:
    """An edit writes only what it was sent, and an approval pins only the version the
    admin reviewed: a tool an upstream rewrites meanwhile stays flagged."""
    port = free_port()
    gw = start_server(tmp_path_factory.mktemp("race"))
    token = mint(claims(teams=None))
    admin = gw.client(token)
    try:
        with upstream_server(None, port=port, variant="1") as url:
            up = admin.post("/gateways", json={"name": "r", "url": url, "visibility": "public", "prefix": "r_"}).json()
        tool = next(t["id"] for t in admin.get("/tools").json()["items"] if t["name"] == "r_add")

        def sync() -> None:
            assert admin.post(f"/gateways/{up['id']}/refresh").json()["discovered"]["changed"] == ["r_add"]

        with upstream_server(None, port=port, variant="2"):
            status, edited = _patched_slowly(gw, token, f"/tools/{tool}", {"description": "adds"}, sync)
        assert (status, edited["description"], edited["changed"]) == (200, "adds", True)
        reviewed = admin.get(f"/tools/{tool}").json()["current_hash"]
        with upstream_server(None, port=port, variant="3"):
            sync()
            refused = admin.patch(f"/tools/{tool}", json={"approve_change": reviewed})
            assert (refused.status_code, refused.json()["error"]["code"]) == (409, "tool_changed_again")
            shown = admin.get(f"/tools/{tool}").json()
            assert (shown["changed"], shown["current_hash"] != reviewed) == (True, True)
            approved = admin.patch(f"/tools/{tool}", json={"approve_change": shown["current_hash"]})
            assert (approved.status_code, approved.json()["changed"]) == (200, False)

        def remove() -> None:
            assert admin.delete(f"/tools/{tool}").status_code == 204

        status, gone = _patched_slowly(gw, token, f"/tools/{tool}", {"approve_change": reviewed}, remove)
        assert (status, gone["error"]["code"]) == (404, "not_found")
    finally:
        stop_server(gw)


def test_anonymous_callers_get_401_even_when_authentication_is_optional(start: Any) -> None:
    server = start(AUTH_REQUIRED="false")
    response = httpx.post(f"{server.url}/mcp", headers={"Accept": "application/json"}, json=INIT)
    assert (response.status_code, response.json()["error"]["code"]) == (401, "auth_required")


def test_upstreams_on_private_addresses_are_refused_by_default(start: Any) -> None:
    server = start(UPSTREAMS_ALLOW_INTERNAL_NETWORKS="false")
    admin = server.client(mint(claims(teams=None)))
    urls = ("http://127.0.0.1:9/mcp", "http://169.254.169.254/latest", "http://[::1]:9/mcp", "http://10.1.2.3/mcp")
    for url in (*urls, "http://[64:ff9b::a9fe:a9fe]/latest"):  # NAT64 of 169.254.169.254
        refused = admin.post("/gateways", json={"name": "probe", "url": url})
        assert (refused.status_code, refused.json()["error"]["code"]) == (422, "upstream_address_refused"), url
    assert admin.get("/gateways").json()["items"] == [], "nothing was stored"


def test_a_reload_that_stops_allowing_private_networks_stops_calls_to_them(start: Any, tmp_path: Path) -> None:
    """Checked when connecting, not only when registering: after the reload, neither the
    upstream named by address nor the one named by a host that resolves to loopback
    (as a rebinding name would) is reached, pooled connections included."""
    policies = tmp_path / "policies"
    shutil.copytree(ROOT / "policies", policies)
    network = policies / "network.yaml"
    network.write_text(network.read_text().replace("allowPrivateNetworks: false", "allowPrivateNetworks: true"))
    server = start(POLICY_PATHS=policies, MCPGATEWAY_ADMIN_API_ENABLED="true", UPSTREAMS_ALLOW_INTERNAL_NETWORKS=None)
    admin = server.client(mint(claims(teams=None)))
    with upstream_server(None) as url:
        for prefix, upstream in (("lit_", url), ("named_", url.replace("127.0.0.1", "localhost"))):
            registered = admin.post("/gateways", json={"name": prefix, "url": upstream, "prefix": prefix})
            assert registered.status_code == 201, registered.text
        tools = {t["name"]: t["id"] for t in admin.get("/tools").json()["items"]}
        for name in ("lit_echo", "named_echo"):
            answered = admin.post(f"/tools/{tools[name]}/invoke", json={"arguments": {"text": "hello"}})
            assert answered.status_code == 200, answered.text

        network.write_text(network.read_text().replace("allowPrivateNetworks: true", "allowPrivateNetworks: false"))
        assert admin.post("/admin/policies/reload").status_code == 200
        for name in ("lit_echo", "named_echo"):
            refused = admin.post(f"/tools/{tools[name]}/invoke", json={"arguments": {"text": "hello"}})
            assert (refused.status_code, refused.json()["error"]["code"]) == (403, "upstream_address_refused"), name


def test_posts_are_answered_like_every_other_request(env: dict[str, Any]) -> None:
    """MCP POSTs skip Quart (engine.web.mcp_lane): the same headers, limits and errors."""
    gw, token = env["gw"], mint(claims(teams=None))
    rest = httpx.get(f"{gw.url}/tools", headers={"Authorization": f"Bearer {token}"})
    own = {"content-length", "content-type", "date", "x-request-id"}
    assert "server" not in rest.headers, "the gateway does not name its server software"
    policy_headers = {name: value for name, value in rest.headers.items() if name not in own}
    assert "content-security-policy" in policy_headers
    answer = httpx.post(f"{gw.url}/mcp", headers=_headers(token, **{"X-Request-ID": "trace-0001"}), json=INIT)
    assert answer.status_code == 200
    assert {name: answer.headers.get(name) for name in policy_headers} == policy_headers
    assert answer.headers["x-request-id"] == "trace-0001"

    session = answer.headers["mcp-session-id"]
    big = {"jsonrpc": "2.0", "id": 2, "method": "ping", "params": {"pad": "x" * (1 << 20)}}
    too_large = _call(gw, token, session, big, **{"X-Request-ID": "trace-0002"})
    assert too_large.status_code == 413
    assert too_large.json()["error"] == {
        "code": "payload_too_large", "message": too_large.json()["error"]["message"], "request_id": "trace-0002"
    }  # fmt: skip
    assert too_large.headers["content-security-policy"] == policy_headers["content-security-policy"]

    garbled = httpx.post(f"{gw.url}/mcp", headers=_headers(token, **{"Mcp-Session-Id": session}), content=b"{nope")
    assert (garbled.status_code, garbled.json()["error"]["code"]) == (400, -32700)

    anonymous = httpx.post(f"{gw.url}/mcp", headers=_headers("").copy() | {"Authorization": ""}, json=INIT)
    assert anonymous.status_code == 401
    assert "resource_metadata=" in anonymous.headers["www-authenticate"]
    assert anonymous.headers["content-security-policy"] == policy_headers["content-security-policy"]


def test_a_post_answered_before_its_body_is_read_leaves_the_connection_usable(env: dict[str, Any]) -> None:
    """A refusal or a 413 comes before the body is read; the rest is read and dropped,
    so the connection neither stalls nor is lost for the next request."""
    gw, token = env["gw"], mint(claims(teams=None))
    padding = {"jsonrpc": "2.0", "id": 1, "method": "ping", "params": {"pad": "x" * (16 << 20)}}
    with httpx.Client(base_url=gw.url, timeout=10) as client:
        refused = client.post("/mcp", headers={"Accept": "application/json"}, json=padding)
        assert refused.status_code == 401
        assert client.get("/health").status_code == 200
        session = client.post("/mcp", headers=_headers(token), json=INIT).headers["mcp-session-id"]
        over = {**padding, "params": {"pad": "x" * (2 << 20)}}
        too_large = client.post("/mcp", headers=_headers(token, **{"Mcp-Session-Id": session}), json=over)
        assert too_large.status_code == 413
        assert client.get("/health").status_code == 200


def test_a_message_whose_text_is_not_unicode_is_a_parse_error(env: dict[str, Any]) -> None:
    gw, token = env["gw"], mint(claims(teams=None))
    session = _open(gw, token)
    headers = _headers(token, **{"Mcp-Session-Id": session, "Content-Type": "application/json"})
    call = b'{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"echo","arguments":{"text":"%s"}}}'
    lone = httpx.post(f"{gw.url}/mcp", headers=headers, content=call % b"\\ud800")
    assert (lone.status_code, lone.json()["error"]["code"]) == (400, -32700)
    paired = httpx.post(f"{gw.url}/mcp", headers=headers, content=call % b"\\ud83d\\ude00")
    assert paired.json()["result"]["content"][0]["text"] == "\U0001f600"
