"""Fixtures that start real servers; any traceback in a gateway's log fails the test."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.mcp_client import register_upstream, upstream_server
from tests.integration.servers import Gateway, redis_server, start_gateway

_LIVE: list[Gateway] = []


@pytest.fixture(autouse=True)
def _no_tracebacks() -> Iterator[None]:
    for gateway in _LIVE:
        gateway.new_tracebacks()
    yield
    for gateway in _LIVE:
        trace = gateway.new_tracebacks()
        assert not trace, f"the gateway logged a traceback:\n{trace}"


def start_server(folder: Path, *, address: str = "127.0.0.1", **env: Any) -> Gateway:
    gateway = start_gateway(folder, {k: None if v is None else str(v) for k, v in env.items()}, address=address)
    _LIVE.append(gateway)
    return gateway


def stop_server(gateway: Gateway) -> None:
    gateway.stop()
    _LIVE.remove(gateway)
    trace = gateway.new_tracebacks()
    assert not trace, f"the gateway logged a traceback:\n{trace}"


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    """A gateway with the default policies and the admin API on."""
    server = start_server(tmp_path_factory.mktemp("gw"), MCPGATEWAY_ADMIN_API_ENABLED="true")
    yield server
    stop_server(server)


@pytest.fixture(scope="module")
def federated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    """A gateway with the fixture MCP upstream registered, for the module's tests."""
    with upstream_server() as upstream_url:
        server = start_server(tmp_path_factory.mktemp("federated"))
        register_upstream(server, upstream_url)
        yield server
        stop_server(server)


@pytest.fixture
def start(tmp_path: Path) -> Iterator[Callable[..., Gateway]]:
    """Start a gateway with its own store and environment for one test."""
    started: list[Gateway] = []

    def run(**env: Any) -> Gateway:
        server = start_server(tmp_path / f"gw{len(started)}", **env)
        started.append(server)
        return server

    yield run
    for server in started:
        stop_server(server)


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real Redis server for the module's tests."""
    with redis_server(tmp_path_factory.mktemp("redis")) as (url, _):
        yield url


@pytest.fixture(params=["process", "redis"])
def shared_url(request: pytest.FixtureRequest) -> str | None:
    """Each test twice: with state kept in the process (None), and in a real Redis."""
    return request.getfixturevalue("redis_url") if request.param == "redis" else None
