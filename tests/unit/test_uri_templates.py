"""Matching a client's URI against an upstream's resource template.

Each variable stands for one or more characters of one path segment; literals match
themselves. The templates come from upstreams, so matching must not backtrack.
"""

from __future__ import annotations

import pytest

from engine.web.mcp_methods import _matches


@pytest.mark.parametrize(
    ("template", "uri", "expected"),
    [
        ("users://{id}/profile", "users://42/profile", True),
        ("users://{id}/profile", "users:///profile", False),
        ("users://{id}/profile", "users://4/2/profile", False),
        ("users://{id}/profile", "users://42/profile/", False),
        ("files://{name}.{ext}", "files://a.b.c", True),
        ("files://{name}.{ext}", "files://a.", False),
        ("files://{name}.{ext}", "files://.b", False),
        ("x://{a}{b}", "x://ab", True),
        ("x://{a}{b}", "x://a", False),
        ("x://v{a}-{b}z", "x://v1-2-3z", True),
        ("x://v{a}-{b}z", "x://v1-z", False),
        ("x://plain", "x://plain", True),
        ("x://plain", "x://plains", False),
        ("x://{a}ab{b}", "x://aab", False),
        ("x://{a}ab{b}", "x://aaba", True),
    ],
)
def test_a_variable_fills_part_of_one_segment(template: str, uri: str, expected: bool) -> None:
    assert _matches(template, uri) is expected


def test_a_template_of_many_variables_answers_at_once() -> None:
    """Ten adjacent `[^/]+` groups take minutes on a 60-character miss; this is linear."""
    assert not _matches("x://{a}{b}{c}{d}{e}{f}{g}{h}{i}{j}", "x://" + "a" * 60 + "/")
    assert _matches("x://{a}{b}{c}{d}{e}{f}{g}{h}{i}{j}", "x://" + "a" * 60)
