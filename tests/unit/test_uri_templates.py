"""Matching a client's URI against an upstream's resource template.

Each variable stands for one or more characters of one path segment; literals match
themselves. The templates come from upstreams, so matching must not backtrack.
"""

from __future__ import annotations

import pytest

from engine.uri_templates import clashes, matches


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
    assert matches(template, uri) is expected


def test_a_template_of_many_variables_answers_at_once() -> None:
    """Ten adjacent `[^/]+` groups take minutes on a 60-character miss; this is linear."""
    assert not matches("x://{a}{b}{c}{d}{e}{f}{g}{h}{i}{j}", "x://" + "a" * 60 + "/")
    assert matches("x://{a}{b}{c}{d}{e}{f}{g}{h}{i}{j}", "x://" + "a" * 60)


@pytest.mark.parametrize(
    ("uri", "template", "expected"),
    [
        ("users://42/profile", False, True),  # the template answers for it
        ("users://42/profile/x", False, False),
        ("config://app", False, True),  # the same exact URI
        ("users://{name}/profile", True, True),  # the same template but for its variable's name
        ("notes://{id}", True, True),  # the exact URI falls under it
        ("notes://{id}/{part}", True, False),
    ],
)
def test_a_uri_is_answered_by_one_resource(uri: str, template: bool, expected: bool) -> None:
    others = [("users://{id}/profile", True), ("config://app", False), ("notes://7", False)]
    assert clashes(uri, template, others) is expected
