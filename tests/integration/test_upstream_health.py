"""An upstream that goes down after registration leaves the lists, and returns on its own."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests.integration.conftest import start_server, stop_server
from tests.integration.mcp_client import UPSTREAM_TOKEN, mcp_session, upstream_server
from tests.integration.servers import Gateway, claims, free_port, mint
from tests.integration.waiting import eventually


def _wait_for(condition: Callable[[], bool]) -> None:
    eventually(condition, within=20, failure="the gateway did not notice in time", every=0.2)


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
        listed = {t["name"]: t for t in admin.get("/tools").json()["items"]}
        assert listed["h_add"]["available"] is False
        assert "unreachable" in gw.log.read_text()
        # Unavailable, not gone: the REST call says so rather than 404.
        down = admin.post(f"/tools/{listed['h_add']['id']}/invoke", json={"arguments": {"a": 2, "b": 2}})
        assert (down.status_code, down.json()["error"]["code"]) == (409, "not_available")

        with upstream_server(port=port):
            _wait_for(lambda: status() == "ok")
            assert "h_add" in _mcp_tools(gw)
            assert _add(gw) == "4"
    finally:
        stop_server(gw)


def _workers_talking_to(gw: Gateway, port: int) -> set[int]:
    """The gateway's worker processes holding an open connection to `port` on loopback."""
    remote = f"0100007F:{port:04X}"
    rows = (line.split() for line in Path("/proc/net/tcp").read_text().splitlines()[1:])
    sockets = {f"socket:[{row[9]}]" for row in rows if row[2] == remote and row[3] == "01"}
    talking = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            if parent == gw.process.pid and any(os.readlink(fd) in sockets for fd in (entry / "fd").iterdir()):
                talking.add(int(entry.name))
    return talking


def test_of_several_workers_one_acts_on_each_change(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Every worker pings the upstream; the store's compare-and-set lets one of them
    take it out and one bring it back, so each change is made, logged and announced once."""
    port = free_port()
    gw = start_server(
        tmp_path_factory.mktemp("health-workers"),
        WORKERS=2, HEALTH_CHECK_INTERVAL=1, HEALTH_CHECK_TIMEOUT=2, UNHEALTHY_THRESHOLD=1,
    )  # fmt: skip
    admin = gw.client(mint(claims(teams=None)))
    body = {"name": "h", "visibility": "public", "prefix": "h_", "credentials": {"bearer_token": UPSTREAM_TOKEN}}

    def status() -> str:
        return str(admin.get(f"/gateways/{up['id']}").json()["status"])

    try:
        with upstream_server(port=port) as url:
            up = admin.post("/gateways", json={**body, "url": url}).json()
            _wait_for(lambda: len(_workers_talking_to(gw, port)) == 2)
        _wait_for(lambda: status() == "unreachable")
        time.sleep(3)  # both workers have failed pings of their own by now
        with upstream_server(port=port):
            _wait_for(lambda: status() == "ok")
            _wait_for(lambda: len(_workers_talking_to(gw, port)) == 2)
            time.sleep(3)  # and both have pinged it back up
            # Over REST: without Redis, an MCP session is known only to the worker that made it.
            listed = {t["name"]: t["available"] for t in admin.get("/tools").json()["items"]}
            assert listed["h_add"] is True
            # Read before the upstream stops again: its next outage is a change of its own.
            log = gw.log.read_text()
    finally:
        stop_server(gw)
    assert log.count("upstream `h` is unreachable") == 1
    assert log.count("upstream `h` answers again") == 1


def _listen(gw: Gateway, heard: list[str], opened: threading.Event) -> None:
    """Hold an MCP event stream open and note each notification until tools change."""
    token = mint(claims(teams=None))
    headers = {"Authorization": f"Bearer {token}", "Accept": "application/json, text/event-stream"}
    init = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": "2025-11-25"}}
    session = httpx.post(f"{gw.url}/mcp", headers=headers, json=init).headers["mcp-session-id"]
    streamed = {**headers, "Accept": "text/event-stream", "Mcp-Session-Id": session}
    with httpx.stream("GET", f"{gw.url}/mcp", headers=streamed, timeout=30) as stream:
        for line in stream.iter_lines():
            opened.set()
            if line.startswith("data:"):
                heard.append(json.loads(line[5:])["method"])
                if heard[-1] == "notifications/tools/list_changed":
                    return


def test_open_event_streams_hear_that_a_dead_upstream_took_its_tools(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    gw = start_server(tmp_path_factory.mktemp("health-events"), HEALTH_CHECK_INTERVAL=1, UNHEALTHY_THRESHOLD=1)
    admin = gw.client(mint(claims(teams=None)))
    body = {"name": "h", "visibility": "public", "prefix": "h_", "credentials": {"bearer_token": UPSTREAM_TOKEN}}
    heard: list[str] = []
    opened = threading.Event()
    try:
        with upstream_server() as url:
            assert admin.post("/gateways", json={**body, "url": url}).status_code == 201
            listener = threading.Thread(target=_listen, args=(gw, heard, opened), daemon=True)
            listener.start()
            assert opened.wait(10)
        listener.join(20)
        assert "notifications/tools/list_changed" in heard
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
