"""PII validators: a regex finds candidates, these decide whether they are real."""

from __future__ import annotations

import pytest

from engine.decide.validators import VALIDATORS, luhn_valid


def _check(name: str, text: str) -> bool:
    return VALIDATORS[name](text, 0, len(text)) == (0, len(text))


@pytest.mark.parametrize("number", ["4111111111111111", "5500005555555559", "378282246310005", "6011000990139424"])
def test_luhn_accepts_test_card_numbers(number: str) -> None:
    assert luhn_valid(number)


@pytest.mark.parametrize("number", ["4111111111111112", "1234567812345678", "0000000000000001"])
def test_luhn_rejects_wrong_check_digits(number: str) -> None:
    assert not luhn_valid(number)


@pytest.mark.parametrize(("text", "valid"), [
    ("123-45-6789", True),
    ("000-12-3456", False),  # area 000 is never issued
    ("666-12-3456", False),  # nor 666
    ("912-12-3456", False),  # nor 900-999
    ("123-00-4567", False),  # group 00
    ("123-45-0000", False),  # serial 0000
    # Shapes a custom detector may allow: judged by digit position, never a crash.
    ("123456789", True),
    ("123 45 6789", True),
    ("666 45 6789", False),
    ("12-345-678", False),
])  # fmt: skip
def test_ssn_rules(text: str, valid: bool) -> None:
    assert _check("ssn", text) is valid


@pytest.mark.parametrize(("text", "valid"), [
    ("10.0.0.1", True),
    ("255.255.255.255", True),
    ("256.1.1.1", False),
    ("1.2.3", False),
])  # fmt: skip
def test_ipv4_parsing(text: str, valid: bool) -> None:
    assert _check("ipv4", text) is valid


@pytest.mark.parametrize(("text", "valid"), [
    ("2001:db8::1", True),
    ("fe80::1ff:fe23:4567:890a", True),
    ("::", False),  # the unspecified address says nothing about anyone
    ("1:2:3:4:5:6:7:8:9", False),
    ("2001:db8:::1", False),
])  # fmt: skip
def test_ipv6_parsing(text: str, valid: bool) -> None:
    assert _check("ipv6", text) is valid


@pytest.mark.parametrize(("text", "valid"), [("+14155552671", True), ("+1 415 555 2671", True), ("+1 23", False)])
def test_phone_numbers(text: str, valid: bool) -> None:
    assert _check("phone", text) is valid


@pytest.mark.parametrize(("text", "card"), [
    ("4111111111111111 123", "4111111111111111"),  # a card and then another number
    ("order 12 4111111111111111", "4111111111111111"),  # a number and then a card
    ("4111 1111 1111 1111 7", "4111 1111 1111 1111"),  # groups of four, then a stray digit
    ("12 3782 822463 10005", "3782 822463 10005"),  # American Express layout
    ("4111-1111-1111-1111", "4111-1111-1111-1111"),
])  # fmt: skip
def test_a_card_joined_to_a_neighbouring_number_is_found_alone(text: str, card: str) -> None:
    span = VALIDATORS["luhn"](text, 0, len(text))
    assert span is not None
    assert text[span[0] : span[1]] == card


@pytest.mark.parametrize("text", [
    "2024 11 21 10 30 45 12",  # dates and times: runs of small numbers are not card layouts
    "4111111111111112 123",  # the card fails its checksum
])  # fmt: skip
def test_runs_of_numbers_that_are_not_laid_out_as_cards_are_not_cards(text: str) -> None:
    assert VALIDATORS["luhn"](text, 0, len(text)) is None


@pytest.mark.parametrize(("text", "start", "found"), [
    ("IP:2001:db8::1", 3, True),  # a label, a colon, an address
    ("std::2001:db8::1", 5, False),
    ("cafe:2001:db8::1", 5, False),  # began mid-address
])  # fmt: skip
def test_an_ipv6_address_after_a_label_and_colon(text: str, start: int, found: bool) -> None:
    assert (VALIDATORS["ipv6"](text, start, len(text)) is not None) is found


def _found(name: str, text: str, start: int = 0, end: int | None = None) -> str | None:
    """What the validator confirms of the match `text[start:end]`, as text."""
    span = VALIDATORS[name](text, start, len(text) if end is None else end)
    return None if span is None else text[span[0] : span[1]]


@pytest.mark.parametrize(("text", "address"), [
    ("john@example.com", "john@example.com"),
    (".john@example.com", "john@example.com"),  # a leading dot
    ("a..john@example.com", "john@example.com"),  # two dots in a row: the tail after them
    ("a...b..john.doe@example.com", "john.doe@example.com"),
    ("." * 100_000 + "john@example.com", "john@example.com"),
    ("x" * 70 + "@example.com", "x" * 64 + "@example.com"),  # the 64 characters a local part may hold
    ("x" * 9 + "." + "j" * 63 + "@example.com", "j" * 63 + "@example.com"),  # ...nor begin with a dot
    ("john.@example.com", None),  # every tail ends with the dot
    ("...@example.com", None),
    ("@example.com", None),
    (".john@example.c", None),  # the domain is not cut: x@self.weight.T is Python
    (".john@example.com.1", None),
])  # fmt: skip
def test_an_address_is_the_longest_valid_tail_of_its_local_part(text: str, address: str | None) -> None:
    assert _found("email", text) == address


@pytest.mark.parametrize(("text", "phone"), [
    ("+14155552671", "+14155552671"),
    ("+14155552671 1200 3400", "+14155552671 1200"),  # 19 digits: the longest leading run of 15 at most
    ("+1 415 555 2671 1200 3400", "+1 415 555 2671 1200"),
    ("+1 415 555 2671 12345678", "+1 415 555 2671"),
    ("+1234567890123456789012", None),  # one group of 22 digits has no shorter phone inside
    ("+1 23 4567890123456789", None),  # nor has 3 digits and then 19
    ("x+14155552671 1200 3400", None),  # after a letter, `+` is arithmetic
])  # fmt: skip
def test_a_phone_is_the_longest_run_of_leading_groups_that_makes_one(text: str, phone: str | None) -> None:
    start = text.index("+")
    assert _found("phone", text, start) == phone


def test_a_phone_group_the_regex_cut_short_is_not_taken() -> None:
    text = "+1 415 555 2671 1200 3400"
    assert _found("phone", text, 0, len(text) - 2) == "+1 415 555 2671 1200", "the match ends inside `3400`"
    assert _found("phone", "+1 415 555 2671 12345678", 0, 20) == "+1 415 555 2671", "`1234` is only a head"


@pytest.mark.parametrize(("text", "end", "card"), [
    # The match ends where the default regex stops, 24 characters in: the card runs on.
    ("2024-01-15 4111-1111-1111-1111", 20, "4111-1111-1111-1111"),
    ("2024-01-15 4111 1111 1111 1111 x", 20, "4111 1111 1111 1111"),
    ("14155552671 4111 1111 1111 1111", 21, "4111 1111 1111 1111"),
    ("2024-01-15 3782 822463 10005", 22, "3782 822463 10005"),
])  # fmt: skip
def test_a_card_cut_short_by_the_match_is_followed_past_it(text: str, end: int, card: str) -> None:
    assert _found("luhn", text, 0, end) == card


def test_a_run_that_passes_by_chance_does_not_hide_the_card_beside_it() -> None:
    """One match in ten passes the checksum whole; the card inside or after it is still
    covered, with the chance run beside it rather than in its place."""
    assert _found("luhn", "123 2024-01-15 - 4111 1111 1111 1111", 0, 21) == "4111 1111 1111 1111"
    assert _found("luhn", "1234 5500 0000 0000 0004 ok", 0, 24) == "1234 5500 0000 0000 0004"


@pytest.mark.parametrize(("text", "end"), [
    ("2024-01-15 4111-1111-1111-1111x", 20),  # glued to a word: the regex's `\b` would refuse it
    ("2024-01-15 4111-1111-1111-11111", 20),  # the last group is too long for the layout
    ("2024-01-15 4111,1111-1111-1111", 15),  # a comma ends the run
    ("2024-01-15 4111-1111          1111-1111", 20),  # wider than a card is written
    ("2024-01-15 10:30:00 4111", 13),
])  # fmt: skip
def test_a_card_is_followed_only_along_its_own_run(text: str, end: int) -> None:
    assert _found("luhn", text, 0, end) is None


@pytest.mark.parametrize(("tail", "card"), [
    ("1" * 1_000_000, None),
    (" " * 1_000_000 + "1111", None),
    ("-1111" * 200_000, "4111-1111-1111-1111"),
])  # fmt: skip
def test_following_a_card_past_the_match_reads_a_bounded_stretch(tail: str, card: str | None) -> None:
    """A million digits or separators after the match are read only as far as a card reaches."""
    assert _found("luhn", "2024-01-15 4111-1111" + tail, 0, 20) == card


@pytest.mark.parametrize(("text", "address"), [
    ("2001:db8::1:", "2001:db8::1"),  # a colon after the address, as a log line has it
    ("fe80::1:", "fe80::1"),
    ("2001:db8::", "2001:db8::"),  # `::` ends the address itself
    ("2001:db8::1:x", None),  # glued to a word after the colon
])  # fmt: skip
def test_a_colon_after_an_ipv6_address_is_not_part_of_it(text: str, address: str | None) -> None:
    assert _found("ipv6", text) == address
