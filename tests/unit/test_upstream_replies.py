"""Reading an upstream's answer: JSON or SSE, priming events, errors, wrong replies."""

from __future__ import annotations

import json

import pytest

from engine.federation.upstream import UpstreamError, _reply

RESULT = {"jsonrpc": "2.0", "id": 7, "result": {"tools": []}}


def test_json_reply() -> None:
    assert _reply(200, "application/json", json.dumps(RESULT).encode(), 7) == RESULT


def test_sse_reply_with_a_priming_event_and_a_notification_first() -> None:
    # SDK servers with an event store send an event with an id and no data first.
    body = (
        "id: 1\ndata:\n\n"
        'event: message\ndata: {"jsonrpc":"2.0","method":"notifications/message","params":{}}\n\n'
        f"id: 2\nevent: message\ndata: {json.dumps(RESULT)}\n\n"
    ).encode()
    assert _reply(200, "text/event-stream", body, 7) == RESULT


def test_sse_data_split_over_lines_is_joined() -> None:
    text = json.dumps(RESULT, indent=1)
    body = ("event: message\n" + "".join(f"data: {line}\n" for line in text.splitlines()) + "\n").encode()
    assert _reply(200, "text/event-stream", body, 7) == RESULT


@pytest.mark.parametrize(
    ("status", "kind", "body", "code"),
    [
        (500, "text/plain", b"boom", "upstream_protocol"),
        (200, "text/html", b"<html>", "upstream_protocol"),
        (200, "application/json", b"{not json", "upstream_protocol"),
        (200, "application/json", json.dumps({**RESULT, "id": 8}).encode(), "upstream_protocol"),
    ],
)
def test_unusable_replies_are_protocol_errors(status: int, kind: str, body: bytes, code: str) -> None:
    with pytest.raises(UpstreamError) as caught:
        _reply(status, kind, body, 7)
    assert caught.value.code == code
