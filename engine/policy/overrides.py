"""The environment variables of the reference gateway, as overrides of policy values.

An operator moving over from ContextForge keeps their `AUTH_REQUIRED=true` or
`CONTENT_MAX_PROMPT_SIZE=20480`: each documented variable maps onto one place in one policy
document. Values are checked and converted with Cerberus, the overridden document is then
checked against its schema like any other, and the effective policy can be printed.
Variables that carry secrets (keys, passwords, database URLs) are deliberately absent:
those belong to the process settings and never enter a policy. The environment itself is
read by the shell and passed in as a mapping; this module does no I/O.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Final

from engine.errors import Location, PolicyError
from engine.policy.load import Document, JSONValue
from engine.validation import Validator

__all__ = ["ALGORITHMS", "OVERRIDES", "Applied", "Override", "apply_overrides", "custom_patterns"]

Step = str | tuple[str, str]
"""A key in a mapping, or `(field, value)`: the list item whose `field` equals `value`."""


@dataclass(frozen=True, slots=True)
class Override:
    """One variable: the document kind and path it sets, and how its text becomes a value."""

    env: str
    kind: str
    path: tuple[Step, ...]
    rule: Mapping[str, Any]
    convert: Callable[[Any], JSONValue] = lambda value: value


@dataclass(frozen=True, slots=True)
class Applied:
    """An override that took effect, for the version hash and the effective policy."""

    env: str
    kind: str
    path: tuple[Step, ...]
    value: JSONValue

    @property
    def where(self) -> Location:
        return Location(f"env:{self.env}")


def _boolean(text: Any) -> bool:
    words = {
        "true": True,
        "1": True,
        "yes": True,
        "on": True,
        "false": False,
        "0": False,
        "no": False,
        "off": False,
    }
    return words[str(text).strip().lower()]


def _integer(text: Any) -> int:
    return int(str(text).strip())


def _string_list(text: Any) -> list[str]:
    """A JSON array of strings, or a comma-separated list as the reference accepts."""
    stripped = str(text).strip()
    if stripped.startswith("["):
        value = json.loads(stripped)
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ValueError("not a list of strings")
        return value
    return [part.strip() for part in stripped.split(",") if part.strip()]


def _text(text: Any) -> str:
    """Multi-line values arrive with literal `\\n` escapes, as in the reference's examples."""
    value = str(text).replace("\\n", "\n")
    return value if value.endswith("\n") else value + "\n"


_SECURITY_TXT_FIELDS: Final = {
    "contact": "contact",
    "expires": "expires",
    "preferred-languages": "preferredLanguages",
    "encryption": "encryption",
    "acknowledgments": "acknowledgments",
    "policy": "policy",
    "hiring": "hiring",
    "canonical": "canonical",
}


def _security_txt(text: Any) -> dict[str, Any]:
    """Parse RFC 9116 `Field: value` lines into the structured `securityTxt` spec."""
    parsed: dict[str, Any] = {}
    for line in _text(text).splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        name, sep, value = line.partition(":")
        key = _SECURITY_TXT_FIELDS.get(name.strip().lower())
        if not sep or key is None:
            raise ValueError(f"unknown security.txt field `{name.strip()}`")
        value = value.strip()
        if key in ("contact", "canonical"):
            parsed.setdefault(key, []).append(value)
        elif key == "preferredLanguages":
            parsed[key] = [v.strip() for v in value.split(",") if v.strip()]
        else:
            parsed[key] = value
    return parsed


_BOOL: Final = {"type": "boolean", "coerce": _boolean}
_INT: Final = {"type": "integer", "coerce": _integer, "min": 1}
_LIST: Final = {"type": "list", "coerce": _string_list, "schema": {"type": "string"}}
_MODE: Final = {"type": "string", "allowed": ["strict", "moderate", "lenient"]}
ALGORITHMS: Final = (
    "HS256",
    "HS384",
    "HS512",
    "RS256",
    "RS384",
    "RS512",
    "ES256",
    "ES384",
    "ES512",
    "PS256",
    "PS384",
    "PS512",
)
"""Every JWS algorithm a policy or a setting may name; `none` is deliberately absent."""


def _flag(env: str, kind: str, *path: Step) -> Override:
    return Override(env, kind, path, _BOOL)


OVERRIDES: Final[tuple[Override, ...]] = (
    _flag("AUTH_REQUIRED", "TokenRules", "authRequired"),
    Override(
        "JWT_ALGORITHM",
        "TokenRules",
        ("algorithms",),
        {"type": "string", "allowed": ALGORITHMS},
        lambda v: [v],
    ),
    Override(
        "JWT_AUDIENCE",
        "TokenRules",
        ("audience", "accepted"),
        {"type": "string", "empty": False},
        lambda v: [v],
    ),
    Override(
        "JWT_ISSUER",
        "TokenRules",
        ("issuer", "accepted"),
        {"type": "string", "empty": False},
        lambda v: [v],
    ),
    _flag("JWT_AUDIENCE_VERIFICATION", "TokenRules", "audience", "verify"),
    _flag("JWT_ISSUER_VERIFICATION", "TokenRules", "issuer", "verify"),
    _flag("REQUIRE_TOKEN_EXPIRATION", "TokenRules", "requireExpiration"),
    _flag("REQUIRE_JTI", "TokenRules", "requireJti"),
    Override(
        "ENVIRONMENT",
        "TokenRules",
        ("environment", "name"),
        {"type": "string", "regex": "^[a-z][a-z0-9_-]*$"},
    ),
    _flag("EMBED_ENVIRONMENT_IN_TOKENS", "TokenRules", "environment", "embed"),
    _flag("VALIDATE_TOKEN_ENVIRONMENT", "TokenRules", "environment", "validate"),
    _flag("API_ALLOW_BASIC_AUTH", "TokenRules", "basicAuth", "api"),
    _flag("DOCS_ALLOW_BASIC_AUTH", "TokenRules", "basicAuth", "docs"),
    _flag("TRUST_PROXY_AUTH", "TokenRules", "proxyAuth", "trusted"),
    Override(
        "PROXY_USER_HEADER",
        "TokenRules",
        ("proxyAuth", "userHeader"),
        {"type": "string", "regex": "^[A-Za-z0-9-]+$"},
    ),
    Override(
        "CONTENT_MAX_RESOURCE_SIZE",
        "SizeLimits",
        ("limits", ("context", "resource"), "maxBytes"),
        _INT,
    ),
    Override("CONTENT_MAX_PROMPT_SIZE", "SizeLimits", ("limits", ("context", "prompt"), "maxBytes"), _INT),
    _flag("CONTENT_PII_DETECTION_ENABLED", "ContentRules", "piiDetection", "enabled"),
    Override("CONTENT_PII_VALIDATION_MODE", "ContentRules", ("piiDetection", "mode"), _MODE),
    Override("CONTENT_PII_PATTERNS", "ContentRules", ("piiDetection", "categories"), _LIST),
    _flag("CONTENT_PATTERN_DETECTION_ENABLED", "ContentRules", "patternDetection", "enabled"),
    Override("CONTENT_PATTERN_VALIDATION_MODE", "ContentRules", ("patternDetection", "mode"), _MODE),
    _flag("CORS_ENABLED", "Network", "cors", "enabled"),
    Override(
        "APP_DOMAIN",
        "Network",
        ("cors", "allowedOrigins"),
        {"type": "string", "regex": r"^[A-Za-z0-9.-]+(:\d+)?$"},
        lambda v: [f"https://{v.lower()}"],
    ),
    Override("ALLOWED_ORIGINS", "Network", ("cors", "allowedOrigins"), _LIST),
    _flag("CORS_ALLOW_CREDENTIALS", "Network", "cors", "allowCredentials"),
    _flag("SECURITY_HEADERS_ENABLED", "Network", "securityHeaders", "enabled"),
    Override(
        "X_FRAME_OPTIONS",
        "Network",
        ("securityHeaders", "frameOptions"),
        {"type": "string", "allowed": ["DENY", "SAMEORIGIN"]},
    ),
    _flag("SECURE_COOKIES", "Network", "cookies", "secure"),
    _flag("UPSTREAMS_ALLOW_INTERNAL_NETWORKS", "Network", "upstreams", "allowPrivateNetworks"),
    Override(
        "COOKIE_SAMESITE",
        "Network",
        ("cookies", "sameSite"),
        {"type": "string", "allowed": ["strict", "lax", "none"]},
    ),
    _flag("MCPGATEWAY_UI_ENABLED", "Features", "ui"),
    _flag("MCPGATEWAY_ADMIN_API_ENABLED", "Features", "adminApi"),
    _flag("MCPGATEWAY_BULK_IMPORT_ENABLED", "Features", "bulkImport"),
    _flag("MCPGATEWAY_A2A_ENABLED", "Features", "a2a"),
    _flag("PUBLIC_REGISTRATION_ENABLED", "Features", "publicRegistration"),
    _flag("ALLOW_TEAM_CREATION", "Features", "teamCreation"),
    _flag("ALLOW_TEAM_JOIN_REQUESTS", "Features", "teamJoinRequests"),
    _flag("ALLOW_TEAM_INVITATIONS", "Features", "teamInvitations"),
    _flag("WELL_KNOWN_ENABLED", "WellKnown", "enabled"),
    Override("WELL_KNOWN_ROBOTS_TXT", "WellKnown", ("robotsTxt",), {"type": "string"}, _text),
    Override(
        "WELL_KNOWN_SECURITY_TXT",
        "WellKnown",
        ("securityTxt",),
        {"type": "dict", "coerce": _security_txt},
    ),
)

_CUSTOM_PATTERNS: Final = "CONTENT_BLOCKED_PATTERNS"


def _given(env: Mapping[str, str], name: str) -> bool:
    """Whether `name` is set to something: a blank variable (empty, or spaces only) is an
    unset one, since a deployment template that leaves one blank must not replace what
    the policy says with nothing."""
    return bool(env.get(name, "").strip())


def custom_patterns(env: Mapping[str, str]) -> tuple[list[tuple[str, Location]], list[PolicyError]]:
    """Extra attack regexes from `CONTENT_BLOCKED_PATTERNS` (a JSON array of strings)."""
    if not _given(env, _CUSTOM_PATTERNS):
        return [], []
    where = Location(f"env:{_CUSTOM_PATTERNS}")
    try:
        patterns = json.loads(env[_CUSTOM_PATTERNS])
    except json.JSONDecodeError as err:
        return [], [PolicyError(where, "override.invalid", f"`{_CUSTOM_PATTERNS}` is not JSON: {err.msg}")]
    if not isinstance(patterns, list) or not all(isinstance(p, str) and p for p in patterns):
        return [], [
            PolicyError(
                where,
                "override.invalid",
                f"`{_CUSTOM_PATTERNS}` must be a JSON array of regex strings",
            )
        ]
    return [(p, where) for p in patterns], []


def apply_overrides(
    documents: Sequence[Document], env: Mapping[str, str]
) -> tuple[list[Document], list[Applied], list[PolicyError]]:
    """Return the documents with every set variable applied, in table order.

    Later entries win where two variables set the same value (`ALLOWED_ORIGINS` over
    `APP_DOMAIN`). A value that fails its rule is an error and changes nothing.
    """
    present = [o for o in OVERRIDES if _given(env, o.env)]
    if not present:
        return list(documents), [], []
    validator = Validator({o.env: dict(o.rule) for o in present}, allow_unknown=False)
    errors: list[PolicyError] = []
    if not validator.validate({o.env: env[o.env] for o in present}):
        for name, problems in sorted(validator.errors.items()):
            errors.append(PolicyError(Location(f"env:{name}"), "override.invalid", f"`{name}`: {_first(problems)}"))
        return list(documents), [], errors
    values = validator.document
    result = list(documents)
    applied: list[Applied] = []
    for override in present:
        value = override.convert(values[override.env])
        target = _target(result, override)
        if target is None:
            errors.append(
                PolicyError(
                    Location(f"env:{override.env}"),
                    "override.no_target",
                    f"`{override.env}` sets a value in {override.kind}, but no such document is loaded",
                )
            )
            continue
        index, document = target
        spec = copy.deepcopy(document.spec)
        where = _assign(spec, override.path, value)
        if where is None:
            errors.append(
                PolicyError(
                    Location(f"env:{override.env}"),
                    "override.no_target",
                    f"`{override.env}` sets `{_dotted(override.path)}`, "
                    f"which {override.kind} `{document.name}` does not have",
                )
            )
            continue
        overridden = {**document.overridden, ("spec", *where): override.env}
        result[index] = replace(document, spec=spec, overridden=overridden)
        applied.append(Applied(override.env, override.kind, override.path, value))
    return result, applied, errors


def _target(documents: Sequence[Document], override: Override) -> tuple[int, Document] | None:
    """The document an override applies to; among several, the one that has the setting."""
    candidates = [(i, d) for i, d in enumerate(documents) if d.kind == override.kind]
    head = override.path[0]
    for index, document in candidates:
        if isinstance(head, str) and head in document.spec:
            return index, document
    return candidates[0] if candidates else None


def _assign(spec: Any, path: Sequence[Step], value: JSONValue) -> tuple[str | int, ...] | None:
    """Set `value` at `path`; the path it was set at, with list items as indices, or None
    when the document has no such place."""
    node = spec
    where: list[str | int] = []
    for step in path[:-1]:
        if isinstance(step, tuple):
            field, wanted = step
            found = (
                next((i for i, item in enumerate(node) if item.get(field) == wanted), None)
                if isinstance(node, list)
                else None
            )
            if found is None:
                return None
            node = node[found]
            where.append(found)
        else:
            node = node.setdefault(step, {})
            where.append(step)
    last = path[-1]
    if not isinstance(last, str) or not isinstance(node, dict):
        return None
    node[last] = value
    return (*where, last)


def _dotted(path: Sequence[Step]) -> str:
    return ".".join(step if isinstance(step, str) else f"[{step[0]}={step[1]}]" for step in path)


def _first(problems: Any) -> str:
    while isinstance(problems, list | dict):
        problems = problems[0] if isinstance(problems, list) else next(iter(problems.values()))
    return str(problems)
