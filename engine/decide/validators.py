"""Checks that turn a PII regex match into a finding only when the data is real.

A regex finds things shaped like a card number or an SSN; these functions reject the ones
that cannot be real (failed Luhn check, SSN area 666, `999.1.1.1`), which is most of what
separates a PII detector from a false-positive generator. Each takes the whole text and
the match span, so it can look at what surrounds the match, and answers the span it
confirms (the card check may confirm only part of what the regex took) or None. No I/O
in this module.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Final

__all__ = ["VALIDATORS", "Span", "Validator", "luhn_valid"]

Span = tuple[int, int]
Validator = Callable[[str, int, int], Span | None]


def luhn_valid(digits: str) -> bool:
    """The Luhn checksum every major card number satisfies."""
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = ord(char) - 48
        if position % 2:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return total % 10 == 0


_DIGIT_GROUP: Final = re.compile(r"\d+")


def _card(text: str, start: int, end: int) -> Span | None:
    """The card number in the span: all of it, or else a run of its digit groups laid out
    as cards are written.

    The regex runs greedily over digits and separators, so a card next to another number
    (`order 12 4111…`, `4111… 123`) arrives joined to it and fails the checksum as a
    whole. Only card layouts are tried inside it: one group of 13 to 19 digits, groups of
    four with a shorter last one, or the 4-6-5 and 4-6-4 of American Express and Diners.
    Any run of small numbers has a one-in-ten chance of passing Luhn, so trying every run
    would report dates and times as cards.
    """
    if _card_number(text[start:end]):
        return (start, end)
    groups = [m.span() for m in _DIGIT_GROUP.finditer(text, start, end)]
    for first in range(len(groups)):
        for last in range(len(groups) - 1, first - 1, -1):
            sizes = [e - s for s, e in groups[first : last + 1]]
            if _card_layout(sizes) and _card_number(text[groups[first][0] : groups[last][1]]):
                return (groups[first][0], groups[last][1])
    return None


def _card_number(candidate: str) -> bool:
    digits = "".join(c for c in candidate if c.isdigit())
    return 13 <= len(digits) <= 19 and len(set(digits)) > 1 and luhn_valid(digits)


def _card_layout(sizes: list[int]) -> bool:
    if len(sizes) == 1:
        return 13 <= sizes[0] <= 19
    return (all(size == 4 for size in sizes[:-1]) and 1 <= sizes[-1] <= 4) or sizes in ([4, 6, 5], [4, 6, 4])


def _ssn(text: str, start: int, end: int) -> Span | None:
    # By digit position, not by splitting on `-`: a custom detector may allow spaces or
    # no separator at all, and an unexpected shape is simply not an SSN.
    digits = "".join(c for c in text[start:end] if c.isdigit())
    if len(digits) != 9:
        return None
    area, group, serial = digits[:3], digits[3:5], digits[5:]
    issued = area not in ("000", "666") and area[0] != "9" and group != "00" and serial != "0000"
    return (start, end) if issued else None


def _email(text: str, start: int, end: int) -> Span | None:
    local, _, domain = text[start:end].rpartition("@")
    labels = domain.split(".")
    valid = (
        0 < len(local) <= 64
        and not local.startswith(".")
        and not local.endswith(".")
        and ".." not in local
        and all(label and not label.startswith("-") and not label.endswith("-") for label in labels)
        and labels[-1].isalpha()
        and len(labels[-1]) >= 2
    )
    return (start, end) if valid else None


def _phone(text: str, start: int, end: int) -> Span | None:
    digits = sum(c.isdigit() for c in text[start:end])
    return (start, end) if 8 <= digits <= 15 and (start == 0 or not text[start - 1].isalnum()) else None


def _ipv4(text: str, start: int, end: int) -> Span | None:
    # A dotted quad inside a longer dotted run (`1.2.3.4.5`) is a version or an OID.
    if (start > 0 and text[start - 1] == ".") or (text[end : end + 1] == "." and text[end + 1 : end + 2].isdigit()):
        return None
    try:
        ipaddress.IPv4Address(text[start:end])
    except ValueError:
        return None
    return (start, end)


_ADDRESS_OR_CODE: Final = frozenset("0123456789abcdefABCDEF:_")
"""What before a `:` shows the match began inside an address or a `::` of code."""


def _ipv6(text: str, start: int, end: int) -> Span | None:
    # `Foo::bar` and `std::map` are code, not addresses; `IP:2001:db8::1` is a label and
    # an address, but a colon after a hex digit means the match began mid-address.
    before = text[start - 1] if start > 0 else ""
    if before.isalnum() or before == "_":
        return None
    if before == ":" and (start < 2 or text[start - 2] in _ADDRESS_OR_CODE):
        return None
    if end < len(text) and (text[end].isalnum() or text[end] == "_"):
        return None
    candidate = text[start:end]
    if candidate.count(":") < 2 or not any(c.isdigit() for c in candidate):
        return None
    try:
        ipaddress.IPv6Address(candidate)
    except ValueError:
        return None
    return (start, end)


VALIDATORS: Final[Mapping[str, Validator]] = MappingProxyType(
    {"luhn": _card, "ssn": _ssn, "email": _email, "phone": _phone, "ipv4": _ipv4, "ipv6": _ipv6}
)
