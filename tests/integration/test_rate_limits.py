"""Rate limits over HTTP: counted by the shell, judged by the policy, answered 429."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import httpx

from tests.integration.servers import ROOT, Gateway, claims, mint

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
