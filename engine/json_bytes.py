"""JSON encoding for the MCP hot path: orjson, and the standard library where orjson refuses.

A forwarded tool call encodes its arguments and its result several times: for the
size limit, for the upstream and for the client. With 10 KB of each the standard
encoder spends about 0.1 ms per call; orjson, under 5 µs. orjson refuses integers past
64 bits, which JSON allows and `json.loads` keeps exact; such a document goes through
the standard encoder instead, so the gateway never alters a number it forwards.

Decoding is orjson's too (a 10 KB result in 8 µs rather than 26). A document in which
orjson found a float is read again by `json.loads`, and so is one orjson refuses, so
that what is accepted and how a refusal is worded stay the standard library's. Floats
are rare in MCP messages, and the walk that looks for them visits values, not bytes.

An integer past 64 bits is JSON, and is kept exact: orjson reads one as a float, so the
standard reader sees it. Where one cannot go (the store encodes with orjson, which
cannot write it), the caller refuses it (`engine.web.bodies`). `NaN`, `Infinity` and a
float past the 64-bit range (`1e400`) are refused here: orjson refuses them, the
standard reader would accept them, and the value it hands on has no JSON spelling
(orjson writes it as `null`, the standard encoder as the non-JSON `NaN`).

`json.loads` also accepts a lone surrogate, escaped (`"\\ud800"`) or encoded as UTF-8
never allows (bytes ED A0 to ED BF: it decodes bytes with `surrogatepass`). Such a
string is not text: the store and every encoder refuse it later, far from where it came
in. `loads` refuses it where it comes in instead. (orjson refuses both forms, so such a
document always reaches the check.)
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator
from typing import Any, Final

import orjson

__all__ = ["dumps", "leaves", "loads"]

_SURROGATE: Final = re.compile(rb"\\u[dD][89a-fA-F]|\xed[\xa0-\xbf]")


def dumps(value: Any) -> bytes:
    """`value` as compact UTF-8 JSON."""
    try:
        return orjson.dumps(value)
    except orjson.JSONEncodeError:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


def loads(raw: bytes) -> Any:
    """`raw` (UTF-8) parsed as JSON whose every string is text and every float finite.

    Raises:
        ValueError: not JSON, a string in it holds a lone surrogate, or a number in it
            is not finite.
    """
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        pass
    else:
        if not _holds_float(value):
            return value
    value = json.loads(raw, parse_float=_float, parse_constant=_constant)
    # Paired escapes (emoji) decode to text and pass the walk.
    if _SURROGATE.search(raw) and not _is_text(value):
        raise ValueError("a string holds a lone surrogate, which is not text")
    return value


def leaves(value: Any) -> Iterator[Any]:
    """Every value in a parsed JSON `value` that is neither an object nor an array.

    Not recursive: orjson nests deeper than Python's recursion limit.
    """
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, dict):
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
        else:
            yield item


def _holds_float(value: Any) -> bool:
    return any(isinstance(item, float) for item in leaves(value))


def _float(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):
        raise ValueError(f"number `{_clipped(text)}` is too large for a 64-bit float")
    return number


def _constant(name: str) -> float:
    raise ValueError(f"`{name}` is not a JSON number")


def _clipped(text: str) -> str:
    return text if len(text) <= 40 else f"{text[:20]}...{text[-8:]}"


def _is_text(value: Any) -> bool:
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return False
        return True
    if isinstance(value, dict):
        return all(_is_text(k) and _is_text(v) for k, v in value.items())
    if isinstance(value, list):
        return all(_is_text(v) for v in value)
    return True
