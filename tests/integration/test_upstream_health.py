"""An upstream that goes down after registration leaves the lists, and returns on its own."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest

from tests.integration.conftest import start_server, stop_server
from tests.integration.mcp_client import UPSTREAM_TOKEN, mcp_session, upstream_server
from tests.integration.servers import Gateway, claims, free_port, mint


def _wait_for(condition: Callable[[], bool], seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "the gateway did not notice in time"
        time.sleep(0.2)


def _mcp_tools(gw: Gateway) -> set[str]:
    async def listing() -> set[str]:
        async with mcp_session(f"{gw.url}/mcp", mint(claims(teams=None))) as client:
            return {t.name for t in (await client.list_tools()).tools}

    return asyncio.run(listing())


def _add(gw: Gateway) -> str:
    async def call() -> str:
        async with mcp_session(f"{gw.url}/mcp", mint(claims(teams=None))) as client:
            return str((await client.call_tool("h_add", {"a": 2, "b": 2})).content[0].text)

    return asyncio.run(call())


def test_health_checks_take_a_dead_upstream_out_and_bring_it_back(tmp_path_factory: pytest.TempPathFactory) -> None:
    port = free_port()
    gw = start_server(
        tmp_path_factory.mktemp("health"), HEALTH_CHECK_INTERVAL=1, HEALTH_CHECK_TIMEOUT=2, UNHEALTHY_THRESHOLD=2
    )
    admin = gw.client(mint(claims(teams=None)))
    body = {"name": "h", "visibility": "public", "prefix": "h_", "credentials": {"bearer_token": UPSTREAM_TOKEN}}
    try:
        with upstream_server(port=port) as url:
            up = admin.post("/gateways", json={**body, "url": url}).json()
            assert up["status"] == "ok"
            assert _add(gw) == "4"

        def status() -> str:
            return str(admin.get(f"/gateways/{up['id']}").json()["status"])

        _wait_for(lambda: status() == "unreachable")
        assert "h_add" not in _mcp_tools(gw)
        listed = {t["name"]: t["available"] for t in admin.get("/tools").json()["items"]}
        assert listed["h_add"] is False
        assert "unreachable" in gw.log.read_text()

        with upstream_server(port=port):
            _wait_for(lambda: status() == "ok")
            assert "h_add" in _mcp_tools(gw)
            assert _add(gw) == "4"
    finally:
        stop_server(gw)


def test_without_health_checks_nothing_is_pinged(tmp_path_factory: pytest.TempPathFactory) -> None:
    port = free_port()
    gw = start_server(tmp_path_factory.mktemp("nohealth"), HEALTH_CHECK_INTERVAL=0)
    admin = gw.client(mint(claims(teams=None)))
    try:
        with upstream_server(port=port) as url:
            body = {"name": "h", "url": url, "visibility": "public", "credentials": {"bearer_token": UPSTREAM_TOKEN}}
            up = admin.post("/gateways", json=body).json()
        time.sleep(3)
        assert admin.get(f"/gateways/{up['id']}").json()["status"] == "ok"
    finally:
        stop_server(gw)
