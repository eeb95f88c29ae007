"""Run every PolicyTest case as its own pytest item, named by where the case is written.

The default set's cases run against `policies/`; each example's cases run against
`policies/` with the example's own documents laid over it, exactly as
`policygate test --base policies examples/<name>` does.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.cases import Case, iter_cases, run_case
from engine.policy import Build, compile_policy
from engine.schemas import validators
from engine.sources import read_layer
from tests.conftest import EXAMPLES, POLICIES


def _sets() -> list[tuple[str, list[Path]]]:
    sets = [("policies", [POLICIES])]
    sets += [(f"examples/{d.name}", [POLICIES, d]) for d in sorted(EXAMPLES.iterdir()) if (d / "policies").is_dir()]
    return sets


def _build(layers: list[Path]) -> Build:
    return compile_policy([read_layer([p]) for p in layers], validators=validators())


def _collect() -> list[tuple[str, Build, Case]]:
    items = []
    for name, layers in _sets():
        built = _build(layers)
        items.extend((name, built, case) for case in iter_cases(built.tests))
    return items


ITEMS = _collect()


@pytest.mark.parametrize(("policy_set", "built", "case"), ITEMS, ids=[str(c.where) for _, _, c in ITEMS])
def test_case(policy_set: str, built: Build, case: Case) -> None:
    result = run_case(built.snapshot, case)
    assert result.passed, f"{case.note} [{policy_set}]: " + "; ".join(result.problems)


def test_every_policy_set_has_cases() -> None:
    counts = {name: 0 for name, _ in _sets()}
    for name, _, _ in ITEMS:
        counts[name] += 1
    assert all(counts.values()), counts
