"""An upstream's answer is judged whole: every field, one size limit, payloads counted but not scanned."""

from __future__ import annotations

import asyncio
import base64
from typing import Any

import pytest
from quart import Quart, g

from engine.policy import Snapshot
from engine.web.inspection import ContentRefused
from engine.web.upstream_answers import checked_answer
from tests.conftest import BuildFn

SCRIPT = "<script>alert(1)</script>"
HI = {"type": "text", "text": "hi"}
PHONE = "+14155552671"  # four-character groups of base64's alphabet: a valid payload as well


def _checked(snapshot: Snapshot, result: dict[str, Any], key: str, context: str) -> dict[str, Any]:
    async def run() -> dict[str, Any]:
        async with Quart(__name__).app_context():
            g.snapshot = snapshot
            return checked_answer(result, key, context)

    return asyncio.run(run())


def _refusal(snapshot: Snapshot, result: dict[str, Any], key: str, context: str) -> tuple[int, str]:
    with pytest.raises(ContentRefused) as caught:
        _checked(snapshot, result, key, context)
    return caught.value.status, caught.value.code


@pytest.mark.parametrize(
    ("key", "context", "result"),
    [
        # beside the block a prompt message holds in `content`
        ("messages", "prompt", {"messages": [{"role": "user", "content": HI, "text": SCRIPT}]}),
        ("messages", "prompt", {"description": SCRIPT, "messages": []}),
        ("content", "tool_result", {"content": [{"type": "text", "text": [SCRIPT]}]}),  # a text that is not a string
        ("content", "tool_result", {"content": [], "_meta": {"note": SCRIPT}}),
        ("content", "tool_result", {"content": [], "structuredContent": {"html": SCRIPT}}),
        ("content", "tool_result", {"content": [{"type": "resource_link", "uri": f"javascript:{SCRIPT}"}]}),
        ("contents", "resource", {"contents": [{"uri": "a", "text": "fine"}], "extra": SCRIPT}),
        ("contents", "resource", {"contents": [{"uri": "a", "resource": {"uri": "b", "text": SCRIPT}}]}),
    ],
)  # fmt: skip
def test_every_field_of_an_answer_is_judged(snapshot: Snapshot, key: str, context: str, result: dict[str, Any]) -> None:
    assert _refusal(snapshot, result, key, context) == (422, "content_blocked")


def test_the_size_limit_holds_for_the_answer_not_for_each_text(snapshot: Snapshot) -> None:
    block = {"uri": "a", "mimeType": "text/plain", "text": "x" * 40_000}
    assert _checked(snapshot, {"contents": [block, block]}, "contents", "resource")["contents"] == [block, block]
    assert _refusal(snapshot, {"contents": [block, block, block]}, "contents", "resource") == (413, "content_too_large")


def test_payloads_count_toward_the_size_but_are_not_scanned(snapshot: Snapshot) -> None:
    image = {"type": "image", "mimeType": "image/png", "data": PHONE}
    assert _checked(snapshot, {"content": [image]}, "content", "tool_result") == {"content": [image]}
    assert _refusal(snapshot, {"content": [{"type": "text", "text": PHONE}]}, "content", "tool_result") == (
        422,
        "content_pii",
    )
    blob = {"uri": "a", "mimeType": "application/octet-stream", "blob": "AAAA" * 30_000}
    assert _refusal(snapshot, {"contents": [blob]}, "contents", "resource") == (413, "content_too_large")


@pytest.mark.parametrize(
    "block",
    [
        {"type": "text", "text": "ok", "data": SCRIPT},  # a `data` beside a text is no payload
        {"type": "image", "mimeType": "image/png", "data": SCRIPT},  # nor one that is not base64
        {"type": "text", "text": "ok", "blob": PHONE},  # a blob belongs to a resource
        {"type": "resource_link", "uri": "a", "resource": {"uri": "a", "blob": PHONE}},
    ],
)
def test_only_what_the_protocol_calls_a_payload_is_set_aside(snapshot: Snapshot, block: dict[str, Any]) -> None:
    assert _refusal(snapshot, {"content": [block]}, "content", "tool_result")[0] == 422
    assert _refusal(snapshot, {"content": [], "data": PHONE}, "content", "tool_result") == (422, "content_pii")


def test_a_redacted_answer_keeps_its_payloads(build: BuildFn) -> None:
    moderate = build(env={"CONTENT_PII_VALIDATION_MODE": "moderate"}).snapshot
    result = {
        "content": [
            {"type": "text", "text": "mail bob@example.com"},
            {"type": "resource", "resource": {"uri": "r", "mimeType": "image/png", "blob": PHONE}},
        ]
    }
    assert _checked(moderate, result, "content", "tool_result") == {
        "content": [
            {"type": "text", "text": "mail [REDACTED:email]"},
            {"type": "resource", "resource": {"uri": "r", "mimeType": "image/png", "blob": PHONE}},
        ]
    }
    assert result["content"][0]["text"] == "mail bob@example.com", "the upstream's answer is not changed in place"


def test_resources_are_sanitized_by_their_type_wherever_they_sit(snapshot: Snapshot) -> None:
    html = {"uri": "a", "mimeType": "text/html", "text": '<b>x</b><p style="color:red">y</p><form>z</form>'}
    cleaned = {**html, "text": "<b>x</b><p>y</p>z"}
    read = _checked(snapshot, {"contents": [html]}, "contents", "resource")
    assert read == {"contents": [cleaned]}
    message = {"role": "user", "content": {"type": "resource", "resource": html}}
    got = _checked(snapshot, {"messages": [message]}, "messages", "prompt")
    assert got == {"messages": [{"role": "user", "content": {"type": "resource", "resource": cleaned}}]}
    assert message["content"]["resource"] is html
    assert html["text"].startswith("<b>x</b><p style"), "the upstream's answer is not changed in place"
    # A tool's own text block has no type to sanitize by; it is judged and returned as it is.
    text = {"type": "text", "text": "<b>x</b>"}
    assert _checked(snapshot, {"content": [text]}, "content", "tool_result") == {"content": [text]}


def test_nesting_deeper_than_can_be_walked_is_refused_not_a_crash(snapshot: Snapshot) -> None:
    nested: dict[str, Any] = {"uri": "a", "text": "end"}
    for _ in range(3000):
        nested = {"uri": "a", "resource": nested}
    assert _refusal(snapshot, {"contents": [nested]}, "contents", "resource") == (422, "content_blocked")


@pytest.mark.parametrize(
    ("mime", "text", "code"),
    [
        # Character references and dropped tags, joined by the sanitizer into text that is refused.
        ("text/markdown", "<b>Docs</b> &#91;x&#93;&#40;&#106;avascript&#58;alert&#40;1&#41;&#41;", "content_blocked"),
        ("text/html", "SSN 123&#45;45&#45;6789", "content_pii"),
        ("text/html", "SSN 123-45-<x></x>6789", "content_pii"),
        ("text/html", "&#123;&#123; self.__init__.__glo<x></x>bals__ &#125;&#125;", "content_blocked"),
        # An SVG renderer decodes references too: an animated link to a script URL.
        (
            "image/svg+xml",
            '<svg><a><animate attributeName="href" values="&#106;avascript:go()"/></a></svg>',
            "content_blocked",
        ),
        ("application/xml", "<ssn>123&#45;45&#x2D;6789</ssn>", "content_pii"),
        ("image/svg+xml", '<svg><a><set attributeName="href" to="java&#9;script:go()"/></a></svg>', "content_blocked"),
        (
            "image/svg+xml",
            '<!DOCTYPE s [<!ENTITY j "j">]><svg><a><set to="&j;avascript:go()"/></a></svg>',
            "content_blocked",
        ),
    ],
)
def test_what_is_judged_is_what_the_sanitizer_returns(snapshot: Snapshot, mime: str, text: str, code: str) -> None:
    read = {"contents": [{"uri": "a", "mimeType": mime, "text": text}]}
    assert _refusal(snapshot, read, "contents", "resource") == (422, code)
    embedded = {"content": [{"type": "resource", "resource": read["contents"][0]}]}
    assert _refusal(snapshot, embedded, "content", "tool_result") == (422, code)


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def test_a_blob_whose_type_says_text_is_judged_and_returned_as_text(snapshot: Snapshot) -> None:
    script = {"uri": "a", "mimeType": "text/html", "blob": _b64(f"<p>hi</p>{SCRIPT}")}
    assert _refusal(snapshot, {"contents": [script]}, "contents", "resource") == (422, "content_blocked")
    embedded = {"content": [{"type": "resource", "resource": script}]}
    assert _refusal(snapshot, embedded, "content", "tool_result") == (422, "content_blocked")
    svg = {"uri": "s", "mimeType": "image/svg+xml", "blob": _b64("<svg onload=alert(1)>")}
    assert _refusal(snapshot, {"contents": [svg]}, "contents", "resource") == (422, "content_blocked")
    latin = {"uri": "l", "mimeType": "text/plain; charset=iso-8859-1", "blob": base64.b64encode(b"caf\xe9").decode()}
    assert _checked(snapshot, {"contents": [latin]}, "contents", "resource") == {
        "contents": [{"uri": "l", "mimeType": "text/plain; charset=iso-8859-1", "text": "café"}]
    }
    beside = {"uri": "b", "mimeType": "text/plain", "text": "fine", "blob": _b64(SCRIPT)}
    assert _checked(snapshot, {"contents": [beside]}, "contents", "resource") == {
        "contents": [{"uri": "b", "mimeType": "text/plain", "text": "fine"}]
    }
    image = {"uri": "i", "mimeType": "image/png", "blob": _b64(SCRIPT)}
    assert _checked(snapshot, {"contents": [image]}, "contents", "resource") == {"contents": [image]}
