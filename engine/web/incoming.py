"""`Incoming`: what the guard and the MCP endpoint read of a request, whoever parsed it.

Most requests reach the gateway through Quart; POSTs to an MCP endpoint take a shorter
way (engine.web.mcp_lane) that never builds Quart's request. Both hand the same facts
to the same code, so a rule cannot be read one way on one path and another way on the
other.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from quart import Request
from werkzeug.sansio.utils import get_host

__all__ = ["Incoming", "challenge", "metadata_url"]


@dataclass(frozen=True, slots=True)
class Incoming:
    method: str
    path: str
    headers: Mapping[str, str]
    """Looked up by lower-case name (werkzeug's headers ignore case; the lane's dict is
    lower-case, as ASGI servers give names)."""
    remote_addr: str | None
    scheme: str
    host: str
    """The Host header as werkzeug validates it: empty when it holds invalid characters."""

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())

    @property
    def host_url(self) -> str:
        return f"{self.scheme}://{self.host}/"

    @classmethod
    def from_request(cls, request: Request) -> Incoming:
        return cls(
            request.method,
            request.path,
            request.headers,  # type: ignore[arg-type]  # werkzeug's Headers: a case-blind mapping
            request.remote_addr,
            request.scheme,
            request.host,
        )

    @classmethod
    def from_scope(cls, scope: Mapping[str, Any]) -> Incoming:
        headers: dict[str, str] = {}
        for name, value in scope["headers"]:
            # The first of repeated headers, as werkzeug's `get` gives it.
            headers.setdefault(name.decode("latin-1").lower(), value.decode("latin-1"))
        scheme = scope.get("scheme", "http")
        client = scope.get("client")
        return cls(
            scope["method"],
            scope["path"],
            headers,
            # As Quart reads them: no Host header means no host (never the server's own
            # address, which a loopback check would accept), no peer means "<local>".
            client[0] if client else "<local>",
            scheme,
            get_host(scheme, headers.get("host")),
        )


def metadata_url(incoming: Incoming) -> str:
    """Where RFC 9728 metadata describes the protected resource `incoming` addressed."""
    return f"{incoming.host_url.rstrip('/')}/.well-known/oauth-protected-resource{incoming.path}"


def challenge(incoming: Incoming) -> str:
    """The `WWW-Authenticate` of a 401 from an MCP endpoint: MCP clients find the
    authorization server through the resource metadata it names, whatever the refusal."""
    return f'Bearer realm="policygate", resource_metadata="{metadata_url(incoming)}"'
