"""Upstream connections go only to the public addresses a host resolves to.

These use the machine's real resolver: `localhost` comes from /etc/hosts, and an IP
literal resolves to itself without any network.
"""

from __future__ import annotations

import asyncio
import socket

import pytest

from engine.federation.addresses import AddressRefused, public_addresses


@pytest.mark.parametrize(
    "host",
    [
        *("localhost", "127.0.0.1", "::1", "fe80::1", "10.1.2.3", "169.254.169.254", "192.168.0.1", "100.64.0.1"),
        # IPv6 addresses that reach an IPv4 one, which Python 3.11 takes for global:
        *("64:ff9b::a00:1", "2002:a00:1::1", "::ffff:127.0.0.1", "::127.0.0.1", "64:ff9b:1::1", "fec0::1"),
    ],
)
def test_names_and_addresses_that_are_not_public_are_refused(host: str) -> None:
    with pytest.raises(AddressRefused):
        asyncio.run(public_addresses(host, 443))


def test_a_public_address_passes_with_its_family() -> None:
    assert asyncio.run(public_addresses("8.8.8.8", 443)) == [(socket.AF_INET, "8.8.8.8")]
    assert asyncio.run(public_addresses("2001:4860:4860::8888", 443)) == [(socket.AF_INET6, "2001:4860:4860::8888")]
    # NAT64 of a public IPv4 address is as public as that address.
    assert asyncio.run(public_addresses("64:ff9b::808:808", 443)) == [(socket.AF_INET6, "64:ff9b::808:808")]


@pytest.mark.parametrize("host", ["a..com", "x" * 64 + ".example.com"])
def test_a_name_that_cannot_be_encoded_is_an_os_error_like_any_unresolvable_name(host: str) -> None:
    with pytest.raises(OSError, match="not a valid host name"):
        asyncio.run(public_addresses(host, 443))
