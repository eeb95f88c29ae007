"""The MCP endpoint with the official SDK client, federating a real SDK upstream.

The upstream demands its own bearer credential, which only the gateway holds; its
`whoami` tool reports the Authorization header it received, so the tests can prove the
client's token never travels past the gateway.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import httpx2
import pytest
from mcp import Client, MCPError, types
from mcp.client.streamable_http import streamable_http_client

from tests.integration.conftest import start_server, stop_server
from tests.integration.mcp_client import UPSTREAM_TOKEN, mcp_session, upstream_server
from tests.integration.servers import ROOT, Gateway, claims, mint


@pytest.fixture(scope="module")
def federated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Gateway, dict[str, str]]]:
    with upstream_server() as upstream_url:
        gw = start_server(tmp_path_factory.mktemp("mcp"), MCPGATEWAY_ADMIN_API_ENABLED="true")
        admin = gw.client(mint(claims(teams=None)))
        registered = admin.post(
            "/gateways",
            json={
                "name": "up",
                "url": upstream_url,
                "visibility": "public",
                "credentials": {"bearer_token": UPSTREAM_TOKEN},
            },
        )
        assert registered.status_code == 201, registered.text
        ids = {"gateway": registered.json()["id"], "upstream_url": upstream_url}
        yield gw, ids
        stop_server(gw)


def run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(coro)


def test_registration_discovers_and_never_returns_credentials(federated: tuple[Gateway, dict[str, str]]) -> None:
    gw, ids = federated
    admin = gw.client(mint(claims(teams=None)))
    body = admin.get(f"/gateways/{ids['gateway']}").json()
    assert body["status"] == "ok"
    assert body["has_credentials"] is True
    assert UPSTREAM_TOKEN not in admin.get("/gateways").text
    names = {t["name"] for t in admin.get("/tools").json()["items"]}
    assert {"up__add", "up__whoami", "up__echo"} <= names


def test_secrets_in_an_upstream_url_are_sealed_and_still_used(federated: tuple[Gateway, dict[str, str]]) -> None:
    gw, _ = federated
    admin = gw.client(mint(claims(teams=None)))
    with upstream_server(None) as open_url:  # an upstream that asks for no token reports what it got
        url = open_url.replace("//", "//agent:s3cret@") + "?api_key=abc123"
        registered = admin.post("/gateways", json={"name": "basic", "url": url, "visibility": "public"})
        assert registered.status_code == 201, registered.text
        assert registered.json()["url"] == open_url + "?***"
        assert registered.json()["has_credentials"] is True

        async def whoami() -> str:
            async with mcp_session(f"{gw.url}/mcp", mint(claims(teams=None))) as client:
                return str((await client.call_tool("basic__whoami", {})).content[0].text)

        assert run(whoami()) == "Basic YWdlbnQ6czNjcmV0", "the URL as given is what the gateway connects with"
        stored = b"".join(path.read_bytes() for path in Path(gw.env["DATA_DIR"]).glob("policygate.db*"))
        assert open_url.encode() + b"?***" in stored, "the row is in these files"
        assert b"s3cret" not in stored
        assert b"abc123" not in stored
        assert admin.delete(f"/gateways/{registered.json()['id']}").status_code == 204


def test_a_uri_under_an_upstreams_template_cannot_be_registered(federated: tuple[Gateway, dict[str, str]]) -> None:
    gw, _ = federated
    admin = gw.client(mint(claims(teams=None)))
    shadow = {"name": "shadow", "uri": "users://42/profile", "content": "not the upstream's", "visibility": "public"}
    refused = admin.post("/resources", json=shadow)
    assert (refused.status_code, refused.json()["error"]["code"]) == (409, "uri_taken")


@pytest.mark.parametrize("mode", ["legacy", "auto"])
def test_sdk_client_lists_calls_reads_and_gets(federated: tuple[Gateway, dict[str, str]], mode: str) -> None:
    gw, _ = federated
    token = mint(claims(teams=None))

    async def scenario() -> None:
        async with mcp_session(f"{gw.url}/mcp", token, mode) as client:
            assert client.protocol_version == "2025-11-25"
            tools = {t.name for t in (await client.list_tools()).tools}
            assert {"up__add", "up__whoami"} <= tools
            result = await client.call_tool("up__add", {"a": 2, "b": 3})
            assert result.content[0].text == "5"
            resources = {r.uri for r in (await client.list_resources()).resources}
            assert "config://app" in resources
            templates = {t.uri_template for t in (await client.list_resource_templates()).resource_templates}
            assert "users://{user_id}/profile" in templates
            read = await client.read_resource("config://app")
            assert read.contents[0].text == '{"env": "test"}'
            profile = await client.read_resource("users://42/profile")
            assert profile.contents[0].text == "profile of 42"
            prompt = await client.get_prompt("up__review", {"code": "x = 1"})
            assert "x = 1" in prompt.messages[0].content.text

    run(scenario())


def test_the_upstream_never_sees_the_clients_token(federated: tuple[Gateway, dict[str, str]]) -> None:
    gw, _ = federated
    token = mint(claims(teams=None))

    async def scenario() -> str:
        async with mcp_session(f"{gw.url}/mcp", token) as client:
            result = await client.call_tool("up__whoami", {})
            return str(result.content[0].text)

    seen = run(scenario())
    assert seen == f"Bearer {UPSTREAM_TOKEN}"
    assert token not in seen


def test_content_rules_apply_to_arguments_and_results(federated: tuple[Gateway, dict[str, str]]) -> None:
    gw, _ = federated
    token = mint(claims(teams=None))

    async def scenario() -> None:
        async with mcp_session(f"{gw.url}/mcp", token) as client:
            with pytest.raises(MCPError) as blocked:
                await client.call_tool("up__echo", {"text": "1' OR '1'='1"})
            assert blocked.value.code == -32010
            assert "'1'='1" not in blocked.value.message
            with pytest.raises(MCPError) as pii:
                await client.call_tool("up__leak", {})
            assert pii.value.code == -32010
            page = await client.read_resource("docs://page")
            assert page.contents[0].text == "<p>Hello</p>", "HTML is sanitized on the way out"
            with pytest.raises(MCPError) as script:
                await client.read_resource("docs://script")
            assert script.value.code == -32010
            # Text outside a text block is upstream output all the same.
            for tool in ("up__attach", "up__link"):
                with pytest.raises(MCPError) as hidden:
                    await client.call_tool(tool, {})
                assert hidden.value.code == -32010, tool
            with pytest.raises(MCPError) as failed:
                await client.read_resource("vault://bob/secret")
            assert (failed.value.code, failed.value.error.data) == (-32010, {"code": "content_pii"})
            assert "123-45-6789" not in failed.value.message

    run(scenario())


def test_tools_list_shows_only_what_tools_call_allows(federated: tuple[Gateway, dict[str, str]]) -> None:
    gw, _ = federated
    read_only = mint(claims(teams=None, scopes={"permissions": ["tools.read"]}))

    async def scenario() -> None:
        async with mcp_session(f"{gw.url}/mcp", read_only) as client:
            assert (await client.list_tools()).tools == []

    run(scenario())
    raw = httpx.post(
        f"{gw.url}/mcp",
        headers={"Authorization": f"Bearer {read_only}", "Accept": "application/json"},
        json={"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": "2025-11-25"}},
    )
    session = raw.headers["mcp-session-id"]
    call = httpx.post(
        f"{gw.url}/mcp",
        headers={"Authorization": f"Bearer {read_only}", "Accept": "application/json", "Mcp-Session-Id": session},
        json={"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "up__add", "arguments": {"a": 1}}},
    )
    assert call.status_code == 403
    assert 'error="insufficient_scope"' in call.headers["www-authenticate"]
    assert 'scope="tools.execute"' in call.headers["www-authenticate"]


def test_what_a_client_fills_in_is_checked_before_it_is_forwarded(federated: tuple[Gateway, dict[str, str]]) -> None:
    """A template's variables and a progress token come from the client, as arguments do."""
    gw, _ = federated
    headers = {"Authorization": f"Bearer {mint(claims(teams=None))}", "Accept": "application/json"}
    opened = httpx.post(f"{gw.url}/mcp", headers=headers, json={
        "jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": "2025-11-25"}})  # fmt: skip
    headers["Mcp-Session-Id"] = opened.headers["mcp-session-id"]

    def ask(method: str, params: dict[str, object]) -> dict[str, object]:
        answer = httpx.post(f"{gw.url}/mcp", headers=headers,
                            json={"jsonrpc": "2.0", "id": 2, "method": method, "params": params})  # fmt: skip
        return dict(answer.json())

    injected = ask("resources/read", {"uri": "users://1' OR '1'='1/profile"})
    assert injected["error"]["data"]["code"] == "content_blocked"
    assert ask("resources/read", {"uri": "users://7/profile"})["result"]["contents"][0]["text"] == "profile of 7"
    too_long = ask(
        "tools/call", {"name": "up__add", "arguments": {"a": 1, "b": 2}, "_meta": {"progressToken": "p" * 257}}
    )
    assert too_long["error"]["code"] == -32602
    fine = ask("tools/call", {"name": "up__add", "arguments": {"a": 1, "b": 2}, "_meta": {"progressToken": "p" * 256}})
    assert fine["result"]["content"][0]["text"] == "3"


def test_unauthenticated_requests_point_at_the_resource_metadata(federated: tuple[Gateway, dict[str, str]]) -> None:
    gw, _ = federated
    response = httpx.post(f"{gw.url}/mcp", json={"jsonrpc": "2.0", "id": 1, "method": "ping"})
    assert response.status_code == 401
    challenge = response.headers["www-authenticate"]
    assert f'resource_metadata="{gw.url}/.well-known/oauth-protected-resource/mcp"' in challenge
    metadata = httpx.get(f"{gw.url}/.well-known/oauth-protected-resource/mcp").json()
    assert metadata["resource"] == f"{gw.url}/mcp"
    assert "tools.execute" in metadata["scopes_supported"]
    assert metadata["authorization_servers"] == [gw.url], "no other issuer is accepted: the gateway names itself"
    # RFC 9728: the metadata without a path describes the resource without one.
    assert httpx.get(f"{gw.url}/.well-known/oauth-protected-resource").json()["resource"] == gw.url
    forged = mint(claims(teams=None), secret="another-secret-of-at-least-32-bytes!")
    for authorization in ("Bearer not-a-jwt", f"Bearer {forged}", "Digest abc"):
        refused = httpx.post(f"{gw.url}/servers/s1/mcp", headers={"Authorization": authorization}, json={})
        assert refused.status_code == 401, authorization
        expected = f'resource_metadata="{gw.url}/.well-known/oauth-protected-resource/servers/s1/mcp"'
        assert expected in refused.headers["www-authenticate"], authorization


def test_the_metadata_names_the_sso_whose_tokens_are_accepted(tmp_path: Path) -> None:
    policies = tmp_path / "policies"
    shutil.copytree(ROOT / "policies", policies)
    rules = policies / "tokens.yaml"
    rules.write_text(
        rules.read_text().replace("accepted: [mcpgateway]", "accepted: [mcpgateway, 'https://sso.example.com']")
    )
    gw = start_server(tmp_path, POLICY_PATHS=policies)
    try:
        for path in ("", "/mcp"):
            metadata = httpx.get(f"{gw.url}/.well-known/oauth-protected-resource{path}").json()
            assert metadata["authorization_servers"] == ["https://sso.example.com"]
    finally:
        stop_server(gw)


def test_rest_invoke_takes_the_same_path_as_tools_call(federated: tuple[Gateway, dict[str, str]]) -> None:
    gw, _ = federated
    admin = gw.client(mint(claims(teams=None)))
    tools = {t["name"]: t["id"] for t in admin.get("/tools").json()["items"]}
    result = admin.post(f"/tools/{tools['up__add']}/invoke", json={"arguments": {"a": 40, "b": 2}})
    assert result.json()["content"][0]["text"] == "42"
    blocked = admin.post(f"/tools/{tools['up__echo']}/invoke", json={"arguments": {"text": "<script>x</script>"}})
    assert (blocked.status_code, blocked.json()["error"]["code"]) == (422, "content_blocked")
    leaked = admin.post(f"/tools/{tools['up__leak']}/invoke", json={})
    assert (leaked.status_code, leaked.json()["error"]["code"]) == (422, "content_pii")
    assert "123-45-6789" not in leaked.text
    # `structuredContent` is the same answer for clients that read JSON: it is checked too.
    twin = admin.post(f"/tools/{tools['up__report']}/invoke", json={})
    assert (twin.status_code, twin.json()["error"]["code"]) == (422, "content_blocked")
    assert "<script>" not in twin.text
    read_only = gw.client(mint(claims(teams=None, scopes={"permissions": ["tools.read"]})))
    refused = read_only.post(f"/tools/{tools['up__add']}/invoke", json={"arguments": {"a": 1}})
    assert (refused.status_code, refused.json()["error"]["code"]) == (403, "permission_missing")
    assert admin.post("/tools/no-such-tool/invoke", json={}).status_code == 404


@contextlib.asynccontextmanager
async def _client_that_answers(url: str, token: str, summary: str) -> AsyncIterator[Client]:
    async def sample(context: Any, params: types.CreateMessageRequestParams) -> types.CreateMessageResult:
        asked = params.messages[0].content
        assert isinstance(asked, types.TextContent)
        assert asked.text.startswith("Summarize: ")
        return types.CreateMessageResult(
            role="assistant", content=types.TextContent(type="text", text=summary), model="m"
        )

    async def elicit(context: Any, params: types.ElicitRequestParams) -> types.ElicitResult:
        return types.ElicitResult(action="accept", content={"ok": True})

    async with (
        httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=30) as http,
        Client(
            streamable_http_client(url, http_client=http),  # type: ignore[arg-type]
            mode="legacy",
            sampling_callback=sample,
            elicitation_callback=elicit,
        ) as client,
    ):
        yield client


def test_upstream_sampling_and_elicitation_reach_the_client(federated: tuple[Gateway, dict[str, str]]) -> None:
    gw, _ = federated
    token = mint(claims(teams=None))

    async def scenario() -> tuple[str, str]:
        async with _client_that_answers(f"{gw.url}/mcp", token, "short") as client:
            summarized = await client.call_tool("up__summarize", {"text": "a long report"})
            confirmed = await client.call_tool("up__confirm", {})
            return str(summarized.content[0].text), str(confirmed.content[0].text)

    summary, confirmation = run(scenario())
    assert summary == "summary: short"
    assert confirmation == "accept: {'ok': True}"


def test_a_client_answer_that_breaks_the_content_rules_never_reaches_the_upstream(
    federated: tuple[Gateway, dict[str, str]],
) -> None:
    gw, _ = federated
    token = mint(claims(teams=None))

    async def scenario() -> str:
        async with _client_that_answers(f"{gw.url}/mcp", token, "'; DROP TABLE users; --") as client:
            with pytest.raises(MCPError) as refused:
                await client.call_tool("up__summarize", {"text": "a long report"})
            return refused.value.message

    message = run(scenario())
    assert "sqli-stacked-query" in message, "the upstream heard why its question failed"
    assert "DROP TABLE" not in message


def test_a_client_without_a_stream_gets_the_upstreams_question_refused(
    federated: tuple[Gateway, dict[str, str]],
) -> None:
    gw, _ = federated
    token = mint(claims(teams=None))
    headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
    init = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": "2025-11-25"}}
    session = httpx.post(f"{gw.url}/mcp", headers=headers, json=init).headers["mcp-session-id"]
    call = {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "up__confirm", "arguments": {}}}
    reply = httpx.post(f"{gw.url}/mcp", headers={**headers, "Mcp-Session-Id": session}, json=call, timeout=30)
    assert reply.status_code == 200
    assert reply.json()["error"]["message"] == "the gateway's client cannot answer this request"
