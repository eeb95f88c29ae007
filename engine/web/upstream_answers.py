"""An upstream's answer, judged whole before any of it reaches a client.

Every string an upstream returns is text a model may read: a block's text, an embedded
resource, the words around a link, a prompt's description, `_meta`, fields no revision
of the protocol defines. Picking fields to judge left unread whatever the list forgot (a
`text` beside a prompt message's `content`, a text that is not a string, `description`),
and held the size limit to each string rather than to the answer. So the whole result
goes through the content pipeline as one JSON value, and its size is the answer's.

Base64 payloads are bytes, not text: they count toward the size but are not scanned,
where a phone-number detector would find numbers in the noise of an image. Only what the
protocol defines as one is set aside: the `data` of an image or audio block, the `blob` of
a resource read or embedded, and only when it is base64. Anything else, a `data` beside
a text or a "blob" of prose, is scanned like any string. They are found at a fixed
depth, so nesting buys an upstream no recursion. A blob whose type says text (HTML,
JSON, SVG) is no payload: it is decoded and returned as the resource's text.

Text labelled HTML, markdown, SVG or XML is sanitized after it passed, by the label as
it passed, and judged again when that changed it: sanitizing decodes character
references (and drops unknown HTML tags), and either can join text that passed into text
that would not (`123&#45;45&#45;6789`).
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Any, Final

from engine.web.inspection import ContentRefused, check_json, sanitize_markup

__all__ = ["checked_answer"]

_BASE64: Final = re.compile(r"[A-Za-z0-9+/]*={0,2}")
_MEDIA: Final = frozenset({"image", "audio"})
_TEXT_TYPE: Final = re.compile(r"text/[\w.+-]+|[\w.-]+/(?:[\w.-]+\+)?(?:json|xml|javascript|ecmascript)", re.IGNORECASE)
_CHARSET: Final = re.compile(r"charset\s*=\s*\"?([\w.:-]+)", re.IGNORECASE)

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
            _emptied(item, (key, index), set_aside, key) if isinstance(item, dict) else item
            for index, item in enumerate(items)
        ]
    unscanned = sum(len(p) for *_, p in set_aside)
    checked: dict[str, Any] = check_json(context, answer, field=key, unscanned=unscanned)
    # `checked` is `answer` or a redacted copy of it; either way its blocks are this call's own.
    if isinstance(checked.get(key), list) and _sanitize(checked[key], key):
        checked = check_json(context, checked, field=key, unscanned=unscanned)
    for path, name, payload in set_aside:
        block = _at(checked, path)
        if block is None:  # a redaction rule matched one of the protocol's own keys
            raise ContentRefused(422, "content_blocked", f"`{key}`: redaction changed the answer's form")
        block[name] = payload
    return checked


def _emptied(item: dict[str, Any], path: Path, set_aside: list[tuple[Path, str, str]], key: str) -> dict[str, Any]:
    """A copy of a listed item (and of the block and resource in it) with its payloads
    set aside: a read's resource contents, a tool's content block, a prompt message."""
    if key == "contents":
        return _resource_copy(item, path, set_aside)
    copy = dict(item)
    if key == "messages":
        block = copy.get("content")
        if isinstance(block, dict):
            copy["content"] = _block_copy(block, (*path, "content"), set_aside)
        return copy
    return _block_copy(copy, path, set_aside)


def _block_copy(block: dict[str, Any], path: Path, set_aside: list[tuple[Path, str, str]]) -> dict[str, Any]:
    copy = dict(block)
    if copy.get("type") in _MEDIA:
        _set_aside(copy, "data", path, set_aside)
    embedded = copy.get("resource")
    if isinstance(embedded, dict) and copy.get("type") == "resource":
        copy["resource"] = _resource_copy(embedded, (*path, "resource"), set_aside)
    elif isinstance(embedded, dict):
        copy["resource"] = dict(embedded)  # no payload here, but sanitized in place all the same
    return copy


def _resource_copy(resource: dict[str, Any], path: Path, set_aside: list[tuple[Path, str, str]]) -> dict[str, Any]:
    copy = dict(resource)
    text = _blob_text(copy)
    if text is None:
        _set_aside(copy, "blob", path, set_aside)
    else:
        # A blob labelled as text is text a client will show or parse, however it was
        # sent: it is returned as text, judged and sanitized as text. Beside a text of
        # its own it is dropped: one resource, one text.
        del copy["blob"]
        copy.setdefault("text", text)
    return copy


def _blob_text(resource: dict[str, Any]) -> str | None:
    """The text of a resource's blob when its type says text, in its charset (UTF-8 if it
    names none or one unknown; bytes that do not decode are replaced, not skipped)."""
    blob, mime = resource.get("blob"), resource.get("mimeType")
    if not isinstance(blob, str) or not isinstance(mime, str):
        return None
    kind, _, parameters = mime.partition(";")
    if not _TEXT_TYPE.fullmatch(kind.strip()):
        return None
    try:
        data = base64.b64decode(blob, validate=True)
    except binascii.Error:
        return None
    charset = _CHARSET.search(parameters)
    try:
        return data.decode(charset[1] if charset else "utf-8", errors="replace")
    except LookupError:
        return data.decode("utf-8", errors="replace")


def _set_aside(holder: dict[str, Any], name: str, path: Path, set_aside: list[tuple[Path, str, str]]) -> None:
    """Take a payload out of `holder` when it is base64, whose every character is a byte;
    anything else in its place is text like any, and is scanned."""
    payload = holder.get(name)
    if isinstance(payload, str) and _BASE64.fullmatch(payload):
        set_aside.append((path, name, payload))
        holder[name] = ""


def _at(value: Any, path: Path) -> dict[str, Any] | None:
    for step in path:
        if isinstance(step, int):
            value = value[step] if isinstance(value, list) and step < len(value) else None
        else:
            value = value.get(step) if isinstance(value, dict) else None
    return value if isinstance(value, dict) else None


def _sanitize(items: list[Any], key: str) -> bool:
    """Sanitize the text of every resource in `items`, the copies `_emptied` made: each
    item of a read's contents, and the resource embedded in a block or a message's block.
    Returns whether any text changed."""
    changed = False
    for item in items:
        resource = _resource_in(item, key)
        if resource is not None:
            changed |= _sanitize_resource(resource)
    return changed


def _resource_in(item: Any, key: str) -> dict[str, Any] | None:
    if not isinstance(item, dict):
        return None
    if key == "contents":
        return item
    block = item.get("content") if key == "messages" else item
    resource = block.get("resource") if isinstance(block, dict) else None
    return resource if isinstance(resource, dict) else None


def _sanitize_resource(resource: dict[str, Any]) -> bool:
    text = resource.get("text")
    if not isinstance(text, str):
        return False
    cleaned = sanitize_markup(str(resource.get("mimeType") or ""), text)
    resource["text"] = cleaned
    return cleaned != text
