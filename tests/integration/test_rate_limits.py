"""Rate limits over HTTP: counted by the shell, judged by the policy, answered 429."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from tests.integration.mcp_client import UPSTREAM_TOKEN, upstream_server
from tests.integration.servers import ROOT, Gateway, claims, mint, unsigned

LIMITS = """
apiVersion: policygate/v1
kind: RateLimits
metadata:
  name: default
spec:
  enabled: true
  buckets:
    - {id: per-token, key: token, limit: 3, windowSeconds: 3600}
"""


def test_the_fourth_request_in_the_window_is_refused(start: Callable[..., Gateway], tmp_path: Path) -> None:
    overlay = tmp_path / "overlay"
    overlay.mkdir()
    (overlay / "ratelimits.yaml").write_text(LIMITS)
    server = start(POLICY_PATHS=f"{ROOT / 'policies'},{overlay}")
    token = mint(claims(teams=None))
    client = server.client(token)
    assert [client.get("/auth/me").status_code for _ in range(3)] == [200, 200, 200]
    refused = client.get("/auth/me")
    assert (refused.status_code, refused.json()["error"]["code"]) == (429, "rate_limited")
    assert 0 < int(refused.headers["retry-after"]) <= 3600
    other = server.client(mint(claims(teams=None)))
    assert other.get("/auth/me").status_code == 200, "each token has its own budget"
    assert server.client(token).get("/health").status_code == 200, "public routes are not counted"


def test_a_forged_token_does_not_spend_the_budget_of_the_token_it_names(
    start: Callable[..., Gateway], tmp_path: Path
) -> None:
    overlay = tmp_path / "overlay"
    overlay.mkdir()
    (overlay / "ratelimits.yaml").write_text(LIMITS)
    server = start(POLICY_PATHS=f"{ROOT / 'policies'},{overlay}")
    victim = claims(teams=None)
    for header in ({"alg": "none"}, {"alg": "HS256", "jku": "https://evil.example/jwks"}):
        forged = server.client(unsigned(victim, header))
        assert [forged.get("/auth/me").status_code for _ in range(3)] == [401, 401, 401]
    client = server.client(mint(victim))
    assert [client.get("/auth/me").status_code for _ in range(4)] == [200, 200, 200, 429]


def test_login_attempts_are_counted_per_address(start: Callable[..., Gateway], tmp_path: Path) -> None:
    overlay = tmp_path / "overlay"
    overlay.mkdir()
    (overlay / "ratelimits.yaml").write_text(LIMITS.replace("per-token, key: token", "per-ip, key: ip"))
    server = start(POLICY_PATHS=f"{ROOT / 'policies'},{overlay}")
    guess = {"email": "root@example.com", "password": "guess"}
    codes = [server.client().post("/auth/login", json=guess).status_code for _ in range(4)]
    assert codes == [401, 401, 401, 429]


def test_forged_tokens_are_counted_per_address(start: Callable[..., Gateway], tmp_path: Path) -> None:
    overlay = tmp_path / "overlay"
    overlay.mkdir()
    (overlay / "ratelimits.yaml").write_text(LIMITS.replace("per-token, key: token", "per-ip, key: ip"))
    server = start(POLICY_PATHS=f"{ROOT / 'policies'},{overlay}")
    forged = mint(claims(teams=None), secret="not-the-gateway-secret-but-long-enough-000")
    codes = [server.client(forged).get("/auth/me").status_code for _ in range(4)]
    assert codes == [401, 401, 401, 429]


def test_each_message_of_a_batch_counts(start: Callable[..., Gateway], tmp_path: Path) -> None:
    overlay = tmp_path / "overlay"
    overlay.mkdir()
    (overlay / "ratelimits.yaml").write_text(LIMITS.replace("limit: 3,", "limit: 4,"))
    server = start(POLICY_PATHS=f"{ROOT / 'policies'},{overlay}")
    token = mint(claims(teams=None))
    headers = {"Authorization": f"Bearer {token}", "Accept": "application/json", "MCP-Protocol-Version": "2025-03-26"}
    init = {"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {"protocolVersion": "2025-03-26"}}
    opened = httpx.post(f"{server.url}/mcp", headers=headers, json=init)  # request 1
    headers["Mcp-Session-Id"] = opened.headers["mcp-session-id"]
    pings = [{"jsonrpc": "2.0", "id": i, "method": "ping"} for i in range(2)]
    assert httpx.post(f"{server.url}/mcp", headers=headers, json=pings).status_code == 200  # requests 2 and 3
    refused = httpx.post(f"{server.url}/mcp", headers=headers, json=pings)  # 4 and 5: one too many
    assert (refused.status_code, refused.json()["error"]["code"]) == (429, "rate_limited")


def test_a_tool_budget_counts_calls_over_rest_and_mcp_by_callers_let_in(
    start: Callable[..., Gateway], tmp_path: Path
) -> None:
    overlay = tmp_path / "overlay"
    overlay.mkdir()
    (overlay / "ratelimits.yaml").write_text(LIMITS.replace("per-token, key: token", "per-tool, key: tool"))
    with upstream_server() as upstream_url:
        server = start(POLICY_PATHS=f"{ROOT / 'policies'},{overlay}")
        token = mint(claims(teams=None))
        admin = server.client(token)
        registered = admin.post("/gateways", json={"name": "up", "url": upstream_url, "visibility": "public",
                                                   "credentials": {"bearer_token": UPSTREAM_TOKEN}})  # fmt: skip
        assert registered.status_code == 201, registered.text
        tools = {t["name"]: t["id"] for t in admin.get("/tools").json()["items"]}
        add = f"/tools/{tools['up__add']}/invoke"
        arguments = {"arguments": {"a": 2, "b": 3}}
        strangers = [server.client().post(add, json=arguments).status_code for _ in range(4)]
        assert strangers == [401] * 4, "callers turned away do not spend the tool's budget"
        assert admin.post(add, json=arguments).status_code == 200
        headers = {"Authorization": f"Bearer {token}", "Accept": "application/json, text/event-stream"}
        init = {"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {"protocolVersion": "2025-11-25"}}
        headers["Mcp-Session-Id"] = httpx.post(f"{server.url}/mcp", headers=headers, json=init).headers[
            "mcp-session-id"
        ]
        call = {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "tools/call",
            "params": {"name": "up__add", "arguments": {"a": 1, "b": 1}},
        }

        def over_mcp() -> dict[str, Any]:
            answered = httpx.post(f"{server.url}/mcp", headers=headers, json=call)
            assert answered.status_code == 200, answered.text
            body: dict[str, Any] = answered.json()
            return body

        assert over_mcp()["result"]["content"][0]["text"] == "2"
        assert over_mcp()["result"]["content"][0]["text"] == "2"
        limited = over_mcp()["error"]
        assert (limited["code"], limited["data"]["code"]) == (-32014, "rate_limited")
        assert 0 < limited["data"]["retryAfter"] <= 3600
        refused = admin.post(add, json=arguments)
        assert (refused.status_code, refused.json()["error"]["code"]) == (429, "rate_limited")
        assert 0 < int(refused.headers["retry-after"]) <= 3600
        echo = admin.post(f"/tools/{tools['up__echo']}/invoke", json={"arguments": {"text": "hi"}})
        assert echo.status_code == 200, "each tool has its own budget"
