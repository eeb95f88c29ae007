"""Environment overrides: documented variables set policy values, bad ones are errors."""

from __future__ import annotations

import re

import pytest

from engine.errors import PolicyErrors
from engine.policy import Source
from engine.policy.overrides import OVERRIDES
from engine.sources import read_layer
from tests.conftest import POLICIES, BuildFn


def _codes(caught: pytest.ExceptionInfo[PolicyErrors]) -> list[tuple[str, str]]:
    return [(e.where.file, e.code) for e in caught.value.errors]


def test_flags_and_numbers_are_applied(build: BuildFn) -> None:
    built = build(env={"MCPGATEWAY_ADMIN_API_ENABLED": "true", "CONTENT_MAX_RESOURCE_SIZE": "204800"})
    assert built.snapshot.access.features["adminApi"] is True
    assert built.snapshot.content.scanners["resource"].max_bytes == 204800
    assert {a.env for a in built.applied} == {"MCPGATEWAY_ADMIN_API_ENABLED", "CONTENT_MAX_RESOURCE_SIZE"}


def test_a_single_audience_replaces_the_list(build: BuildFn) -> None:
    built = build(env={"JWT_AUDIENCE": "billing-api"})
    assert built.snapshot.tokens.audience == frozenset({"billing-api"})


def test_lists_are_split_on_commas(build: BuildFn) -> None:
    from engine.decide import Content
    from engine.decide.content import inspect_content

    built = build(env={"CONTENT_PII_PATTERNS": "email, ssn"})
    content = built.snapshot.content
    assert inspect_content(content, Content("prompt", "mail a@example.com")).denial is not None
    assert inspect_content(content, Content("prompt", "card 4111 1111 1111 1111")).findings == ()


@pytest.mark.parametrize("name", ["CONTENT_PII_PATTERNS", "CONTENT_PII_DETECTION_ENABLED", "CONTENT_BLOCKED_PATTERNS"])
def test_a_blank_variable_is_an_unset_one(build: BuildFn, name: str) -> None:
    """A deployment template that leaves a variable blank changes nothing the policy says."""
    from engine.decide import Content
    from engine.decide.content import inspect_content

    built = build(env={name: " "})
    assert built.applied == ()
    content = built.snapshot.content
    assert inspect_content(content, Content("tool_result", "SSN 123-45-6789")).findings != ()


def test_an_app_domain_becomes_the_origin_browsers_send(build: BuildFn) -> None:
    built = build(env={"APP_DOMAIN": "App.Example.com:8443"})
    assert built.snapshot.network.allowed_origins == frozenset({"https://app.example.com:8443"})


def test_modes_switch(build: BuildFn) -> None:
    built = build(env={"CONTENT_PATTERN_VALIDATION_MODE": "lenient"})
    assert built.snapshot.content.pattern_mode == "lenient"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("AUTH_REQUIRED", "maybe"),
        ("CONTENT_MAX_PROMPT_SIZE", "ten"),
        ("CONTENT_PII_VALIDATION_MODE", "paranoid"),
        ("CONTENT_BLOCKED_PATTERNS", "[not json"),
        ("CONTENT_BLOCKED_PATTERNS", '{"a": 1}'),
    ],
)
def test_invalid_value_is_an_error_at_the_variable(build: BuildFn, name: str, value: str) -> None:
    with pytest.raises(PolicyErrors) as caught:
        build(env={name: value})
    assert (f"env:{name}", "override.invalid") in _codes(caught)


@pytest.mark.parametrize(
    ("name", "value", "code"),
    [
        ("CONTENT_MAX_PROMPT_SIZE", "100", "size.out_of_range"),
        ("CONTENT_PII_PATTERNS", "email, bogus", "ref.unknown_category"),
        ("ALLOWED_ORIGINS", "https://app.example.com, null", "network.origin_invalid"),
        ("ALLOWED_ORIGINS", "https://App.example.com", "network.origin_invalid"),
        ("ALLOWED_ORIGINS", "https://app.example.com/ui", "network.origin_invalid"),
    ],
)
def test_a_value_the_policy_checks_refuse_is_reported_at_the_variable(
    build: BuildFn, name: str, value: str, code: str
) -> None:
    """Not at the YAML value it replaced, which is fine and would send the reader to
    the wrong place."""
    with pytest.raises(PolicyErrors) as caught:
        build(env={name: value})
    assert _codes(caught) == [(f"env:{name}", code)]


def test_custom_patterns_are_added_and_block(build: BuildFn) -> None:
    from engine.decide import Content
    from engine.decide.content import inspect_content

    built = build(env={"CONTENT_BLOCKED_PATTERNS": '["forbidden-word-[0-9]+"]'})
    inspection = inspect_content(built.snapshot.content, Content("prompt", "say forbidden-word-42"))
    assert inspection.denial is not None
    assert [f.rule for f in inspection.findings] == ["content/custom-1"]
    assert inspection.denial[1].where.file == "env:CONTENT_BLOCKED_PATTERNS"


def test_an_override_without_its_target_is_reported(build: BuildFn) -> None:
    sizes = (POLICIES / "sizes.yaml").read_text()
    without_prompt = re.sub(r"    - context: prompt\n(      .*\n)+?(?=    - )", "", sizes)
    assert "context: prompt" not in without_prompt
    layer = [s for s in read_layer([POLICIES]) if not s.label.endswith("sizes.yaml")]
    layer.append(Source("only/sizes.yaml", without_prompt))
    from engine.policy import compile_policy
    from engine.schemas import validators

    with pytest.raises(PolicyErrors) as caught:
        compile_policy([layer], validators=validators(), env={"CONTENT_MAX_PROMPT_SIZE": "2048"})
    assert ("env:CONTENT_MAX_PROMPT_SIZE", "override.no_target") in _codes(caught)


def test_no_override_carries_a_secret() -> None:
    secretive = re.compile(r"SECRET|PASSWORD|PRIVATE|KEY|DATABASE_URL|REDIS_URL|TOKEN$")
    assert [o.env for o in OVERRIDES if secretive.search(o.env)] == []


def test_effective_policy_masks_nothing_it_does_not_hold(build: BuildFn) -> None:
    from engine.report import effective_yaml

    text = effective_yaml(build(env={"JWT_SECRET_KEY": "do-not-print-me", "AUTH_REQUIRED": "false"}))
    assert "do-not-print-me" not in text
    assert "authRequired: false" in text
