"""Keep upstream connections off the gateway's own networks at connect time, not only at
registration.

Registering an upstream refuses a host that resolves to a loopback, private, link-local
or otherwise non-global address. A name can resolve differently an hour later (DNS
rebinding), so the connections themselves go through `PublicResolver`, which keeps only
global addresses. aiohttp does not consult a resolver for an IP literal; the client
checks those itself with `refused_literal`. Imported when the first upstream client is
made, like aiohttp itself.
"""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

__all__ = ["AddressRefused", "PublicResolver", "refused_literal"]


class AddressRefused(OSError):
    """The upstream's host has no public address, and the policy wants one."""


class PublicResolver(AbstractResolver):
    """aiohttp's own resolver, keeping only the addresses that are globally routable."""

    def __init__(self) -> None:
        self._inner = DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        found = await self._inner.resolve(host, port, family)
        public = [r for r in found if ipaddress.ip_address(r["host"]).is_global]
        if not public:
            raise AddressRefused(f"`{host}` resolves to no public address")
        return public

    async def close(self) -> None:
        await self._inner.close()


def refused_literal(url: str) -> bool:
    """Whether `url` names its host by a non-global IP address."""
    host = urlsplit(url).hostname or ""
    try:
        return not ipaddress.ip_address(host).is_global
    except ValueError:
        return False  # a name: the resolver judges what it resolves to
