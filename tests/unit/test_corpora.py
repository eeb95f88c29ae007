"""Detection and false-positive rates of the default rules on the corpora in tests/data.

The tuning sets (`attacks`, `benign`, `pii`) were used while writing the rules; the
validation sets were written afterwards by someone else and are only measured, never
tuned on, so their rates are the honest estimate (measured: 84% of validation attacks
blocked, 1.7% of validation benign text refused, all of it SQL documentation). The
bounds here guard against regressions.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from engine.decide import Content, Denial, Finding
from engine.decide.content import inspect_content, inspect_parts
from engine.json_texts import texts
from engine.policy import Snapshot
from tests.conftest import ROOT

DATA = ROOT / "tests" / "data"


def _rows(name: str) -> Iterator[dict[str, Any]]:
    for line in (DATA / f"{name}.jsonl").read_text().splitlines():
        yield json.loads(line)


def _judged(snapshot: Snapshot, row: dict[str, Any]) -> tuple[Denial | None, list[Finding]]:
    """What the gateway makes of a row: tool arguments arrive as a JSON object and are
    judged string by string (engine.json_texts), everything else as the text it is."""
    if row["context"] == "tool_args":
        arguments = json.loads(row["text"])
        if isinstance(arguments, dict):
            parts = inspect_parts(snapshot.content, "tool_args", texts(arguments), len(json.dumps(arguments)))
            return parts.denial, [f for found in parts.findings for f in found]
    whole = inspect_content(snapshot.content, Content(row["context"], row["text"]))
    return whole.denial, list(whole.findings)


def _blocked(snapshot: Snapshot, row: dict[str, Any]) -> bool:
    return _judged(snapshot, row)[0] is not None


def _rate(snapshot: Snapshot, name: str) -> tuple[float, list[str]]:
    rows = list(_rows(name))
    hits = [row["id"] for row in rows if _blocked(snapshot, row)]
    return len(hits) / len(rows), hits


@pytest.mark.parametrize(("name", "floor"), [("attacks", 0.99), ("validation_attacks", 0.80)])
def test_attacks_are_blocked(snapshot: Snapshot, name: str, floor: float) -> None:
    rate, _ = _rate(snapshot, name)
    assert rate >= floor, f"{name}: {rate:.1%} blocked"


@pytest.mark.parametrize(("name", "ceiling"), [("benign", 0.0), ("validation_benign", 0.02)])
def test_benign_text_passes(snapshot: Snapshot, name: str, ceiling: float) -> None:
    rate, hits = _rate(snapshot, name)
    assert rate <= ceiling, f"{name}: {rate:.1%} falsely blocked: {hits[:10]}"


def test_pii_is_found_and_lookalikes_are_not(snapshot: Snapshot) -> None:
    wrong = []
    for row in _rows("pii"):
        if any(f.pii for f in _judged(snapshot, row)[1]) != row["expect_pii"]:
            wrong.append(row["id"])
    assert wrong == []
