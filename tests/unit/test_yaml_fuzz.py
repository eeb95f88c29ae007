"""Whatever text a policy file holds, the build answers with policy errors or a snapshot.

An exception of any other kind would surface as a traceback in the CLI or a failed reload
with no location, so arbitrary YAML, and arbitrary edits of a real policy, must only ever
produce `PolicyErrors`.
"""

from __future__ import annotations

import hypothesis.strategies as st
from hypothesis import HealthCheck, given, settings

from engine.errors import PolicyError, PolicyErrors
from engine.policy import Source, compile_policy
from engine.schemas import validators
from tests.conftest import POLICIES, default_layer

YAML_BITS = [
    "apiVersion: policygate/v1\n", "kind: ", "TokenRules", "SizeLimits", "ContentRules", "TeamVisibility", "Routes",
    "\nmetadata:\n  name: x\n", "spec:\n", "  ", "- ", ": ", "{", "}", "[", "]", "&a ", "*a", "<<: ",
    "!!python/object ",
    "---\n", "null", "~", "true", "1e9", "-1", "'", '"', "\t", "\n", "#", "regex: '(?<=x)'", "maxBytes: ", "?",
]  # fmt: skip
yaml_text = st.lists(st.one_of(st.sampled_from(YAML_BITS), st.text(max_size=5)), max_size=30).map("".join)

_LAYER = default_layer()
_VALIDATORS = validators()


def _build_only_policy_errors(extra: Source) -> None:
    """Any exception other than `PolicyErrors` propagates and fails the property."""
    problems: tuple[PolicyError, ...] = ()
    try:
        compile_policy([_LAYER, [extra]], validators=_VALIDATORS)
    except PolicyErrors as errors:
        problems = errors.errors
    for error in problems:
        assert error.code
        assert error.message
        assert error.where.file


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=yaml_text)
def test_arbitrary_yaml_yields_only_policy_errors(text: str) -> None:
    _build_only_policy_errors(Source("fuzz.yaml", text))


SIZES = (POLICIES / "sizes.yaml").read_text()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(position=st.integers(0, len(SIZES)), insert=st.sampled_from(YAML_BITS), cut=st.integers(0, 8))
def test_edited_real_policy_yields_only_policy_errors(position: int, insert: str, cut: int) -> None:
    _build_only_policy_errors(Source("sizes.yaml", SIZES[:position] + insert + SIZES[position + cut :]))
