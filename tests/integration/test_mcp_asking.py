"""An upstream's questions (sampling, elicitation) reach only clients that said they take them.

The MCP spec forbids a server to send a client a request for a capability the client
did not declare in `initialize`. The gateway asks on the upstream's behalf, so it
answers such a question itself, at once: a client that would never answer must not
leave the upstream's call, and the gateway's connection under it, waiting.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import httpx
import httpx2
import pytest
from mcp import Client, MCPError, types
from mcp.client.streamable_http import streamable_http_client

from engine.web.mcp_asking import asker, declared, give_answer
from engine.web.mcp_sessions import McpSession
from tests.integration.mcp_client import mcp_session, register_upstream, upstream_server
from tests.integration.servers import Gateway, claims, mint

DEADLINE_S = 20.0
"""Far less than the 300 s a relayed question waits for its answer."""


@pytest.fixture(scope="module")
def gw(federated: Gateway) -> Gateway:
    return federated


async def _refusals(client: Client) -> list[tuple[int, str]]:
    """The errors of calls to `summarize` (sampling) and `confirm` (elicitation): the
    fixture upstream's tools fail with the error their question got."""
    refusals = []
    for tool, arguments in (("summarize", {"text": "a report"}), ("confirm", {})):
        with pytest.raises(MCPError) as refused:
            await client.call_tool(tool, arguments)
        refusals.append((refused.value.code, refused.value.message))
    return refusals


def test_an_sdk_client_without_callbacks_is_never_asked(gw: Gateway) -> None:
    """The SDK declares sampling and elicitation only with their callbacks; without them
    the gateway refuses the upstream itself (an SDK client asked anyway would refuse
    in its own words, "Sampling not supported")."""

    async def calls() -> list[tuple[int, str]]:
        async with asyncio.timeout(DEADLINE_S), mcp_session(f"{gw.url}/mcp", mint(claims(teams=None))) as client:
            return await _refusals(client)

    assert asyncio.run(calls()) == [
        (-32600, "the client did not declare the `sampling` capability"),
        (-32600, "the client did not declare the `elicitation.form` capability"),
    ]


def test_a_client_is_asked_only_what_it_declared(gw: Gateway) -> None:
    """A client with a sampling callback alone hears the sampling question, not the elicitation."""
    asked: list[str] = []

    async def sample(context: Any, params: types.CreateMessageRequestParams) -> types.CreateMessageResult:
        asked.append("sampling")
        return types.CreateMessageResult(role="assistant", content=types.TextContent(type="text", text="ok"), model="m")

    async def calls() -> tuple[str, str]:
        headers = {"Authorization": f"Bearer {mint(claims(teams=None))}"}
        async with (
            asyncio.timeout(DEADLINE_S),
            httpx2.AsyncClient(headers=headers, timeout=30) as http,
            Client(
                streamable_http_client(f"{gw.url}/mcp", http_client=http),  # type: ignore[arg-type]
                mode="legacy",
                sampling_callback=sample,
            ) as client,
        ):
            summary = (await client.call_tool("summarize", {"text": "a report"})).content[0]
            with pytest.raises(MCPError) as refused:
                await client.call_tool("confirm", {})
            return summary.text if isinstance(summary, types.TextContent) else "", refused.value.message

    assert asyncio.run(calls()) == ("summary: ok", "the client did not declare the `elicitation.form` capability")
    assert asked == ["sampling"]


def _session(url: str, capabilities: dict[str, Any] | None) -> dict[str, str]:
    """The headers of a session whose `initialize` declared `capabilities` (None: the
    member left out, as a careless client might)."""
    token = mint(claims(teams=None))
    headers = {"Authorization": f"Bearer {token}", "Accept": "application/json, text/event-stream"}
    params: dict[str, Any] = {"protocolVersion": "2025-11-25"}
    if capabilities is not None:
        params["capabilities"] = capabilities
    init = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": params}
    opened = httpx.post(f"{url}/mcp", headers=headers, json=init)
    assert opened.status_code == 200, opened.text
    return {**headers, "Mcp-Session-Id": opened.headers["mcp-session-id"]}


CONFIRM = {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "confirm", "arguments": {}}}


def _unanswered_call(url: str, capabilities: dict[str, Any] | None) -> list[dict[str, Any]]:
    """Every message of a streamed `confirm` call by a client that reads its stream but
    never answers a question."""
    reply = httpx.post(f"{url}/mcp", headers=_session(url, capabilities), json=CONFIRM, timeout=DEADLINE_S)
    assert reply.status_code == 200, reply.text
    if reply.headers["content-type"].startswith("application/json"):
        return [reply.json()]
    return [json.loads(line[5:]) for line in reply.text.splitlines() if line.startswith("data:")]


def _answered_call(url: str, capabilities: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The question of a streamed `confirm` call, and the call's reply once a client
    that declared `capabilities` answers it in the same session."""
    headers = _session(url, capabilities)
    with (
        httpx.Client(timeout=DEADLINE_S) as caller,
        caller.stream("POST", f"{url}/mcp", headers=headers, json=CONFIRM) as stream,
    ):
        events = (json.loads(line[5:]) for line in stream.iter_lines() if line.startswith("data:"))
        question = next(events)
        answer = {"jsonrpc": "2.0", "id": question.get("id"), "result": {"action": "accept", "content": {"ok": True}}}
        assert httpx.post(f"{url}/mcp", headers=headers, json=answer).status_code == 202
        return question, next(events)


@pytest.mark.parametrize("capabilities", [None, {}, {"sampling": {}}, {"elicitation": {"url": {}}}])
def test_a_client_that_never_answers_leaves_no_call_waiting(gw: Gateway, capabilities: dict[str, Any] | None) -> None:
    """A question the client did not declare never reaches its stream, and the call ends at once."""
    messages = _unanswered_call(gw.url, capabilities)
    assert [m.get("method") for m in messages] == [None], "only the call's answer, no question"
    assert messages[0]["error"]["message"] == "the client did not declare the `elicitation.form` capability"


def test_a_client_that_declared_elicitation_is_asked_and_answers(gw: Gateway) -> None:
    """The question comes on the call's stream, and the answer, posted in the same
    session, reaches the upstream."""
    question, reply = _answered_call(gw.url, {"elicitation": {}})
    assert question["method"] == "elicitation/create"
    assert reply["result"]["content"][0]["text"] == "accept: {'ok': True}"


def test_what_a_client_declared_is_kept_in_redis_too(start: Callable[..., Gateway], redis_url: str) -> None:
    """Sessions kept in Redis carry their capabilities: refused without, asked with."""
    with upstream_server() as upstream_url:
        server = start(REDIS_URL=redis_url)
        register_upstream(server, upstream_url)
        refused = _unanswered_call(server.url, {})
        question, reply = _answered_call(server.url, {"elicitation": {"form": {}}})
    assert refused[-1]["error"]["message"] == "the client did not declare the `elicitation.form` capability"
    assert question["method"] == "elicitation/create"
    assert reply["result"]["content"][0]["text"] == "accept: {'ok': True}"


@pytest.mark.parametrize(
    ("capabilities", "expected"),
    [
        (None, set()),
        ("sampling", set()),
        ({}, set()),
        ({"sampling": {}}, {"sampling"}),
        ({"sampling": True, "elicitation": None}, set()),
        ({"elicitation": {}}, {"elicitation.form"}),
        ({"elicitation": {"url": {}}}, {"elicitation.url"}),
        ({"elicitation": {"form": {}, "url": {}}}, {"elicitation.form", "elicitation.url"}),
        ({"elicitation": {"form": {}}, "roots": {"listChanged": True}}, {"elicitation.form"}),
    ],
)
def test_what_an_initialize_declares(capabilities: Any, expected: set[str]) -> None:
    """Capabilities are objects; an elicitation capability that names no mode is form
    mode alone, as MCP 2025-11-25 has it for clients written before modes."""
    params = {"protocolVersion": "2025-11-25"} | ({} if capabilities is None else {"capabilities": capabilities})
    assert declared(params) == expected


def test_a_ping_reaches_a_client_that_declared_nothing() -> None:
    """Every client answers a ping, so it needs no capability; a question does."""

    async def run() -> tuple[list[str], dict[str, Any], dict[str, Any]]:
        gw: Any = SimpleNamespace(asked={})
        session = McpSession("s", "user@example.com", "/mcp", "2025-11-25", "jti:x", frozenset())
        said: list[str] = []

        async def say(message: dict[str, Any]) -> None:
            said.append(message["method"])
            give_answer(gw, session.id, {"jsonrpc": "2.0", "id": message["id"], "result": {}})

        ask = asker(gw, session, say)
        return said, await ask({"method": "ping"}), await ask({"method": "sampling/createMessage", "params": {}})

    said, pong, refused = asyncio.run(run())
    assert (said, pong) == (["ping"], {"result": {}})
    assert refused["error"]["data"]["code"] == "capability_not_declared"
