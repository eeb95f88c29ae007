"""What the gateway presents to the outside: headers, CORS, cookies, well-known files.

These are not decisions but settings the shell applies to every response; compiling
them here means a reload changes them together with everything else. The security.txt
expiry check needs the current time, which the caller passes in. No I/O in this module.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from engine.errors import PolicyError, Severity
from engine.policy.load import Document

__all__ = ["NetworkTable", "WellKnownTable", "build_network_table", "build_well_known_table"]

_FIELD_VALUE = re.compile(r"([\x21-\x7e]+([ \t]+[\x21-\x7e]+)*)?")
"""A header value the gateway can send as it is: visible ASCII, inner spaces and tabs."""

_ORIGIN = re.compile(r"https?://([a-z0-9-]+(\.[a-z0-9-]+)*|\[[0-9a-f:.]+\])(:[0-9]{1,5})?")
"""An origin as browsers send it: lowercase scheme and host, an optional port, no path."""


@dataclass(frozen=True, slots=True)
class NetworkTable:
    cors_enabled: bool
    allowed_origins: frozenset[str]
    allow_credentials: bool
    allowed_methods: tuple[str, ...]
    allowed_headers: tuple[str, ...]
    exposed_headers: tuple[str, ...]
    cors_max_age: int
    headers: tuple[tuple[str, str], ...]
    cookie_secure: bool
    cookie_http_only: bool
    cookie_same_site: str
    upstream_private_ok: bool = False


@dataclass(frozen=True, slots=True)
class WellKnownTable:
    enabled: bool
    files: Mapping[str, tuple[str, str]]
    """Path below the site root -> (content type, body)."""


def build_network_table(doc: Document) -> tuple[NetworkTable, list[PolicyError]]:
    """Render the security headers and CSP once, so responses only copy strings."""
    spec = doc.spec
    cors = spec.get("cors", {})
    security = spec.get("securityHeaders", {})
    cookies = spec.get("cookies", {})
    errors = _unsendable(doc)
    headers: list[tuple[str, str]] = []
    if security.get("enabled", True):
        headers.append(("X-Frame-Options", security.get("frameOptions", "DENY")))
        headers.extend(security.get("headers", {}).items())
        csp = spec.get("contentSecurityPolicy", {})
        if csp:
            headers.append(
                (
                    "Content-Security-Policy",
                    "; ".join(f"{d} {' '.join(v)}".strip() for d, v in csp.items()),
                )
            )
    origins = cors.get("allowedOrigins", [])
    for index, origin in enumerate(origins):
        if origin == "null":
            why = "`null` is the origin of sandboxed frames and local files, which any page can produce"
        elif origin != "*" and not _ORIGIN.fullmatch(origin):
            why = (
                f"`{origin}` is not an origin as browsers send it, so it would never match: "
                "write scheme://host[:port] in lowercase, without a path or a trailing slash"
            )
        else:
            continue
        errors.append(PolicyError(doc.locate(["cors", "allowedOrigins", index]), "network.origin_invalid", why))
    if cors.get("allowCredentials", False) and "*" in origins:
        errors.append(
            PolicyError(
                doc.locate(["cors", "allowedOrigins"]),
                "network.wildcard_with_credentials",
                "`*` cannot be an allowed origin while `allowCredentials` is on",
            )
        )
    table = NetworkTable(
        cors_enabled=bool(cors.get("enabled", False)),
        allowed_origins=frozenset(origins),
        allow_credentials=bool(cors.get("allowCredentials", False)),
        allowed_methods=tuple(cors.get("allowedMethods", ())),
        allowed_headers=tuple(cors.get("allowedHeaders", ())),
        exposed_headers=tuple(cors.get("exposedHeaders", ())),
        cors_max_age=int(cors.get("maxAgeSeconds", 600)),
        headers=tuple(headers),
        cookie_secure=bool(cookies.get("secure", True)),
        cookie_http_only=bool(cookies.get("httpOnly", True)),
        cookie_same_site=str(cookies.get("sameSite", "strict")),
        upstream_private_ok=bool(spec.get("upstreams", {}).get("allowPrivateNetworks", False)),
    )
    return table, errors


def _unsendable(doc: Document) -> list[PolicyError]:
    """Every header value that HTTP cannot carry as written (the schema already holds
    names, directives and methods to HTTP tokens).

    Refused when the policy is built, not when the first response fails: a YAML block
    scalar ends with a newline, and a header value with one would break every response.
    """
    spec = doc.spec
    headers = spec.get("securityHeaders", {}).get("headers", {})
    values: list[tuple[list[str | int], object]] = [(["securityHeaders", "headers", k], v) for k, v in headers.items()]
    for directive, sources in spec.get("contentSecurityPolicy", {}).items():
        values += [(["contentSecurityPolicy", directive, i], v) for i, v in enumerate(sources)]
    return [
        PolicyError(doc.locate(path), "network.header_invalid", f"{value!r} cannot be sent as a header value")
        for path, value in values
        if not isinstance(value, str) or _FIELD_VALUE.fullmatch(value) is None
    ]


def _moment(text: str) -> dt.datetime | None:
    """An RFC 3339 date-time the schema's pattern let through, or None when the calendar
    has no such moment (a 30 February)."""
    try:
        moment = dt.datetime.fromisoformat(text.upper().replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=dt.UTC)


def build_well_known_table(doc: Document, now: float | None) -> tuple[WellKnownTable, list[PolicyError]]:
    """Render robots.txt and security.txt (RFC 9116); warn when security.txt has expired."""
    spec = doc.spec
    files: dict[str, tuple[str, str]] = {}
    errors: list[PolicyError] = []
    if "robotsTxt" in spec:
        files["robots.txt"] = ("text/plain; charset=utf-8", spec["robotsTxt"])
    security = spec.get("securityTxt")
    if security is not None:
        files[".well-known/security.txt"] = ("text/plain; charset=utf-8", _security_txt(security))
        expires, where = _moment(security["expires"]), doc.locate(["securityTxt", "expires"])
        if expires is None:
            message = f"`{security['expires']}` is not a date and time that exists"
            errors.append(PolicyError(where, "schema.format", message))
        elif now is not None and expires.timestamp() < now:
            message = f"security.txt expired at `{security['expires']}`: update `expires`"
            errors.append(PolicyError(where, "wellknown.expired", message, Severity.WARNING))
    for i, raw in enumerate(spec.get("files", [])):
        path = f".well-known/{raw['path']}"
        if path in files:
            errors.append(
                PolicyError(
                    doc.locate(["files", i, "path"]),
                    "ref.duplicate_id",
                    f"file `{path}` is defined twice",
                )
            )
        files[path] = (raw["contentType"], raw["body"])
    return WellKnownTable(bool(spec.get("enabled", True)), MappingProxyType(files)), errors


def _security_txt(spec: Mapping[str, object]) -> str:
    fields = [
        ("Contact", "contact"),
        ("Expires", "expires"),
        ("Encryption", "encryption"),
        ("Acknowledgments", "acknowledgments"),
        ("Preferred-Languages", "preferredLanguages"),
        ("Canonical", "canonical"),
        ("Policy", "policy"),
        ("Hiring", "hiring"),
    ]
    lines = []
    for label, key in fields:
        value = spec.get(key)
        if value is None:
            continue
        if key == "preferredLanguages" and isinstance(value, list):
            lines.append(f"{label}: {', '.join(value)}")
        elif isinstance(value, list):
            lines.extend(f"{label}: {item}" for item in value)
        else:
            lines.append(f"{label}: {value}")
    return "\n".join(lines) + "\n"
