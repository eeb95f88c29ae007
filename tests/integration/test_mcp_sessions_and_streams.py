"""What a session and a streamed call cost the gateway, and who may use them.

A streamed tool call holds the gateway's memory only as far as its client reads; a
session answers only the token that opened it; closing a session ends its calls.
"""

from __future__ import annotations

import json
import re
import socket
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.servers import Gateway, claims, mint
from tests.integration.waiting import eventually

# A client that takes the fixture's elicitation questions: they are put only to those.
INIT = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {"protocolVersion": "2025-11-25", "capabilities": {"elicitation": {}}},
}
PING = {"jsonrpc": "2.0", "id": 2, "method": "ping"}


@pytest.fixture(scope="module")
def gw(federated: Gateway) -> Gateway:
    return federated


def _headers(token: str, **extra: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", "Accept": "application/json, text/event-stream", **extra}


def _open(gw: Gateway, token: str) -> str:
    response = httpx.post(f"{gw.url}/mcp", headers=_headers(token), json=INIT)
    assert response.status_code == 200, response.text
    return response.headers["mcp-session-id"]


def _rss_mib(pid: int) -> float:
    found = re.search(r"VmRSS:\s+(\d+)", Path(f"/proc/{pid}/status").read_text())
    assert found is not None
    return int(found[1]) / 1024


def _raw_post(gw: Gateway, token: str, session: str, message: dict[str, Any]) -> socket.socket:
    """A connection that has sent `message` and reads nothing yet, with a small receive
    buffer, so the gateway's writes to it soon stall."""
    host, port = gw.url.removeprefix("http://").split(":")
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect((host, int(port)))
    body = json.dumps(message).encode()
    head = "".join(f"{name}: {value}\r\n" for name, value in _headers(token, **{"Mcp-Session-Id": session}).items())
    request = f"POST /mcp HTTP/1.1\r\nHost: {host}:{port}\r\n{head}Content-Type: application/json\r\n"
    sock.sendall(f"{request}Content-Length: {len(body)}\r\n\r\n".encode() + body)
    return sock


def _read_until(sock: socket.socket, end: bytes, within: float) -> bytes:
    """What the connection gives until `end`, each read waiting at most `within` seconds."""
    sock.settimeout(within)
    received = bytearray()
    while end not in received[-4096:]:
        chunk = sock.recv(1 << 16)
        if not chunk:
            break
        received += chunk
    return bytes(received)


def test_a_client_that_stops_reading_holds_back_its_upstream_not_the_gateways_memory(gw: Gateway) -> None:
    """An upstream streams 50 MB of progress notes to a client that reads nothing for a
    while: the gateway stops reading the upstream rather than holding the notes, and the
    client that reads again gets every one of them and the result."""
    token = mint(claims(teams=None))
    session = _open(gw, token)
    notes = 5_000
    arguments = {"notes": notes, "size": 10_000}
    call = {"jsonrpc": "2.0", "id": 7, "method": "tools/call",
            "params": {"name": "flood", "arguments": arguments, "_meta": {"progressToken": "f"}}}  # fmt: skip
    before = _rss_mib(gw.process.pid)
    sock = _raw_post(gw, token, session, call)
    try:
        grown, until = 0.0, time.monotonic() + 5
        while time.monotonic() < until and grown < 16:
            time.sleep(0.2)
            grown = max(grown, _rss_mib(gw.process.pid) - before)
        assert grown < 16, f"the gateway held {grown:.0f} MiB for a client that reads nothing"
        received = _read_until(sock, b"\r\n0\r\n\r\n", within=20)  # the end of the chunked body
    finally:
        sock.close()
    assert received.count(b'"notifications/progress"') == notes
    assert b"flooded 5000" in received


def _post(gw: Gateway, token: str, session: str, message: Any) -> httpx.Response:
    return httpx.post(f"{gw.url}/mcp", headers=_headers(token, **{"Mcp-Session-Id": session}), json=message)


def _refused_as_unknown(response: httpx.Response) -> bool:
    return (response.status_code, response.json()["error"]["code"]) == (404, "session_not_found")


def test_a_session_answers_only_the_token_that_opened_it(gw: Gateway) -> None:
    opener, other = mint(claims(teams=None)), mint(claims(teams=None))  # one user, two tokens
    session = _open(gw, opener)
    answer = {"jsonrpc": "2.0", "id": "pg-0000", "result": {"action": "accept"}}
    headers = _headers(other, **{"Mcp-Session-Id": session})
    borrowed = {
        "ping": _post(gw, other, session, PING),
        "answer": _post(gw, other, session, answer),
        "stream": httpx.get(f"{gw.url}/mcp", headers={**headers, "Accept": "text/event-stream"}, timeout=10),
        "delete": httpx.delete(f"{gw.url}/mcp", headers=headers),
    }
    assert {use: _refused_as_unknown(r) for use, r in borrowed.items()} == dict.fromkeys(borrowed, True)
    assert _post(gw, opener, session, PING).json()["result"] == {}, "the session lives on for its own token"


def test_a_session_ends_with_the_token_that_opened_it(gw: Gateway) -> None:
    admin = gw.client(mint(claims(teams=None)))
    created = admin.post("/tokens", json={"name": f"opener-{time.monotonic_ns()}"}).json()
    session = _open(gw, created["token"])
    assert admin.delete(f"/tokens/{created['jti']}").status_code == 204
    assert _refused_as_unknown(_post(gw, mint(claims(teams=None)), session, PING))


def _calling(
    gw: Gateway, token: str, session: str, tool: str, arguments: dict[str, Any]
) -> tuple[threading.Thread, list[str]]:
    """A thread making a streamed tool call, and the status and lines of its answer as they come."""
    call = {"jsonrpc": "2.0", "id": 5, "method": "tools/call", "params": {"name": tool, "arguments": arguments}}
    answer: list[str] = []

    def run() -> None:
        headers = _headers(token, **{"Mcp-Session-Id": session})
        with httpx.stream("POST", f"{gw.url}/mcp", headers=headers, json=call, timeout=30) as stream:
            answer.append(str(stream.status_code))
            answer.extend(stream.iter_lines())

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, answer


def test_closing_a_session_ends_its_call_waiting_for_an_answer(gw: Gateway) -> None:
    token = mint(claims(teams=None))
    session = _open(gw, token)
    thread, answer = _calling(gw, token, session, "confirm", {})
    eventually(lambda: any("elicitation/create" in line for line in answer), within=10, failure="no question came")
    assert httpx.delete(f"{gw.url}/mcp", headers=_headers(token, **{"Mcp-Session-Id": session})).status_code == 204
    thread.join(5)
    assert not thread.is_alive(), "the call waited on for an answer in a closed session"
    assert not any('"id":5' in line for line in answer), "an ended call has no result"


def test_closing_a_session_ends_its_call_that_has_said_nothing_yet(gw: Gateway) -> None:
    token = mint(claims(teams=None))
    session = _open(gw, token)
    thread, answer = _calling(gw, token, session, "wait", {"seconds": 60})
    time.sleep(1)  # the call reaches the upstream
    assert httpx.delete(f"{gw.url}/mcp", headers=_headers(token, **{"Mcp-Session-Id": session})).status_code == 204
    thread.join(5)
    assert not thread.is_alive(), "the call ran on in a closed session"
    assert answer[0] == "404"
