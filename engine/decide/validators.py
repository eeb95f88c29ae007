"""Checks that turn a PII regex match into a finding only when the data is real.

A regex finds things shaped like a card number or an SSN; these functions reject the ones
that cannot be real (failed Luhn check, SSN area 666, `999.1.1.1`), which is most of what
separates a PII detector from a false-positive generator. Each takes the whole text and
the match span, so it can look at what surrounds the match, and answers the span it
confirms or None.

The detectors' regexes are greedy and leftmost, so real data often arrives joined to its
neighbours (`.john@example.com`, `+14155552671 1200 3400`, a card after a date) and fails
as a whole. Then the validator looks for the data inside the match, or for a card just
past it, and confirms that span alone; always in a bounded neighbourhood, so a long run
of digits costs a constant per match. No I/O in this module.
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
_CARD_WIDTH: Final = 24
"""The widest a card is taken to be written, separators included: the default detector's reach."""
_CARD_GROUPS: Final = 5
"""The most digit groups a card layout has: four groups of four and a shorter last one."""
_NEXT_GROUP: Final = re.compile(r"[ -]{1,22}([0-9]{1,19})(?![0-9A-Za-z_])")
"""One more group of a card's run past the match, whole (as the regex's `\\b` asks). The
repeats stop where a card would be too wide or too long, so a run of a million digits or
spaces costs no more than a card."""


def _card(text: str, start: int, end: int) -> Span | None:
    """The card number in the span: a run of digit groups laid out as cards are written,
    which begins inside the span and may run on past it, or else all of the span.

    The regex runs greedily over digits and separators, so a card next to another number
    (`order 12 4111…`, `4111… 123`) arrives joined to it and fails the checksum as a
    whole; and as it stops at 24 characters, a card after a date (`2024-01-15 4111-1111-…`)
    or a phone number is cut in two, its head ending this match and its tail too short to
    make the next. Only card layouts are tried: one group of 13 to 19 digits, groups of
    four with a shorter last one, or the 4-6-5 and 4-6-4 of American Express and Diners,
    at most 24 characters wide. Any run of small numbers has a one-in-ten chance of
    passing Luhn, so trying every run would report dates and times as cards.
    """
    groups = [m.span() for m in _DIGIT_GROUP.finditer(text, start, end)]
    inside = len(groups)
    groups += _groups_after(text, end)
    sizes = [e - s for s, e in groups]
    found: Span | None = None
    for first in range(inside):
        for last in range(min(len(groups), first + _CARD_GROUPS) - 1, first - 1, -1):
            begin, finish = groups[first][0], groups[last][1]
            if finish - begin > _CARD_WIDTH or not _card_layout(sizes[first : last + 1]):
                continue
            if _card_number("".join(text[s:e] for s, e in groups[first : last + 1])):
                # Every run that passes is kept: a run of other numbers that passes by
                # chance (`1234 5500 0000 0000 0004`) must not leave the card beside it
                # half shown, and covering a few digits too many is the safe mistake.
                found = (begin, finish) if found is None else (found[0], max(found[1], finish))
                break
    if found is not None:
        return found
    # Laid out otherwise (`41111111 11111111`), the whole match may still be a card; but
    # only after the layouts, as one match in ten passes the checksum by chance, and a
    # card after a date would then be confirmed as the date and the card's first group.
    return (start, end) if _card_number("".join(text[s:e] for s, e in groups[:inside])) else None


def _groups_after(text: str, end: int) -> list[Span]:
    """The digit groups that carry the run on past `end`, as far as a card beginning before
    `end` could reach: the few that would complete one, within `_CARD_WIDTH` characters."""
    groups: list[Span] = []
    reach = end + _CARD_WIDTH
    for _ in range(_CARD_GROUPS - 1):
        step = _NEXT_GROUP.match(text, end)
        if step is None or step.end() >= reach:
            break
        groups.append(step.span(1))
        end = step.end()
    return groups


def _card_number(digits: str) -> bool:
    """Whether `digits` can be a card: 13 to 19 of them, not all alike, passing Luhn."""
    return 13 <= len(digits) <= 19 and len(set(digits)) > 1 and luhn_valid(digits)


def _card_layout(sizes: list[int]) -> bool:
    """Whether groups of these sizes are laid out as a card's are: cheap, so it runs before
    the checksum."""
    if len(sizes) == 1:
        return 13 <= sizes[0] <= 19
    fours = all(size == 4 for size in sizes[:-1]) and 1 <= sizes[-1] <= 4 and 13 <= sum(sizes) <= 19
    return fours or sizes in ([4, 6, 5], [4, 6, 4])


def _ssn(text: str, start: int, end: int) -> Span | None:
    # By digit position, not by splitting on `-`: a custom detector may allow spaces or
    # no separator at all, and an unexpected shape is simply not an SSN.
    digits = "".join(c for c in text[start:end] if c.isdigit())
    if len(digits) != 9:
        return None
    area, group, serial = digits[:3], digits[3:5], digits[5:]
    issued = area not in ("000", "666") and area[0] != "9" and group != "00" and serial != "0000"
    return (start, end) if issued else None


_LOCAL_PART_MAX: Final = 64
"""The longest local part of an address (RFC 5321)."""


def _email(text: str, start: int, end: int) -> Span | None:
    """The address in the span, its local part cut to the longest tail that is valid.

    A local part may not begin or end with a dot, hold two in a row, or pass 64
    characters; the regex takes any run of the characters it may hold, so whatever stands
    before an address (`.john@`, `a..john@`, a run of `+`) arrives joined to it, and the
    address itself is that tail. The domain is not cut the same way: its labels are taken
    as the regex found them, since `x@self.weight.T` is a matrix product in Python and
    `x@self.weight` would read as an address.
    """
    at = text.rfind("@", start, end)
    if at <= start or text[at - 1] == ".":
        return None  # no local part, or every tail of it ends with a dot
    labels = text[at + 1 : end].split(".")
    if not (
        all(label and not label.startswith("-") and not label.endswith("-") for label in labels)
        and labels[-1].isalpha()
        and len(labels[-1]) >= 2
    ):
        return None
    # The tail after the last `..`, else after a leading dot, within the last 64 characters.
    local = max(start, at - _LOCAL_PART_MAX)
    double = text.rfind("..", local, at)
    if double >= 0:
        local = double + 2
    if text[local] == ".":
        local += 1
    return (local, end)


_PHONE_DIGITS: Final = range(8, 16)
"""How many digits a phone number has: up to 15 in E.164, and at least 8 to tell it from
a signed quantity (`+1 23`)."""


def _phone(text: str, start: int, end: int) -> Span | None:
    """The phone number in the span: its longest run of leading digit groups with 8 to 15
    digits, all of it when it has no more.

    The regex takes up to 22 digits, so a number followed by others (`+14155552671 1200
    3400`) arrives joined to them, its last group perhaps cut short. A number's own groups
    cannot be told from its neighbours', so the longest run that makes a phone is taken: a
    redaction then covers the whole number however it is grouped, at the cost of a
    neighbouring group it may take with it. The `+` must not follow a letter or digit,
    where it is arithmetic (`x+14155552671`).
    """
    if start > 0 and text[start - 1].isalnum():
        return None
    found: Span | None = None
    digits = 0
    for group in _DIGIT_GROUP.finditer(text, start, end):
        digits += group.end() - group.start()
        if digits > _PHONE_DIGITS[-1]:
            break
        if digits in _PHONE_DIGITS and not text[group.end() : group.end() + 1].isdigit():
            found = (start, group.end())
    return found


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
    # an address, but a colon after a hex digit means the match began mid-address. A match
    # glued to a word (`addr2001:db8::1`, `0xdead::1`) began inside a longer token, code or
    # hex more often than an address written without its space, and is refused too.
    before = text[start - 1] if start > 0 else ""
    if before.isalnum() or before == "_":
        return None
    if before == ":" and (start < 2 or text[start - 2] in _ADDRESS_OR_CODE):
        return None
    if end < len(text) and (text[end].isalnum() or text[end] == "_"):
        return None
    # The regex takes a colon after the last group, as in a log line's `2001:db8::1: refused`.
    if text[end - 1] == ":" and text[end - 2 : end] != "::":
        end -= 1
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
