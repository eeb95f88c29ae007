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
