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
from typing import Final

__all__ = ["AddressRefused", "is_public", "public_addresses", "resolve"]

_NAT64: Final = ipaddress.IPv6Network("64:ff9b::/96")
"""The well-known NAT64 prefix: the last 32 bits are the IPv4 address reached."""

_NEVER_PUBLIC: Final = (
    ipaddress.IPv6Network("64:ff9b:1::/48"),  # NAT64 for local use (RFC 8215)
    ipaddress.IPv6Network("::/96"),  # IPv4-compatible addresses, deprecated
    ipaddress.IPv6Network("fec0::/10"),  # site-local, deprecated
)


class AddressRefused(OSError):
    """The upstream's host has no public address, and the policy wants one."""


async def resolve(host: str, port: int) -> list[tuple[socket.AddressFamily, str]]:
    """Every address `host` resolves to for a TCP connection (an IP literal resolves to
    itself), each with its address family, once.

    Raises:
        OSError: the name does not resolve.
    """
    try:
        found = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except UnicodeError as err:  # an empty or over-long label fails IDNA encoding, before any look-up
        raise OSError(f"`{host}` is not a valid host name") from err
    return list(dict.fromkeys((family, str(sockaddr[0])) for family, _, _, _, sockaddr in found))


async def public_addresses(host: str, port: int) -> list[tuple[socket.AddressFamily, str]]:
    """The globally routable ones of the addresses `host` resolves to.

    Raises:
        AddressRefused: none of them is public.
        OSError: the name does not resolve.
    """
    public = [(family, address) for family, address in await resolve(host, port) if is_public(address)]
    if not public:
        raise AddressRefused(f"`{host}` resolves to no public address")
    return public


def is_public(address: str) -> bool:
    """Whether a connection to `address` reaches the public internet and nothing else.

    `ipaddress.is_global` alone (Python 3.11) takes an IPv6 address that carries an IPv4
    one for global: a NAT64 (`64:ff9b::10.0.0.1`) or 6to4 (`2002:0a00:0001::`) address
    reaches the private IPv4 address inside it. Those are judged by the address inside.
    """
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return ip.ipv4_mapped.is_global
        if ip in _NAT64:
            return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF).is_global
        if ip.sixtofour is not None:
            return ip.sixtofour.is_global
        if any(ip in network for network in _NEVER_PUBLIC):
            return False
    return ip.is_global
