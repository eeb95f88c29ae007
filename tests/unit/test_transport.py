"""The upstream transport against a real socket server that answers with scripted bytes:
framing, keep-alive, and what it refuses."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable

import pytest

from engine.federation.addresses import AddressRefused
from engine.federation.transport import BadHeader, ExchangeFailed, Origin, Reply, ReplyTooLarge

Script = Callable[[bytes], bytes | list[bytes] | None]
"""The bytes to answer a request with, or the parts to write 50 ms apart (None: close
without answering)."""


@contextlib.asynccontextmanager
async def _server(
    script: Script, requests: list[bytes] | None = None, *, close_after: bool = False
) -> AsyncIterator[tuple[str, list[int]]]:
    """A loopback server answering each request on a connection with `script(request)`,
    then closing it when `close_after`; yields its URL and the client ports of the
    connections it accepted."""
    ports: list[int] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        ports.append(writer.get_extra_info("peername")[1])
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                declared = [line for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")]
                length = int(declared[0].split(b":")[1])
                request = head + await reader.readexactly(length)
                if requests is not None:
                    requests.append(request)
                answer = script(request)
                if answer is None:
                    break
                for part in [answer] if isinstance(answer, bytes) else answer:
                    writer.write(part)
                    await writer.drain()
                    await asyncio.sleep(0 if isinstance(answer, bytes) else 0.05)
                if close_after:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}/mcp?x=1", ports
    finally:
        server.close()


def _fixed(answer: bytes) -> Script:
    return lambda request: answer


def _read_once(answer: bytes, *, close_after: bool = False, limit: int = 1000) -> bytes:
    """The body one exchange reads from a server answering `answer`."""

    async def scenario() -> bytes:
        async with _server(_fixed(answer), close_after=close_after) as (url, _):
            reply = await Origin(url, public_only=False).send("POST", {}, b"{}")
            return await reply.read(limit)

    return asyncio.run(scenario())


def _reads(answer: bytes, count: int = 2, *, close_after: bool = False) -> tuple[list[bytes], int]:
    """The bodies of `count` exchanges 50 ms apart, and how many connections they took."""

    async def scenario() -> tuple[list[bytes], int]:
        async with _server(_fixed(answer), close_after=close_after) as (url, ports):
            origin = Origin(url, public_only=False)
            bodies = []
            for _ in range(count):
                reply = await origin.send("POST", {}, b"{}")
                bodies.append(await reply.read(1000))
                reply.release()
                await asyncio.sleep(0.05)  # an upstream's close reaches the idle connection
            await origin.close()
            return bodies, len(ports)

    return asyncio.run(scenario())


def _never_connecting(headers: dict[str, str], *, public_only: bool) -> None:
    """Send once, asserting the server saw no connection (whatever `send` raises)."""

    async def scenario() -> None:
        async with _server(_fixed(LENGTH)) as (url, ports):
            try:
                await Origin(url, public_only=public_only).send("POST", headers, b"{}")
            finally:
                assert ports == []

    asyncio.run(scenario())


async def _one_held(url: str) -> tuple[Origin, Reply]:
    """An origin with room for one connection, and that connection, held by a reply
    read whole but not released."""
    origin = Origin(url, public_only=False, connections=1)
    held = await origin.send("POST", {}, b"{}")
    await held.read(1000)
    return origin, held


LENGTH = b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 11\r\n\r\n{"ok":true}'
CHUNKED = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"6\r\ndata: \r\n"
    b'8\r\n{"a":1}\n\r\n'
    b"1\r\n\n\r\n"
    b"0\r\n\r\n"
)


def test_a_request_carries_the_target_host_and_length_and_the_reply_is_read_whole() -> None:
    requests: list[bytes] = []

    async def scenario() -> tuple[int, str, bytes]:
        async with _server(_fixed(LENGTH), requests) as (url, _):
            origin = Origin(url, public_only=False)
            reply = await origin.send("POST", {"Authorization": "Bearer k"}, b'{"m":1}')
            body = await reply.read(1000)
            reply.release()
            await origin.close()
            return reply.status, reply.headers["content-type"], body

    status, kind, body = asyncio.run(scenario())
    assert (status, kind, body) == (200, "application/json", b'{"ok":true}')
    head, _, sent = requests[0].partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    assert lines[0] == b"POST /mcp?x=1 HTTP/1.1"
    assert b"Authorization: Bearer k" in lines
    assert b"Content-Length: 7" in lines
    assert any(line.startswith(b"Host: 127.0.0.1:") for line in lines)
    assert sent == b'{"m":1}'


def test_a_chunked_stream_is_read_line_by_line_across_chunks() -> None:
    async def scenario() -> list[bytes]:
        async with _server(_fixed(CHUNKED)) as (url, _):
            origin = Origin(url, public_only=False)
            reply = await origin.send("POST", {}, b"{}")
            lines = [line async for line in reply.lines(1000)]
            reply.release()
            await origin.close()
            return lines

    assert asyncio.run(scenario()) == [b'data: {"a":1}\n', b"\n"]


def test_kept_alive_connections_are_reused_and_closing_ones_are_not() -> None:
    closing = LENGTH.replace(b"Content-Length", b"Connection: close\r\nContent-Length")
    assert _reads(LENGTH, 3)[1] == 1
    assert _reads(closing, 3)[1] == 3


def test_an_idle_connection_the_upstream_closed_is_replaced() -> None:
    assert _reads(LENGTH, close_after=True) == ([b'{"ok":true}'] * 2, 2)


def test_a_reply_released_before_its_end_closes_its_connection() -> None:
    async def scenario() -> int:
        async with _server(_fixed(CHUNKED)) as (url, ports):
            origin = Origin(url, public_only=False)
            for _ in range(2):
                reply = await origin.send("POST", {}, b"{}")
                reply.release()  # nothing read: the rest would be taken for the next reply
            await origin.close()
            return len(ports)

    assert asyncio.run(scenario()) == 2


def _two_exchanges_left_at_the_first_line(answer: bytes | list[bytes], seconds: float = 1.0) -> int:
    """How many connections two exchanges took when each reader stops after the first
    line and leaves the rest to `release_at_end` (2 MB, `seconds`)."""

    async def scenario() -> int:
        async with _server(_fixed(answer)) as (url, ports):
            origin = Origin(url, public_only=False)
            for _ in range(2):
                reply = await origin.send("POST", {}, b"{}")
                async with contextlib.aclosing(reply.lines(1000)) as lines:
                    assert await anext(lines) == b'data: {"a":1}\n'
                reply.release_at_end(2 * 1024 * 1024, seconds)
                await asyncio.sleep(0.2)
            await origin.close()
            return len(ports)

    return asyncio.run(scenario())


def test_a_stream_left_early_is_pooled_once_its_rest_has_arrived() -> None:
    head, tail = CHUNKED[: CHUNKED.index(b"1\r\n")], CHUNKED[CHUNKED.index(b"1\r\n") :]
    assert _two_exchanges_left_at_the_first_line([head, tail]) == 1


def test_a_rest_that_is_too_large_or_too_late_closes_the_connection() -> None:
    head = CHUNKED[: CHUNKED.index(b"1\r\n")]
    huge = b"".join([b"100000\r\n" + b"x" * 0x100000 + b"\r\n"] * 3) + b"0\r\n\r\n"
    assert _two_exchanges_left_at_the_first_line([head, huge]) == 2
    tail = CHUNKED[CHUNKED.index(b"1\r\n") :]
    assert _two_exchanges_left_at_the_first_line([head, tail], seconds=0.01) == 2


def test_a_body_ended_by_closing_the_connection_is_whole() -> None:
    answer = b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n{"ok":1}'
    assert _read_once(answer, close_after=True) == b'{"ok":1}'


@pytest.mark.parametrize(
    "answer",
    [
        b"NOT HTTP AT ALL\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    ],
)
def test_malformed_replies_fail_the_exchange(answer: bytes) -> None:
    with pytest.raises(ExchangeFailed):
        _read_once(answer)


def test_a_reply_no_request_asked_for_is_never_taken_for_the_next_one() -> None:
    assert _reads(LENGTH + LENGTH.replace(b"true", b"fals")) == ([b'{"ok":true}'] * 2, 2)


def test_a_connection_closed_mid_reply_fails_the_exchange() -> None:
    with pytest.raises(ExchangeFailed):
        _read_once(LENGTH[:-4], close_after=True)


def test_a_reply_over_the_limit_is_refused() -> None:
    with pytest.raises(ReplyTooLarge):
        _read_once(LENGTH, limit=10)


def test_headers_that_would_split_the_request_are_refused_before_anything_is_sent() -> None:
    with pytest.raises(ValueError, match="line break"):
        _never_connecting({"X-Id": "a\r\nInjected: 1"}, public_only=False)


def test_a_public_only_origin_never_connects_to_loopback() -> None:
    with pytest.raises(AddressRefused):
        _never_connecting({}, public_only=True)


@pytest.mark.parametrize(
    "answer",
    [
        [b"HTTP/1.1 200 OK\r\n" + b"a: b\r\n" * 200 + b"Content-Length: 0\r\n\r\n"],
        [b"HTTP/1.1 200 OK\r\nX-Big: ", b"a" * 40_000, b"a" * 40_000, b"a" * 40_000, b"\r\n\r\n"],
        [b"HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: x\r\n\r\n"],
        [CHUNKED[:-2] + b"X-Trailer: ", b"a" * 40_000, b"a" * 40_000, b"a" * 40_000, b"\r\n\r\n"],
    ],
)
def test_heads_too_large_or_too_many_lines_or_upgrades_fail_the_exchange(answer: list[bytes]) -> None:
    async def scenario() -> None:
        async with _server(lambda request: answer) as (url, _), asyncio.timeout(5):
            reply = await Origin(url, public_only=False).send("POST", {}, b"{}")
            await reply.read(1000)

    with pytest.raises(ExchangeFailed):
        asyncio.run(scenario())


def test_repeated_headers_are_joined_and_interim_answers_and_trailers_left_out() -> None:
    answer = (
        b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n"
        b"HTTP/1.1 200 OK\r\nVary: a\r\nVary: b\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"2\r\nok\r\n0\r\nX-Trailer: t\r\n\r\n"
    )

    async def scenario() -> tuple[int, dict[str, str], bytes]:
        async with _server(_fixed(answer)) as (url, _):
            reply = await Origin(url, public_only=False).send("POST", {}, b"{}")
            return reply.status, dict(reply.headers), await reply.read(1000)

    status, headers, body = asyncio.run(scenario())
    assert (status, body) == (200, b"ok")
    assert headers == {"vary": "a, b", "transfer-encoding": "chunked"}


def test_an_idle_connection_older_than_the_idle_limit_is_not_reused(monkeypatch: pytest.MonkeyPatch) -> None:
    from engine.federation import transport

    monkeypatch.setattr(transport, "_IDLE_SECONDS", 0.01)
    assert _reads(LENGTH) == ([b'{"ok":true}'] * 2, 2)


def test_closing_an_origin_ends_the_replies_in_flight() -> None:
    async def scenario() -> None:
        async with _server(lambda request: [CHUNKED[:-20], b""]) as (url, _):
            origin = Origin(url, public_only=False)
            reply = await origin.send("POST", {}, b"{}")
            await origin.close()
            async with asyncio.timeout(5):  # left open, the reply would wait for ever
                await reply.read(1000)

    with pytest.raises(ExchangeFailed):
        asyncio.run(scenario())


def test_the_target_and_host_go_out_as_a_browser_would_send_them() -> None:
    requests: list[bytes] = []

    async def scenario() -> None:
        async with _server(_fixed(LENGTH), requests) as (url, _):
            port = url.split(":")[2].split("/")[0]
            origin = Origin(f"http://127.0.0.1:{port}/ü path/%41?q=ä b&r=1", public_only=False)
            await (await origin.send("POST", {}, b"{}")).read(1000)

    asyncio.run(scenario())
    assert requests[0].startswith(b"POST /%C3%BC%20path/%41?q=%C3%A4%20b&r=1 HTTP/1.1\r\n")


def test_credentials_in_the_url_are_sent_as_basic_unless_the_gateway_sets_its_own() -> None:
    requests: list[bytes] = []

    async def scenario() -> None:
        async with _server(_fixed(LENGTH), requests) as (url, _):
            origin = Origin(url.replace("//", "//agent:p%40ss@"), public_only=False)
            for headers in ({}, {"authorization": "Bearer own"}):
                await (await origin.send("POST", headers, b"{}")).read(1000)

    asyncio.run(scenario())
    authorizations = [[h for h in r.split(b"\r\n") if h.lower().startswith(b"authorization")] for r in requests]
    assert authorizations == [[b"Authorization: Basic YWdlbnQ6cEBzcw=="], [b"authorization: Bearer own"]]
    assert all(b"agent" not in r.split(b"\r\n")[0] for r in requests)


def test_a_header_http_cannot_carry_is_refused() -> None:
    with pytest.raises(BadHeader):
        _never_connecting({"X-Name": "Zoë ☃"}, public_only=False)


def test_calls_beyond_the_connection_limit_wait_for_a_connection_to_come_free() -> None:
    async def scenario() -> tuple[list[bytes], int]:
        async with _server(lambda request: [LENGTH[:20], LENGTH[20:]]) as (url, ports):
            origin = Origin(url, public_only=False, connections=2)

            async def call() -> bytes:
                reply = await origin.send("POST", {}, b"{}")
                body = await reply.read(1000)
                reply.release()
                return body

            async with asyncio.timeout(5):
                bodies = await asyncio.gather(*(call() for _ in range(5)))
            return bodies, len(ports)

    assert asyncio.run(scenario()) == ([b'{"ok":true}'] * 5, 2)


def test_a_waiting_call_that_leaves_passes_its_turn_to_the_next() -> None:
    async def scenario() -> bytes:
        async with _server(_fixed(LENGTH)) as (url, _):
            origin, held = await _one_held(url)
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(0.1):  # a caller's deadline bounds the wait
                    await origin.send("POST", {}, b"{}")
            leaving = asyncio.ensure_future(origin.send("POST", {}, b"{}"))
            staying = asyncio.ensure_future(origin.send("POST", {}, b"{}"))
            await asyncio.sleep(0.05)  # both wait for the one connection
            held.release()  # wakes the first waiter...
            leaving.cancel()  # ...which leaves before it runs
            async with asyncio.timeout(5):
                return await (await staying).read(1000)

    assert asyncio.run(scenario()) == b'{"ok":true}'


def test_closing_an_origin_fails_the_calls_waiting_for_a_connection() -> None:
    async def scenario() -> None:
        async with _server(_fixed(LENGTH)) as (url, _):
            origin = Origin(url, public_only=False, connections=1)
            await origin.send("POST", {}, b"{}")
            waiting = asyncio.ensure_future(origin.send("POST", {}, b"{}"))
            await asyncio.sleep(0.05)
            await origin.close()
            with pytest.raises(ExchangeFailed):
                async with asyncio.timeout(5):
                    await waiting

    asyncio.run(scenario())


def test_a_call_woken_as_its_origin_closes_opens_nothing() -> None:
    async def scenario() -> int:
        async with _server(_fixed(LENGTH)) as (url, ports):
            origin, held = await _one_held(url)
            waiting = asyncio.ensure_future(origin.send("POST", {}, b"{}"))
            await asyncio.sleep(0.05)
            held.release()  # wakes the waiter...
            await origin.close()  # ...whose origin is closed before it runs
            with pytest.raises(ExchangeFailed):
                async with asyncio.timeout(5):
                    await waiting
            await asyncio.sleep(0.05)
            return len(ports)

    assert asyncio.run(scenario()) == 1


def test_a_connection_given_up_with_its_request_unsent_frees_its_room() -> None:
    """An upstream that stops reading leaves the request in the send buffer; closing
    must not wait for it to leave, or the connection holds its room for ever."""

    async def scenario() -> bytes:
        accepted: list[asyncio.StreamWriter] = []

        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            accepted.append(writer)
            try:
                if len(accepted) == 1:
                    await asyncio.sleep(30)  # never reads
                head = await reader.readuntil(b"\r\n\r\n")
                await reader.readexactly(int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0]))
                writer.write(LENGTH)
                await writer.drain()
            finally:
                writer.close()

        server = await asyncio.start_server(serve, "127.0.0.1", 0)
        url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/mcp"
        origin = Origin(url, public_only=False, connections=1)
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.3):
                await origin.send("POST", {}, b"x" * 64 * 1024 * 1024)
        try:
            async with asyncio.timeout(5):
                return await (await origin.send("POST", {}, b"{}")).read(1000)
        finally:
            await origin.close()
            server.close()

    assert asyncio.run(scenario()) == b'{"ok":true}'


def test_a_request_that_is_not_queued_never_waits_for_room() -> None:
    """The answer to a question the upstream asks during a call goes out while the call
    holds its connection: queued behind it, it would wait on itself."""

    async def scenario() -> tuple[bytes, int]:
        async with _server(_fixed(LENGTH)) as (url, ports):
            origin = Origin(url, public_only=False, connections=1)
            held = await origin.send("POST", {}, b"{}")
            async with asyncio.timeout(5):
                answer = await (await origin.send("POST", {}, b"{}", queued=False)).read(1000)
            await held.read(1000)
            return answer, len(ports)

    assert asyncio.run(scenario()) == (b'{"ok":true}', 2)


def test_a_woken_waiter_is_not_overtaken_by_a_caller_arriving_after_it() -> None:
    async def scenario() -> list[str]:
        async with _server(_fixed(LENGTH)) as (url, _):
            origin = Origin(url, public_only=False, connections=1)
            order: list[str] = []

            async def call(name: str) -> None:
                reply = await origin.send("POST", {}, b"{}")
                order.append(name)
                await reply.read(1000)
                reply.release()

            held = await origin.send("POST", {}, b"{}")
            await held.read(1000)
            waiting = asyncio.ensure_future(call("waiting"))
            await asyncio.sleep(0.05)
            later = asyncio.ensure_future(call("later"))  # runs before the waiter it wakes
            held.release()
            async with asyncio.timeout(5):
                await asyncio.gather(waiting, later)
            return order

    assert asyncio.run(scenario()) == ["waiting", "later"]


def test_two_connections_freed_at_once_serve_a_waiter_and_a_caller_queued_behind_it() -> None:
    async def scenario() -> int:
        async with _server(_fixed(LENGTH)) as (url, _):
            origin = Origin(url, public_only=False, connections=2)
            held = [await origin.send("POST", {}, b"{}") for _ in range(2)]
            for reply in held:
                await reply.read(1000)
            waiting = asyncio.ensure_future(origin.send("POST", {}, b"{}"))
            await asyncio.sleep(0.05)
            later = asyncio.ensure_future(origin.send("POST", {}, b"{}"))  # queues behind the woken one
            for reply in held:
                reply.release()
            async with asyncio.timeout(5):
                replies = await asyncio.gather(waiting, later)
            return len(replies)

    assert asyncio.run(scenario()) == 2
