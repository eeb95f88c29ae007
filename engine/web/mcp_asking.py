"""Requests an upstream makes of the client during a tool call (sampling, elicitation).

The upstream asks on the stream of its reply to the call. The gateway puts the question,
under an id of its own making, on the client's stream of the same call, and waits for the
client to POST the response within the same MCP session. The ids are the gateway's, so a
client can answer only what was put to it, in its own session. Questions wait in this
process: with several workers and no sticky routing, an answer may reach a worker that
did not ask, and the question then times out.

Only what the client declared in its `initialize` is put to it: MCP forbids a server to
send a request whose capability the client did not declare, and such a client might
never answer, leaving the upstream's call (and the gateway's connection under it)
waiting out `ASK_TIMEOUT_S`. Anything else is refused at once, with the error the SDK's
own client gives when it lacks the capability (-32600, "not supported").
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Mapping
from typing import Any, Final

from engine.federation.upstream import Answerer, Relay
from engine.web.mcp_sessions import McpSession
from engine.web.state import Gateway

__all__ = ["asker", "declared", "give_answer", "is_answer", "take_answer", "valid_id"]

ASK_TIMEOUT_S: Final = 300.0
"""An elicitation waits for a person; a question unanswered after this is refused."""

_MALFORMED: Final = {"code": -32603, "message": "the client's answer is malformed"}

_ELICITATION_MODES: Final = ("form", "url")


def declared(params: Mapping[str, Any]) -> frozenset[str]:
    """What an `initialize` says its client takes of what `asker` may put to it:
    `sampling`, and `elicitation.form` and `elicitation.url` for the elicitation modes.

    A capability is declared with an object; an elicitation capability that names no
    mode is form mode alone, as MCP 2025-11-25 has it for clients older than modes.
    """
    capabilities = params.get("capabilities")
    if not isinstance(capabilities, dict):
        return frozenset()
    taken = {"sampling"} if isinstance(capabilities.get("sampling"), dict) else set()
    elicitation = capabilities.get("elicitation")
    if isinstance(elicitation, dict):
        modes = [mode for mode in _ELICITATION_MODES if isinstance(elicitation.get(mode), dict)] or ["form"]
        taken.update(f"elicitation.{mode}" for mode in modes)
    return frozenset(taken)


def _needs(question: Mapping[str, Any]) -> str | None:
    """The capability a question needs, in the names `declared` gives: none for a ping,
    which every client answers; any other method's name, which no client declares."""
    method = str(question.get("method"))[:100]
    if method == "ping":
        return None
    if method == "sampling/createMessage":
        return "sampling"
    if method != "elicitation/create":
        return method
    params = question.get("params")
    mode = params.get("mode", "form") if isinstance(params, dict) else "form"
    return f"elicitation.{str(mode)[:100]}"


def asker(gw: Gateway, session: McpSession, say: Relay) -> Answerer:
    """Puts a question its client declared it takes on its stream with `say`, and waits
    for the answer; refuses any other at once."""

    async def ask(question: dict[str, Any]) -> dict[str, Any]:
        needs = _needs(question)
        if needs is not None and session.capabilities is not None and needs not in session.capabilities:
            message = f"the client did not declare the `{needs}` capability"
            return {"error": {"code": -32600, "message": message, "data": {"code": "capability_not_declared"}}}
        ident = f"pg-{secrets.token_hex(8)}"
        key = (session.id, ident)
        waiting: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        gw.asked[key] = waiting
        try:
            await say({"jsonrpc": "2.0", "id": ident, **question})
            async with asyncio.timeout(ASK_TIMEOUT_S):
                return await waiting
        except TimeoutError:
            return {"error": {"code": -32002, "message": "the client did not answer in time"}}
        finally:
            gw.asked.pop(key, None)

    return ask


def is_answer(message: Any) -> bool:
    """A JSON-RPC response rather than a request or a notification, with an id that could
    be one of the gateway's questions."""
    return (
        isinstance(message, dict)
        and "method" not in message
        and ("result" in message or "error" in message)
        and valid_id(message.get("id"))
    )


def valid_id(ident: Any) -> bool:
    """A JSON-RPC id as MCP allows it: a string or an integer, never null or a structure
    (which would be echoed back, nested as deep as the sender likes)."""
    return isinstance(ident, str) or (isinstance(ident, int) and not isinstance(ident, bool))


def take_answer(gw: Gateway, session_id: str, message: dict[str, Any]) -> None:
    """Hand an answer to the question waiting for it, in this worker or, through the
    fanout, in another; an answer to nothing is dropped."""
    if not give_answer(gw, session_id, message) and gw.fanout is not None:
        gw.fanout.publish({"kind": "answer", "session": session_id, "message": message})


def give_answer(gw: Gateway, session_id: str, message: Any) -> bool:
    """Hand an answer to a question waiting in this worker; False when none is."""
    if not isinstance(message, dict):
        return False
    waiting = gw.asked.get((session_id, str(message.get("id"))))
    if waiting is None or waiting.done():
        return False
    result, error = message.get("result"), message.get("error")
    if isinstance(result, dict):
        waiting.set_result({"result": result})
    elif isinstance(error, dict) and isinstance(error.get("code"), int) and isinstance(error.get("message"), str):
        waiting.set_result({"error": {"code": error["code"], "message": error["message"][:500]}})
    else:
        waiting.set_result({"error": _MALFORMED})
    return True
