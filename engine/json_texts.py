"""The texts inside a JSON value, one by one, as the content rules judge them.

Rules are written for text as a reader sees it. In a value's JSON text every quote is
`\\"` and every newline `\\n`, so `\\b` and `$` land on the escapes: `ls; id` passes as the
end of a string, an SSN after a newline is missed, and the quote JSON puts before every
value makes `"Create index page"` look like a stacked SQL query. So each key, string and
number is judged apart, and a redaction replaces a string, never the JSON around it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

__all__ = ["holds_nul", "replaced", "texts"]


def texts(value: Any) -> list[str]:
    """Every key, string and number (as its text) in `value`, in document order.

    Raises:
        RecursionError: `value` nests deeper than Python's call stack.
    """
    found: list[str] = []
    _collect(value, found)
    return found


def _collect(value: Any, found: list[str]) -> None:
    if isinstance(value, str):
        found.append(value)
    elif isinstance(value, dict):
        for key, item in value.items():
            found.append(key)
            _collect(item, found)
    elif isinstance(value, list):
        for item in value:
            _collect(item, found)
    elif isinstance(value, int | float) and not isinstance(value, bool):
        found.append(str(value))  # a card number sent as a JSON number is still one


def replaced(value: Any, new: Iterator[str]) -> Any:
    """`value` with its texts, in the order `texts` lists them, taken from `new`; a
    number whose text changed becomes that text.

    Raises:
        ValueError: two keys of one object became the same text.
    """
    if isinstance(value, str):
        return next(new)
    if isinstance(value, dict):
        rebuilt: dict[str, Any] = {}
        for item in value.values():
            key = next(new)
            rebuilt[key] = replaced(item, new)
        if len(rebuilt) != len(value):
            raise ValueError("two keys of one object were redacted to the same text")
        return rebuilt
    if isinstance(value, list):
        return [replaced(item, new) for item in value]
    if isinstance(value, int | float) and not isinstance(value, bool):
        text = next(new)
        return value if text == str(value) else text
    return value


def holds_nul(value: Any) -> bool:
    """Whether a key or string in `value` holds a NUL character, which PostgreSQL cannot
    store and C readers of a store stop at."""
    pending = [value]  # not recursive: the parser reads nesting deeper than Python's stack
    while pending:
        item = pending.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return True
        elif isinstance(item, dict):
            pending.extend(item)
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
    return False
