"""Helpers to drive the gateway with the official MCP SDK client and a fixture upstream."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from tests.integration.servers import ROOT, Gateway, claims, free_port, mint
from tests.integration.waiting import eventually

UPSTREAM_TOKEN = "upstream-credential-held-by-the-gateway"


def register_upstream(server: Gateway, url: str) -> dict[str, Any]:
    """Register the upstream at `url` with `server` as the public gateway `up`, its items
    named as the upstream names them; returns the registration's answer."""
    body = {
        "name": "up",
        "url": url,
        "visibility": "public",
        "prefix": "",
        "credentials": {"bearer_token": UPSTREAM_TOKEN},
    }
    registered = server.client(mint(claims(teams=None))).post("/gateways", json=body)
    assert registered.status_code == 201, registered.text
    return dict(registered.json())


@contextlib.contextmanager
def upstream_server(
    token: str | None = UPSTREAM_TOKEN, *, port: int | None = None, variant: str = "1"
) -> Iterator[str]:
    """The fixture upstream on `port` (a free one by default); `variant` 2 or 3 rewrites a tool."""
    port = port or free_port()
    args = [sys.executable, "-m", "tests.integration.upstream.server", str(port)] + ([token] if token else [])
    env = {**os.environ, "FIXTURE_VARIANT": variant}
    process = subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def listening() -> bool:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
        return False

    eventually(listening, within=20, failure=f"the upstream fixture did not listen on port {port}")
    try:
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        process.terminate()
        process.wait(timeout=10)


@contextlib.asynccontextmanager
async def mcp_session(url: str, token: str, mode: str = "legacy") -> AsyncIterator[Any]:
    headers = {"Authorization": f"Bearer {token}"}
    async with (
        httpx2.AsyncClient(headers=headers, timeout=30) as http,
        Client(streamable_http_client(url, http_client=http), mode=mode) as client,  # type: ignore[arg-type]
    ):
        yield client
