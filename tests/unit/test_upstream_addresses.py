"""Upstream connections resolve through a resolver that keeps only public addresses.

These use the machine's real resolver: `localhost` comes from /etc/hosts, and an IP
literal resolves to itself without any network.
"""

from __future__ import annotations

import asyncio

import pytest

from engine.federation.addresses import AddressRefused, PublicResolver, refused_literal


def _resolve(host: str) -> list[str]:
    async def run() -> list[str]:
        resolver = PublicResolver()
        try:
            return [r["host"] for r in await resolver.resolve(host, 443)]
        finally:
            await resolver.close()

    return asyncio.run(run())


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1", "10.1.2.3", "169.254.169.254", "192.168.0.1"])
def test_names_and_addresses_that_are_not_public_are_refused(host: str) -> None:
    with pytest.raises(AddressRefused):
        _resolve(host)


def test_a_public_address_passes() -> None:
    assert _resolve("8.8.8.8") == ["8.8.8.8"]


@pytest.mark.parametrize(
    ("url", "refused"),
    [
        ("http://127.0.0.1:9/mcp", True),
        ("http://[::1]:9/mcp", True),
        ("http://[fe80::1]/mcp", True),
        ("http://10.0.0.8/mcp", True),
        ("https://8.8.8.8/mcp", False),
        ("https://mcp.example.com/mcp", False),
        ("http://localhost:9/mcp", False),
    ],
)
def test_ip_literals_are_judged_without_the_resolver(url: str, refused: bool) -> None:
    """aiohttp skips the resolver for literals; a name is left to the resolver."""
    assert refused_literal(url) is refused
