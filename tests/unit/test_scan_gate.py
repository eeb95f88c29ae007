"""The literal gate may skip the full scan only where no rule could match.

A text without any gate string is answered after the gate pass alone, so a gate string
missing from a rule's set would silently let that rule's matches through. The findings
with the gate must therefore equal the findings of the full pass, for every policy set
the project ships and every text we have, and for generated texts too.
"""

from __future__ import annotations

import dataclasses
import json

import hypothesis.strategies as st
import pytest
from hypothesis import HealthCheck, given, settings

from engine.decide.content import CONTEXTS, scan
from engine.policy import Build, compile_policy
from engine.schemas import validators
from engine.sources import read_layer
from tests.conftest import EXAMPLES, ROOT, default_layer
from tests.unit.test_content_scanner import FRAGMENTS

SETS = ["default", *sorted(p.name for p in EXAMPLES.iterdir() if (p / "policies").is_dir())]
TEXTS = [
    json.loads(line)["text"]
    for path in sorted((ROOT / "tests" / "data").glob("*.jsonl"))
    for line in path.read_text().splitlines()
]


@pytest.fixture(scope="module", params=SETS)
def policy_set(request: pytest.FixtureRequest) -> Build:
    layers = [default_layer()]
    if request.param != "default":
        layers.append(read_layer([EXAMPLES / request.param / "policies"]))
    return compile_policy(layers, validators=validators())


def _both(built: Build, context: str, text: str) -> tuple[object, object]:
    scanner = built.snapshot.content.scanners[context]
    return scan(scanner, text), scan(dataclasses.replace(scanner, gate=None), text)


def test_every_shipped_set_has_a_gate(policy_set: Build) -> None:
    assert all(s.gate is not None for s in policy_set.snapshot.content.scanners.values())


def test_the_gate_changes_no_finding_on_the_corpora(policy_set: Build) -> None:
    for context in CONTEXTS:
        for text in TEXTS:
            gated, full = _both(policy_set, context, text)
            assert gated == full, (context, text)


def test_plain_prose_is_answered_by_the_gate_alone(policy_set: Build) -> None:
    """The reason the gate exists: text of letters, spaces and commas skips the full pass."""
    scanner = policy_set.snapshot.content.scanners["resource"]
    prose = "The gateway forwards each request, and records a line for every decision. " * 20
    assert scan(dataclasses.replace(scanner, database=_Exploding()), prose) == ()


class _Exploding:
    def scan(self, *args: object, **kwargs: object) -> None:
        raise AssertionError("the full pass ran")


texts = st.lists(
    st.one_of(
        st.sampled_from(FRAGMENTS), st.text(alphabet=st.characters(min_codepoint=9, max_codepoint=126), max_size=6)
    ),
    max_size=12,
).map("".join)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=texts)
def test_the_gate_changes_no_finding_on_generated_text(default_build: Build, text: str) -> None:
    for context in CONTEXTS:
        gated, full = _both(default_build, context, text)
        assert gated == full, (context, text)
