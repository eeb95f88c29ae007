"""Resource URI templates (RFC 6570 level 1, as MCP upstreams use them): which URIs a
template names, and whether two resources would answer for the same URI.

A read goes to an exact URI first and to the first template that matches it otherwise,
so the catalog keeps every URI answered by one resource: a URI no other resource's
template covers, a template no other resource's URI falls under or template repeats.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Final

__all__ = ["clashes", "matches"]

_VARIABLE: Final = re.compile(r"\{[^}/]+\}")


def matches(template: str, uri: str) -> bool:
    """Whether `uri` fills `template`, each variable with one or more characters of one
    path segment.

    Templates come from upstreams and URIs from clients, so this runs in time linear in
    their product: a regex of adjacent `[^/]+` groups backtracks exponentially.
    """
    patterns, segments = template.split("/"), uri.split("/")
    return len(patterns) == len(segments) and all(map(_segment_matches, patterns, segments))


def _segment_matches(pattern: str, segment: str) -> bool:
    literals = _VARIABLE.split(pattern)
    if len(literals) == 1:
        return segment == pattern
    first, *between, last = literals
    end = len(segment) - len(last)
    if end < len(first) or not segment.startswith(first) or not segment.endswith(last):
        return False
    # Each literal as far left as it fits leaves the most room for the rest; the variable
    # before it takes at least one character.
    position = len(first)
    for literal in between:
        found = segment.find(literal, position + 1, end)
        if found < 0:
            return False
        position = found + len(literal)
    return end - position >= 1


def clashes(uri: str, template: bool, others: Iterable[tuple[str, bool]]) -> bool:
    """Whether a resource at `uri` (a template when `template`) would answer for a URI
    one of `others` (each a URI and whether it is a template) answers for.

    Two templates clash when they differ only in their variables' names; templates that
    overlap otherwise (`a://{x}` and `{s}://1`) are not found.
    """
    shape = _VARIABLE.sub("{}", uri) if template else None
    for other, other_template in others:
        if template and other_template and _VARIABLE.sub("{}", other) == shape:
            return True
        if template and not other_template and matches(uri, other):
            return True
        if not template and (other == uri if not other_template else matches(other, uri)):
            return True
    return False
