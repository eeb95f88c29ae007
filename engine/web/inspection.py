"""The content pipeline every stored or forwarded text goes through.

Order matters and is fixed: the size limit first (nothing reads an oversized body), then
one Hyperscan pass that finds PII and attack patterns together, then the policy's action
per finding under the active mode: refuse, redact, or let through and log. A refusal
never echoes the matched text; it names the rule and category. Every finding that is
acted upon writes one JSON log line with a masked user, so operators can follow
violations without the log becoming a second copy of the data.
"""

from __future__ import annotations

import json
import logging
import re
from collections import Counter
from collections.abc import Sequence
from typing import Any, Final

import nh3
from quart import g

from engine.decide import Action, Content, Finding, Reason
from engine.decide.content import inspect_content, inspect_parts, redact
from engine.decide.model import Denial
from engine.json_bytes import dumps
from engine.json_texts import replaced, texts
from engine.policy import Snapshot
from engine.web.guard import mask_email
from engine.web.responses import ApiError

__all__ = ["ContentRefused", "check_json", "check_text", "sanitize_markup"]

log = logging.getLogger("policygate.content")

_HTML: Final = frozenset({"text/html", "application/xhtml+xml"})
_XML: Final = frozenset({"application/xml", "text/xml"})
_NUMERIC_REFERENCE: Final = re.compile(r"&#(?:[xX]0*([0-9a-fA-F]{1,8})|0*([0-9]{1,10}));?")
_MARKUP: Final = frozenset("<>&\"'")

_SAFE_AUTOLINK: Final = re.compile(
    r"<(?![^>]*/on[a-z]+=)(?:https?://|mailto:)[^<>\s\"'`]*>|<[\w.+-]+@[a-z0-9-]+(?:\.[a-z0-9-]+)+>",
    re.IGNORECASE,
)
"""A markdown autolink to a web page or a mailbox. Nothing in it can close a quoted
attribute, and nothing reads as an event handler should it ever be parsed as HTML."""

_HTML_START: Final = re.compile(r"<[A-Za-z/!?]")
"""Where HTML can begin: a tag, an end tag, a comment, a declaration or an instruction."""

_KEPT: Final = ("\ue000", "\ue001")


class ContentRefused(ApiError):
    """413 or 422: the text broke a size limit or a content rule."""


def check_text(context: str, text: str, *, field: str) -> str:
    """`text` as it may be stored or forwarded (redacted where the policy says so).

    Raises:
        ContentRefused: the size limit or a blocking rule refuses it.
    """
    snapshot: Snapshot = g.snapshot
    inspection = inspect_content(snapshot.content, Content(context, text))
    _act_on(snapshot, context, field, inspection.denial, inspection.findings)
    if any(f.action is Action.REDACT for f in inspection.findings):
        return redact(snapshot.content, text, inspection.findings)
    return text


def check_json(context: str, value: Any, *, field: str, unscanned: int = 0) -> Any:
    """A JSON value checked string by string (see `engine.json_texts`), its size as JSON.

    `unscanned` is the size of what was taken out of `value` before the scan (base64
    payloads), which counts toward the limit all the same.

    Raises:
        ContentRefused: the size limit or a blocking rule refuses it, it nests too deeply
            to walk, or redaction made two keys of one object the same.
    """
    snapshot: Snapshot = g.snapshot
    try:
        parts = texts(value)
        size = len(dumps(value)) + unscanned
    except RecursionError as err:  # `texts` and the encoder give up at slightly different depths
        raise ContentRefused(422, "content_blocked", f"`{field}`: nested too deeply to check") from err
    inspection = inspect_parts(snapshot.content, context, parts, size)
    _act_on(snapshot, context, field, inspection.denial, [f for found in inspection.findings for f in found])
    if not any(f.action is Action.REDACT for found in inspection.findings for f in found):
        return value
    redacted = (
        redact(snapshot.content, text, found) if found else text
        for text, found in zip(parts, inspection.findings, strict=True)
    )
    try:
        return replaced(value, redacted)
    except ValueError as err:
        raise ContentRefused(422, "content_blocked", f"`{field}`: {err}") from err


def _act_on(snapshot: Snapshot, context: str, field: str, denial: Denial | None, findings: Sequence[Finding]) -> None:
    """Log what was found; refuse when a finding blocks.

    Raises:
        ContentRefused: `denial` is set.
    """
    if denial is not None:
        reason, rule, message = denial
        status = 413 if reason is Reason.CONTENT_TOO_LARGE else 422
        category = next((f.category for f in findings if f.rule == rule.id), None)
        _violation(snapshot, context, field, str(reason), rule.id, "block", category=category, count=1)
        raise ContentRefused(status, str(reason), f"`{field}`: {message}")
    # One line per rule and action, with a count: a text full of matches is one event.
    counted = Counter((f.pii, f.rule, f.action, f.category) for f in findings)
    for (pii, rule_id, action, category), count in counted.items():
        _violation(snapshot, context, field, "content_pii" if pii else "content_pattern", rule_id, str(action),
                   category=category, count=count)  # fmt: skip


def sanitize_markup(mime_type: str, text: str) -> str:
    """HTML and markdown lose scripts, handlers and dangerous URLs before they are served;
    SVG and other XML are served with their character references spelled out."""
    kind = mime_type.split(";")[0].strip().lower()
    if kind == "text/markdown":
        return _sanitize_markdown(text)
    if kind in _HTML:
        return nh3.clean(text)
    return _spelled_out(text) if kind in _XML or kind.endswith("+xml") else text


def _spelled_out(text: str) -> str:
    """An XML document with each numeric character reference to an ordinary character
    written as that character.

    SVG and XML are not HTML for nh3 to clean, yet whatever renders them decodes
    references first, so `values="&#106;avascript:go()"` in an SVG `<animate>` is a
    script URL that no rule sees. Written out, the document reads the same (but in
    CDATA sections and comments, where a reference is only text), and its scripts are
    plain for the content rules to judge again. References to markup characters and to
    control characters stay: written out, they would change the document. A tab or line
    break so spelled inside a scheme (`java&#9;script:`, which a URL parser joins up) is
    the rules' to refuse (`xss-entity-obfuscated-url`), as is an entity declared in the
    document (`xml-entity-declaration`). (HTML parsers also decode a reference that lacks
    its `;`, so this does.)
    """

    def character(found: re.Match[str]) -> str:
        code = int(found[1], 16) if found[1] is not None else int(found[2])
        kept = code < 0x20 or code > 0x10FFFF or 0xD800 <= code <= 0xDFFF or chr(code) in _MARKUP
        return found[0] if kept else chr(code)

    return _NUMERIC_REFERENCE.sub(character, text)


def _sanitize_markdown(text: str) -> str:
    """Markdown is text that may hold HTML, and only that HTML is an HTML sanitizer's to
    clean. Over the whole text nh3 escapes markdown's own characters (`Tom && Jerry` comes
    back as `Tom &amp;&amp; Jerry`, and code shows the escapes as they are) and drops
    autolinks such as `<https://example.com>` as unknown tags. So text without HTML is
    served as it is, and autolinks stay out of nh3's way in text with some.

    Link destinations are plain text to nh3; script URLs in them are the content rules'
    to refuse (`xss-script-url`, `xss-entity-obfuscated-url`).
    """
    if not _HTML_START.search(_SAFE_AUTOLINK.sub("", text)):
        return text
    if any(mark in text for mark in _KEPT):
        return nh3.clean(text)
    links: list[str] = []

    def keep(found: re.Match[str]) -> str:
        links.append(found[0])
        return f"{_KEPT[0]}{len(links) - 1}{_KEPT[1]}"

    cleaned = nh3.clean(_SAFE_AUTOLINK.sub(keep, text))
    return re.sub(f"{_KEPT[0]}(\\d+){_KEPT[1]}", lambda kept: links[int(kept[1])], cleaned)


def _violation(
    snapshot: Snapshot, context: str, field: str, kind: str, rule: str, action: str, *, category: str | None, count: int
) -> None:
    user = g.get("user")
    mode = snapshot.content.pii_mode if kind == "content_pii" else snapshot.content.pattern_mode
    record = {
        "event": "content_violation",
        "violation": kind,
        "rule": rule,
        "category": category,
        "context": context,
        "field": field,
        "user": mask_email(user.email if user is not None else None),
        "request_id": g.get("request_id"),
        "mode": mode,
        "action": action,
        "count": count,
        "policy_version": snapshot.version[:12],
    }
    log.warning(json.dumps(record))
