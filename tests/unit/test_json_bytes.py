"""`engine.json_bytes.loads`: orjson's speed, the standard library's verdicts and numbers.

The gateway forwards what it reads; a number it changed on the way (an integer past 64
bits read as a float) would be a silent corruption of a tool's arguments. A number with
no JSON spelling (NaN, infinite) is refused where it comes in.
"""

from __future__ import annotations

import json
import math

import hypothesis.strategies as st
import pytest
from hypothesis import given, settings

from engine.json_bytes import dumps, loads

_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()  # unbounded: past 64 bits too
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
)
_VALUES = st.recursive(
    _SCALARS,
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=8), children, max_size=5),
    max_leaves=30,
)


def _same(a: object, b: object) -> bool:
    """Equal, and of the same types all the way down (1 == 1.0 in Python)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)  # type: ignore[attr-defined,index]
    if isinstance(a, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))  # type: ignore[arg-type]
    return a == b or (isinstance(a, float) and math.isnan(a) and math.isnan(b))  # type: ignore[arg-type]


@settings(max_examples=300, deadline=None)
@given(_VALUES)
def test_reads_every_document_as_the_standard_library_does(value: object) -> None:
    raw = json.dumps(value).encode()
    assert _same(loads(raw), json.loads(raw))


@pytest.mark.parametrize(
    "raw",
    [
        b'{"n": 123456789012345678901234567890}',
        b"[18446744073709551616, -9223372036854775809]",
        b'{"deep": [[{"n": 99999999999999999999}]], "x": 1.5}',
    ],
)
def test_integers_past_64_bits_stay_exact(raw: bytes) -> None:
    value = loads(raw)
    assert _same(value, json.loads(raw))
    assert dumps(value) == dumps(json.loads(raw))


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"NaN", "`NaN` is not a JSON number"),
        (b'{"x": [Infinity]}', "`Infinity` is not a JSON number"),
        (b"-Infinity", "`-Infinity` is not a JSON number"),
        (b"[1e400]", "number `1e400` is too large for a 64-bit float"),
        (b'{"x": -1.5e999}', "number `-1.5e999` is too large for a 64-bit float"),
    ],
)
def test_numbers_without_a_json_spelling_are_refused(raw: bytes, message: str) -> None:
    """The standard reader accepts all of these, and would hand on a value the standard
    encoder writes as non-JSON (`NaN`) and orjson as `null`."""
    with pytest.raises(ValueError, match=message):
        loads(raw)


def test_a_lone_surrogate_is_refused_and_a_pair_is_text() -> None:
    with pytest.raises(ValueError, match="lone surrogate"):
        loads(b'{"text": "a\\ud800b"}')
    assert loads(b'{"text": "\\ud83d\\ude00"}') == {"text": "\U0001f600"}


@pytest.mark.parametrize("raw", [b'{"text": "a\xed\xa0\x80b"}', b'{"text": "\xed\xa0\xbd\xed\xb8\x80"}'])
def test_a_surrogate_encoded_in_bytes_is_refused(raw: bytes) -> None:
    """UTF-8 never encodes surrogates (a pair so encoded is CESU-8), but `json.loads`
    decodes bytes with `surrogatepass` and would hand on a string no encoder takes."""
    assert isinstance(json.loads(raw)["text"], str)
    with pytest.raises(ValueError, match="lone surrogate"):
        loads(raw)


@pytest.mark.parametrize("raw", [b"\xef\xbb\xbf{}", "{}".encode("utf-16")])
def test_what_orjson_refuses_gets_the_standard_verdict(raw: bytes) -> None:
    assert _same(loads(raw), json.loads(raw))


@pytest.mark.parametrize("raw", [b"{", b"[1,]", b"\xff", b'"\xef\xbb\xbf'])
def test_malformed_documents_raise_what_callers_catch(raw: bytes) -> None:
    # Both are ValueErrors, which every caller of `loads` turns into a clear refusal.
    with pytest.raises((json.JSONDecodeError, UnicodeDecodeError)):
        loads(raw)


def test_deep_nesting_is_read_without_recursion() -> None:
    depth = 900
    raw = b"[" * depth + b"1.5" + b"]" * depth
    value = loads(raw)
    for _ in range(depth):
        value = value[0]
    assert value == 1.5
