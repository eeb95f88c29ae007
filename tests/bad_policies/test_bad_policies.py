"""Each file here is one broken policy, laid over the default set, with the exact error it
must produce on its first line: `# expect: <line>:<col> <code>`. A bad policy must never
build, and the author must be pointed at the precise place."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from engine.errors import PolicyErrors
from engine.policy import Source
from tests.conftest import ROOT, BuildFn

HERE = Path(__file__).parent
CASES = sorted(HERE.glob("*.yaml"))
EXPECT = re.compile(r"^# expect: (\d+):(\d+) ([a-z_]+\.[a-zA-Z_]+)$")


@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_bad_policy_reports_exact_location(path: Path, build: BuildFn) -> None:
    text = path.read_text()
    expected = EXPECT.match(text.splitlines()[0])
    assert expected, f"{path.name} must start with `# expect: line:col code`"
    line, col, code = int(expected[1]), int(expected[2]), expected[3]
    label = f"bad/{path.name}"
    with pytest.raises(PolicyErrors) as caught:
        build([Source(label, text)])
    found = [(e.where.file, e.where.line, e.where.col, e.code) for e in caught.value.errors]
    assert (label, line, col, code) in found, f"got {found}"


def test_every_error_code_has_a_bad_policy() -> None:
    """Codes the engine can emit for a policy file, minus those only the environment,
    the file system or a missing document can cause (tested in unit tests)."""
    source = "\n".join(p.read_text() for p in (ROOT / "engine").rglob("*.py"))
    codes = set(
        re.findall(
            r'"((?:yaml|document|set|schema|ref|route|visibility|content|size|pattern|network)\.[a-z_]+)"', source
        )
    )
    covered = {EXPECT.match(p.read_text().splitlines()[0])[3] for p in CASES}  # type: ignore[index]
    unit_tested = {"set.missing_kind", "document.no_schema"}
    assert codes - covered - unit_tested == set()
