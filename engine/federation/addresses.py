"""Keep upstream connections off the gateway's own networks at connect time, not only at
registration.

Registering an upstream refuses a host that resolves to a loopback, private, link-local
or otherwise non-global address. A name can resolve differently an hour later (DNS
rebinding), so each new connection resolves the host again through `public_addresses`,
which keeps only global addresses, and connects to one of those, never to the name.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket

__all__ = ["AddressRefused", "public_addresses"]


class AddressRefused(OSError):
    """The upstream's host has no public address, and the policy wants one."""


async def public_addresses(host: str, port: int) -> list[tuple[socket.AddressFamily, str]]:
    """The globally routable addresses `host` resolves to (an IP literal resolves to
    itself), each with its address family.

    Raises:
        AddressRefused: none of them is public.
        OSError: the name does not resolve.
    """
    found = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    public: list[tuple[socket.AddressFamily, str]] = []
    for family, _, _, _, sockaddr in found:
        address = str(sockaddr[0])
        if _is_global(address) and (family, address) not in public:
            public.append((family, address))
    if not public:
        raise AddressRefused(f"`{host}` resolves to no public address")
    return public


def _is_global(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_global
    except ValueError:
        return False
