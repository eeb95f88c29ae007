"""An upstream's answer, judged whole before any of it reaches a client.

Every string an upstream returns is text a model may read: a block's text, an embedded
resource, the words around a link, a prompt's description, `_meta`, fields no revision
of the protocol defines. Picking fields to judge left unread whatever the list forgot (a
`text` beside a prompt message's `content`, a text that is not a string, `description`),
and held the size limit to each string rather than to the answer. So the whole result
goes through the content pipeline as one JSON value, and its size is the answer's.

Base64 payloads (`data`, `blob`) are bytes, not text: they count toward the size but are
not scanned, where a phone-number detector would find numbers in the noise of an image.
They are set aside only where the protocol puts them (a listed item, a prompt message's
content, an embedded resource), a fixed depth, so nesting buys an upstream no recursion;
anywhere else they are scanned like any string.

Text labelled HTML or markdown is sanitized after it passed, by the label as it passed.
"""

from __future__ import annotations

from typing import Any, Final

from engine.web.inspection import ContentRefused, check_json, sanitize_markup

__all__ = ["checked_answer"]

_PAYLOADS: Final = ("data", "blob")
_NESTED: Final = ("content", "resource")
"""A prompt message holds its block in `content`; a block embeds a resource in `resource`."""

Path = tuple[str | int, ...]


def checked_answer(result: dict[str, Any], key: str, context: str) -> dict[str, Any]:
    """`result` as it may be returned, `key` naming its list of blocks or messages.

    Raises:
        ContentRefused: the size limit or a blocking rule refuses it, or it nests too
            deeply to check.
    """
    answer = dict(result)
    set_aside: list[tuple[Path, str, str]] = []
    items = answer.get(key)
    if isinstance(items, list):
        answer[key] = [
            _emptied(item, (key, index), set_aside, 0) if isinstance(item, dict) else item
            for index, item in enumerate(items)
        ]
    checked: dict[str, Any] = check_json(context, answer, field=key, unscanned=sum(len(p) for *_, p in set_aside))
    # `checked` is `answer` or a redacted copy of it; either way its blocks are this call's own.
    for path, name, payload in set_aside:
        block = _at(checked, path)
        if block is None:  # a redaction rule matched one of the protocol's own keys
            raise ContentRefused(422, "content_blocked", f"`{key}`: redaction changed the answer's form")
        block[name] = payload
    if isinstance(checked.get(key), list):
        _sanitize(checked[key], listed_resources=key == "contents")
    return checked


def _emptied(block: dict[str, Any], path: Path, set_aside: list[tuple[Path, str, str]], depth: int) -> dict[str, Any]:
    """A copy of `block` (and of the blocks in it) with its payloads set aside."""
    copy = dict(block)
    for name in _PAYLOADS:
        payload = copy.get(name)
        if isinstance(payload, str):
            set_aside.append((path, name, payload))
            copy[name] = ""
    if depth < 2:
        for name in _NESTED:
            inner = copy.get(name)
            if isinstance(inner, dict):
                copy[name] = _emptied(inner, (*path, name), set_aside, depth + 1)
    return copy


def _at(value: Any, path: Path) -> dict[str, Any] | None:
    for step in path:
        if isinstance(step, int):
            value = value[step] if isinstance(value, list) and step < len(value) else None
        else:
            value = value.get(step) if isinstance(value, dict) else None
    return value if isinstance(value, dict) else None


def _sanitize(items: list[Any], *, listed_resources: bool) -> None:
    """Sanitize the text of every resource in `items`: each item itself when they are a
    read's contents, and any resource embedded in a block or a prompt message's block."""
    for item in items:
        if not isinstance(item, dict):
            continue
        if listed_resources:
            _sanitize_resource(item)
        for block in (item, item.get("content")):
            if isinstance(block, dict) and isinstance(block.get("resource"), dict):
                _sanitize_resource(block["resource"])


def _sanitize_resource(resource: dict[str, Any]) -> None:
    text = resource.get("text")
    if isinstance(text, str):
        resource["text"] = sanitize_markup(str(resource.get("mimeType") or ""), text)
