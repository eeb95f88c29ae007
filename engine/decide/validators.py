"""Checks that turn a PII regex match into a finding only when the data is real.

A regex finds things shaped like a card number or an SSN; these functions reject the ones
that cannot be real (failed Luhn check, SSN area 666, `999.1.1.1`), which is most of what
separates a PII detector from a false-positive generator. Each takes the whole text and
the match span, so it can look at what surrounds the match. No I/O in this module.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Final

__all__ = ["VALIDATORS", "Validator", "luhn_valid"]

Validator = Callable[[str, int, int], bool]


def luhn_valid(digits: str) -> bool:
    """The Luhn checksum every major card number satisfies."""
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = ord(char) - 48
        if position % 2:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return total % 10 == 0


def _card(text: str, start: int, end: int) -> bool:
    digits = "".join(c for c in text[start:end] if c.isdigit())
    if not 13 <= len(digits) <= 19 or len(set(digits)) == 1:
        return False
    return luhn_valid(digits)


def _ssn(text: str, start: int, end: int) -> bool:
    # By digit position, not by splitting on `-`: a custom detector may allow spaces or
    # no separator at all, and an unexpected shape is simply not an SSN.
    digits = "".join(c for c in text[start:end] if c.isdigit())
    if len(digits) != 9:
        return False
    area, group, serial = digits[:3], digits[3:5], digits[5:]
    return area not in ("000", "666") and area[0] != "9" and group != "00" and serial != "0000"


def _email(text: str, start: int, end: int) -> bool:
    local, _, domain = text[start:end].rpartition("@")
    labels = domain.split(".")
    return (
        0 < len(local) <= 64
        and not local.startswith(".")
        and not local.endswith(".")
        and ".." not in local
        and all(label and not label.startswith("-") and not label.endswith("-") for label in labels)
        and labels[-1].isalpha()
        and len(labels[-1]) >= 2
    )


def _phone(text: str, start: int, end: int) -> bool:
    digits = sum(c.isdigit() for c in text[start:end])
    return 8 <= digits <= 15 and (start == 0 or not text[start - 1].isalnum())


def _ipv4(text: str, start: int, end: int) -> bool:
    # A dotted quad inside a longer dotted run (`1.2.3.4.5`) is a version or an OID.
    if (start > 0 and text[start - 1] == ".") or (text[end : end + 1] == "." and text[end + 1 : end + 2].isdigit()):
        return False
    try:
        ipaddress.IPv4Address(text[start:end])
    except ValueError:
        return False
    return True


def _ipv6(text: str, start: int, end: int) -> bool:
    # `Foo::bar` and `std::map` are code, not addresses.
    if start > 0 and (text[start - 1].isalnum() or text[start - 1] in "_:"):
        return False
    if end < len(text) and (text[end].isalnum() or text[end] == "_"):
        return False
    candidate = text[start:end]
    if candidate.count(":") < 2 or not any(c.isdigit() for c in candidate):
        return False
    try:
        ipaddress.IPv6Address(candidate)
    except ValueError:
        return False
    return True


VALIDATORS: Final[Mapping[str, Validator]] = MappingProxyType(
    {"luhn": _card, "ssn": _ssn, "email": _email, "phone": _phone, "ipv4": _ipv4, "ipv6": _ipv6}
)
