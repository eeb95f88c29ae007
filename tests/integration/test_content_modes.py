"""The content pipeline under each mode, in each context, end to end.

strict (the default, in test_catalog.py and test_mcp.py) refuses; moderate refuses PII
in resources, lets it through with a log line in prompts and tool arguments, and
redacts it from tool results; lenient refuses nothing for its content but logs every
finding, while size limits still hold.
"""

from __future__ import annotations

import asyncio
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx2
from mcp import Client, types
from mcp.client.streamable_http import streamable_http_client

from tests.integration.mcp_client import mcp_session, register_upstream, upstream_server
from tests.integration.servers import ROOT, Gateway, claims, mint


def _violations(server: Gateway) -> list[dict[str, object]]:
    lines = [line.split(": ", 1)[1] for line in server.log.read_text().splitlines() if '"content_violation"' in line]
    return [json.loads(line) for line in lines]


def test_moderate_mode(start: Callable[..., Gateway]) -> None:
    with upstream_server() as url:
        server = start(CONTENT_PII_VALIDATION_MODE="moderate")
        register_upstream(server, url)
        admin = server.client(mint(claims(teams=None)))
        refused = admin.post("/resources", json={"name": "r", "uri": "file:///r", "content": "mail bob@example.com"})
        assert (refused.status_code, refused.json()["error"]["code"]) == (422, "content_pii")
        logged = admin.post("/prompts", json={"name": "p", "template": "write to bob@example.com"})
        assert logged.status_code == 201
        assert logged.json()["template"] == "write to bob@example.com"

        async def call() -> tuple[str, object, str]:
            async with mcp_session(f"{server.url}/mcp", mint(claims(teams=None))) as client:
                result = await client.call_tool("leak", {})
                attached = (await client.call_tool("attach", {})).content[0]
                assert isinstance(attached, types.EmbeddedResource)
                assert isinstance(attached.resource, types.TextResourceContents)
                return str(result.content[0].text), result.structured_content, attached.resource.text

        redacted = "The customer's SSN is [REDACTED:ssn]."
        assert asyncio.run(call()) == (redacted, {"result": redacted}, redacted), "every form of a result is redacted"
        actions = {(v["field"], v["action"]) for v in _violations(server)}
        assert ("content", "block") in actions
        assert ("template", "log") in actions
        assert ("content", "redact") in actions
        assert all(v["mode"] == "moderate" for v in _violations(server))


def test_moderate_mode_redacts_what_the_upstream_says_on_the_way(start: Callable[..., Gateway]) -> None:
    """Log notes and sampling questions are upstream output: redacted like a tool result."""
    with upstream_server() as url:
        server = start(CONTENT_PII_VALIDATION_MODE="moderate")
        register_upstream(server, url)
        heard: list[str] = []

        async def log(params: types.LoggingMessageNotificationParams) -> None:
            heard.append(str(params.data))

        async def sample(context: Any, params: types.CreateMessageRequestParams) -> types.CreateMessageResult:
            asked = params.messages[0].content
            heard.append(asked.text if isinstance(asked, types.TextContent) else "")
            answer = types.TextContent(type="text", text="ok")
            return types.CreateMessageResult(role="assistant", content=answer, model="m")

        async def calls() -> None:
            token = mint(claims(teams=None))
            async with (
                httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=30) as http,
                Client(
                    streamable_http_client(f"{server.url}/mcp", http_client=http),  # type: ignore[arg-type]
                    mode="legacy",
                    logging_callback=log,
                    sampling_callback=sample,
                ) as client,
            ):
                await client.call_tool("whisper", {})
                await client.call_tool("summarize", {"text": "SSN 123-45-6789"})

        asyncio.run(calls())
        assert heard == ["The customer's SSN is [REDACTED:ssn].", "Summarize: SSN [REDACTED:ssn]"]


def test_a_redaction_with_quotes_leaves_a_json_result_whole(start: Callable[..., Gateway], tmp_path: Path) -> None:
    """`structuredContent` is redacted string by string, never as JSON text: a
    replacement with quotes in it is a string like any other."""
    policies = tmp_path / "policies"
    shutil.copytree(ROOT / "policies", policies)
    modes = policies / "content-modes.yaml"
    modes.write_text(modes.read_text().replace('"[REDACTED:{category}]"', """'[REDACTED "{category}"]'"""))
    with upstream_server() as url:
        server = start(POLICY_PATHS=policies, CONTENT_PII_VALIDATION_MODE="moderate")
        register_upstream(server, url)
        admin = server.client(mint(claims(teams=None)))
        tools = {t["name"]: t["id"] for t in admin.get("/tools").json()["items"]}
        result = admin.post(f"/tools/{tools['leak']}/invoke", json={})
        assert result.status_code == 200, result.text
        assert result.json()["structuredContent"] == {"result": 'The customer\'s SSN is [REDACTED "ssn"].'}


def test_prompt_arguments_reach_the_upstream_redacted(start: Callable[..., Gateway], tmp_path: Path) -> None:
    """Where the policy redacts prompts, the upstream gets the redacted arguments."""
    policies = tmp_path / "policies"
    shutil.copytree(ROOT / "policies", policies)
    modes = policies / "content-modes.yaml"
    moderate = "pii: {resource: block, prompt: log,"
    modes.write_text(modes.read_text().replace(moderate, moderate.replace("log", "redact")))
    with upstream_server() as url:
        server = start(POLICY_PATHS=policies, CONTENT_PII_VALIDATION_MODE="moderate")
        register_upstream(server, url)

        async def get() -> str:
            async with mcp_session(f"{server.url}/mcp", mint(claims(teams=None))) as client:
                got = await client.get_prompt("digits", {"text": "SSN 123-45-6789, room 7"})
                assert isinstance(got.messages[0].content, types.TextContent)
                return got.messages[0].content.text

        assert asyncio.run(get()) == "1 digits", "the SSN was redacted before it left; the room number was not"


def test_lenient_mode(start: Callable[..., Gateway]) -> None:
    with upstream_server() as url:
        server = start(CONTENT_PATTERN_VALIDATION_MODE="lenient", CONTENT_PII_VALIDATION_MODE="lenient")
        register_upstream(server, url)
        admin = server.client(mint(claims(teams=None)))
        stored = admin.post(
            "/resources", json={"name": "x", "uri": "file:///x", "content": "<script>alert(1)</script>"}
        )
        assert stored.status_code == 201

        async def call() -> str:
            async with mcp_session(f"{server.url}/mcp", mint(claims(teams=None))) as client:
                return str(
                    (await client.call_tool("echo", {"text": "1 UNION SELECT password FROM users"})).content[0].text
                )

        assert asyncio.run(call()) == "1 UNION SELECT password FROM users"
        logged = {(v["rule"], v["action"]) for v in _violations(server)}
        assert ("content/xss-script-tag", "log") in logged
        assert ("content/sqli-union-select", "log") in logged
        tags = [
            v["count"] for v in _violations(server) if (v["rule"], v["field"]) == ("content/xss-script-tag", "content")
        ]
        assert tags == [2], "one line per rule, with the number of its findings"
        too_big = admin.post("/prompts", json={"name": "big", "template": "x" * 20_000})
        assert (too_big.status_code, too_big.json()["error"]["code"]) == (413, "content_too_large")
