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
from typing import Any, Final

import nh3
from quart import g

from engine.decide import Action, Content, Reason
from engine.decide.content import inspect_content, redact
from engine.json_bytes import through_text
from engine.policy import Snapshot
from engine.web.guard import mask_email
from engine.web.responses import ApiError

__all__ = ["ContentRefused", "check_json", "check_text", "sanitize_markup"]

log = logging.getLogger("policygate.content")

_MARKUP: Final = frozenset({"text/html", "text/markdown", "application/xhtml+xml"})


class ContentRefused(ApiError):
    """413 or 422: the text broke a size limit or a content rule."""


def check_text(context: str, text: str, *, field: str) -> str:
    """`text` as it may be stored or forwarded (redacted where the policy says so).

    Raises:
        ContentRefused: the size limit or a blocking rule refuses it.
    """
    snapshot: Snapshot = g.snapshot
    inspection = inspect_content(snapshot.content, Content(context, text))
    denial = inspection.denial
    if denial is not None:
        reason, rule, message = denial
        status = 413 if reason is Reason.CONTENT_TOO_LARGE else 422
        _violation(snapshot, context, field, str(reason), rule.id, "block", category=None)
        raise ContentRefused(status, str(reason), f"`{field}`: {message}")
    for finding in inspection.findings:
        _violation(snapshot, context, field, "content_pii" if finding.pii else "content_pattern",
                   finding.rule, str(finding.action), category=finding.category)  # fmt: skip
    if any(f.action is Action.REDACT for f in inspection.findings):
        return redact(snapshot.content, text, inspection.findings)
    return text


def check_json(context: str, value: Any, *, field: str) -> Any:
    """A JSON value checked as its text; parsed again only when redaction changed it.

    Raises:
        ContentRefused: the text is refused, or its redaction broke the JSON around it
            (a redaction template with quotes or backslashes can).
    """
    try:
        return through_text(value, lambda text: check_text(context, text, field=field))
    except ValueError as err:
        message = f"`{field}`: the redacted value is no longer valid JSON"
        raise ContentRefused(422, "content_blocked", message) from err


def sanitize_markup(mime_type: str, text: str) -> str:
    """HTML and markdown lose scripts, handlers and dangerous URLs before they are served."""
    if mime_type.split(";")[0].strip().lower() in _MARKUP:
        return nh3.clean(text)
    return text


def _violation(
    snapshot: Snapshot, context: str, field: str, kind: str, rule: str, action: str, *, category: str | None
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
        "policy_version": snapshot.version[:12],
    }
    log.warning(json.dumps(record))
