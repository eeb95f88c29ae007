"""The CLI: exit codes 0 / 1 / 2, every output format, and never a traceback."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from engine.cli import main
from tests.conftest import EXAMPLES, POLICIES, ROOT

BAD = ROOT / "tests" / "bad_policies" / "schema_type.yaml"
NOW = "2026-06-01T12:00:00Z"
CLAIMS = {"sub": "dev@example.com", "exp": 1780318800, "iat": 1780311600, "jti": "x", "aud": "mcpgateway-api",
          "iss": "mcpgateway"}  # fmt: skip


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_lint_default_policies_is_clean(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "lint")
    assert code == 0
    assert out.startswith("ok: 11 documents")


@pytest.mark.parametrize("example", sorted(p.name for p in EXAMPLES.iterdir() if p.is_dir()))
def test_examples_lint_clean_and_their_cases_pass(capsys: pytest.CaptureFixture[str], example: str) -> None:
    assert run(capsys, "lint", "--base", str(POLICIES), str(EXAMPLES / example))[0] == 0
    code, out, _ = run(capsys, "test", "--base", str(POLICIES), str(EXAMPLES / example))
    assert code == 0, out
    assert out.rstrip().endswith(", 0 failed")


def test_lint_reports_file_line_col_and_fails(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "lint", "--base", str(POLICIES), str(BAD))
    assert code == 1
    expected = BAD.read_text().splitlines()[0].removeprefix("# expect: ").split()
    assert f"{BAD}:{expected[0]}: {expected[1]}: " in err


@pytest.mark.parametrize("fmt", ["json", "github", "sarif"])
def test_lint_machine_formats(capsys: pytest.CaptureFixture[str], fmt: str) -> None:
    code, out, _ = run(capsys, "lint", "--format", fmt, "--base", str(POLICIES), str(BAD))
    assert code == 1
    line = int(BAD.read_text().split()[2].split(":")[0])
    if fmt == "json":
        assert json.loads(out)[0]["line"] == line
    elif fmt == "github":
        assert out.startswith(f"::error file={BAD},line={line},")
    else:
        result = json.loads(out)["runs"][0]["results"][0]
        assert result["locations"][0]["physicalLocation"]["region"]["startLine"] == line


def test_missing_path_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "lint", "/no/such/folder")
    assert code == 2
    assert "no such file or folder" in err


def test_unknown_command_is_a_usage_error() -> None:
    with pytest.raises(SystemExit) as caught:
        main(["frobnicate"])
    assert caught.value.code == 2


def test_test_reports_a_failing_case_with_its_location(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    case = tmp_path / "wrong.yaml"
    case.write_text(
        "apiVersion: policygate/v1\nkind: PolicyTest\nmetadata: {name: wrong}\nspec:\n  cases:\n"
        f"    - note: health is not public\n      context: {{path: /health, now: '{NOW}'}}\n"
        "      expect: {allow: false}\n"
    )
    code, out, _ = run(capsys, "test", "--base", str(POLICIES), str(case))
    assert code == 1
    assert f"FAIL {case}:6:13: health is not public" in out
    assert "allow: expected `False`, got `True`" in out


def test_explain_names_the_deciding_rule_and_where(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    ctx = tmp_path / "ctx.json"
    ctx.write_text(json.dumps({"path": "/tools", "now": NOW, "token": {"header": {"alg": "none"}, "claims": CLAIMS}}))
    code, out, _ = run(capsys, "explain", str(ctx))
    decision = json.loads(out)
    assert code == 1
    assert (decision["reason"], decision["rule"]) == ("token_algorithm_forbidden", "tokens/algorithms")
    file, line, col = decision["where"].rsplit(":", 2)
    assert file.endswith("policies/tokens.yaml")
    assert (POLICIES / "tokens.yaml").read_text().splitlines()[int(line) - 1][int(col) - 1 :].startswith("[HS256")


def test_explain_allowed_shows_visibility(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    ctx = tmp_path / "ctx.json"
    user = {"email": "dev@example.com", "teams": ["a"]}
    ctx.write_text(
        json.dumps({"path": "/tools", "now": NOW, "token": {"claims": {**CLAIMS, "teams": ["a"]}}, "user": user})
    )
    code, out, _ = run(capsys, "explain", str(ctx))
    assert code == 0
    seen = json.loads(out)["visibility"]
    assert (seen["access"], seen["teams"], seen["rule"]) == ("team_and_public", ["a"], "visibility/listed-member")
    assert seen["where"].rsplit(":", 2)[0].endswith("policies/visibility.yaml")


@pytest.mark.parametrize(
    ("context", "named"),
    [
        ('{"path": "tools", "now": 1}', "path"),
        ('{"path": "/mcp"}', "now"),
        ('{"path": "/mcp", "now": 1, "user": {"teams": 5}}', "$.user.teams"),
        ('{"path": "/mcp", "now": 1, "token": {"claims": []}}', "$.token.claims"),
        ('[{"path": "/mcp"}]', "$"),
    ],
)
def test_explain_rejects_a_malformed_context(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, context: str, named: str
) -> None:
    ctx = tmp_path / "ctx.json"
    ctx.write_text(context)
    code, _, err = run(capsys, "explain", str(ctx))
    assert code == 2
    assert err.startswith("policygate: invalid context")
    assert named in err


def test_scan_exit_code_follows_the_verdict(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    bad, good = tmp_path / "bad.txt", tmp_path / "good.txt"
    bad.write_text("<script>alert(1)</script>")
    good.write_text("Please select an option, then update your profile.")
    code, out, _ = run(capsys, "scan", "--context", "resource", str(bad))
    assert code == 1
    assert "content/xss-script-tag" in out
    assert run(capsys, "scan", "--context", "resource", str(good))[0] == 0


def test_scan_a_binary_file_is_a_usage_error(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    binary = tmp_path / "blob.bin"
    binary.write_bytes(b"\xff\xfe\x00")
    assert run(capsys, "scan", "--context", "resource", str(binary))[0] == 2


def test_scan_jsonl_reports_each_line() -> None:
    lines = [
        {"id": "a", "text": "hello there", "context": "resource"},
        {"id": "b", "text": "x' OR '1'='1", "context": "tool_args"},
        {"id": "c", "text": "mail me: bob@example.com", "context": "prompt"},
    ]
    stdin = "\n".join(json.dumps(x) for x in lines) + "\nnot json\n"
    result = subprocess.run(
        [sys.executable, "-m", "engine", "scan", "--jsonl"],
        input=stdin,
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert result.returncode == 1
    assert [r.get("blocked") for r in records[:3]] == [False, True, True]
    assert records[1]["findings"][0]["rule"] == "content/sqli-tautology"
    assert records[2]["findings"][0] == {"rule": "content/pii-email", "category": "email", "start": 9, "end": 24}
    assert records[3] == {"line": 4, "error": records[3]["error"]}
    assert "Traceback" not in result.stderr


def test_compile_prints_the_summary(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "compile")
    assert code == 0
    assert "version:" in out
    assert "hyperscan database" in out
    assert "build_content" in out


def test_effective_applies_environment_and_masks_nothing_secret(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MCPGATEWAY_ADMIN_API_ENABLED", "true")
    monkeypatch.setenv("JWT_SECRET_KEY", "super-secret-value-1234567890-abcdef")
    code, out, _ = run(capsys, "effective")
    assert code == 0
    assert "adminApi: true" in out
    assert "super-secret-value" not in out


def test_a_bad_override_fails_with_its_name(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AUTH_REQUIRED", "perhaps")
    code, _, err = run(capsys, "compile")
    assert code == 1
    assert "env:AUTH_REQUIRED" in err
    assert "override.invalid" in err


def test_version_and_module_entry_point() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "engine", "--version"], capture_output=True, text=True, cwd=ROOT, check=True
    )
    assert result.stdout.startswith("policygate ")
