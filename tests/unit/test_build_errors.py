"""Errors that no single bad policy file can cause: missing kinds, encodings, the limit."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.errors import PolicyErrors
from engine.policy import Source, compile_policy
from engine.schemas import validators
from engine.sources import MissingPath, read_layer
from tests.conftest import POLICIES, BuildFn, default_layer


def _compile(*layers: list[Source]) -> None:
    compile_policy(list(layers), validators=validators())


def test_a_set_without_a_required_kind_names_the_kind() -> None:
    layer = [s for s in default_layer() if not s.label.endswith("/tokens.yaml")]
    with pytest.raises(PolicyErrors) as caught:
        _compile(layer)
    assert [(e.code, e.message) for e in caught.value.errors] == [
        ("set.missing_kind", "the policy set has no TokenRules document")
    ]


def test_a_file_that_is_not_utf8_is_reported(tmp_path: Path) -> None:
    (tmp_path / "latin1.yaml").write_bytes("name: caf\xe9\n".encode("latin-1"))
    with pytest.raises(PolicyErrors) as caught:
        read_layer([tmp_path])
    assert [(e.where.file, e.code) for e in caught.value.errors] == [(str(tmp_path / "latin1.yaml"), "file.encoding")]


def test_a_missing_path_is_not_a_policy_error() -> None:
    with pytest.raises(MissingPath):
        read_layer(["/no/such/policies"])


def test_errors_stop_at_the_limit_and_say_so() -> None:
    sizes = (POLICIES / "sizes.yaml").read_text()
    broken = [Source(f"bad/{i}.yaml", sizes.replace("name: default", f"name: s{i}")) for i in range(30)]
    with pytest.raises(PolicyErrors) as caught:
        compile_policy([default_layer(), broken], validators=validators(), error_limit=5)
    codes = [e.code for e in caught.value.errors]
    assert len(codes) == 6
    assert codes.count("errors.limit") == 1


def test_errors_are_sorted_by_place() -> None:
    bad = [Source("b.yaml", "kind: [\n"), Source("a.yaml", "kind: [\n")]
    with pytest.raises(PolicyErrors) as caught:
        _compile(default_layer(), bad)
    files = [e.where.file for e in caught.value.errors]
    assert files == sorted(files)


def test_the_gateway_reads_no_test_documents() -> None:
    with_tests = {s.label for s in read_layer([POLICIES])}
    without = {s.label for s in read_layer([POLICIES], without_tests=True)}
    assert {str(POLICIES / "visibility.yaml"), str(POLICIES / "tokens.yaml")} <= without
    assert with_tests - without == {str(p) for p in (POLICIES / "tests").glob("*.yaml")}
    assert all("kind: PolicyTest" not in s.text for s in read_layer([POLICIES], without_tests=True))


@pytest.mark.parametrize(
    "rule_kind",
    [
        "kind: ContentRules  # extra patterns",
        "{kind: ContentRules, apiVersion: policygate/v1}",
        "kind: 'ContentRules'",
        '"\\x6bind": ContentRules',
        "<<: {kind: ContentRules}",
    ],
)
def test_a_file_is_left_out_only_when_it_surely_holds_nothing_but_tests(tmp_path: Path, rule_kind: str) -> None:
    (tmp_path / "mixed.yaml").write_text(f"{rule_kind}\n---\nkind: PolicyTest\n")
    tests = "# cases of every kind\nkind: PolicyTest\n---\n{kind: 'PolicyTest', spec: {note: kinds}}\n"
    (tmp_path / "tests.yaml").write_text(tests)
    assert [Path(s.label).name for s in read_layer([tmp_path], without_tests=True)] == ["mixed.yaml"]


@pytest.mark.parametrize(
    ("spec", "code"),
    [
        ('securityHeaders: {headers: {"X-Odd\\n": "1"}}', "schema.pattern"),
        ('securityHeaders: {headers: {X-Name: "naïve"}}', "network.header_invalid"),
        ('securityHeaders: {headers: {X-Name: "a\\r\\nSet-Cookie: a=b"}}', "network.header_invalid"),
        ("contentSecurityPolicy: {default-src: [\"'self'\\n\"]}", "network.header_invalid"),
        ('cors: {allowedHeaders: ["Authorization\\n"]}', "schema.pattern"),
        ('securityHeaders: {frameOptions: "DENY\\n"}', "schema.enum"),
        ("cors: {allowedHeaders: [Bad Header]}", "schema.pattern"),
    ],
)
def test_a_header_http_cannot_carry_never_builds(build: BuildFn, spec: str, code: str) -> None:
    """Names are held by the schema's patterns (a final newline included), values when
    the table is built."""
    document = f"apiVersion: policygate/v1\nkind: Network\nmetadata: {{name: default}}\nspec:\n  {spec}\n"
    with pytest.raises(PolicyErrors) as caught:
        build([Source("bad/network.yaml", document)])
    assert [(e.code, e.where.line) for e in caught.value.errors] == [(code, 5)]


def test_a_configmap_mount_is_read_once(tmp_path: Path) -> None:
    """Kubernetes mounts each key as a link into `..data`, a link to a hidden folder that
    holds the real files: only the visible names count, or every document is defined twice."""
    real = tmp_path / "..2026_11_21_00_00_00.000000001"
    real.mkdir()
    for file in sorted(POLICIES.glob("*.yaml")):
        (real / file.name).write_text(file.read_text())
        (tmp_path / file.name).symlink_to(Path("..data") / file.name)
    (tmp_path / "..data").symlink_to(real.name)
    layer = read_layer([tmp_path], without_tests=True)
    assert sorted(Path(s.label).name for s in layer) == sorted(
        Path(s.label).name for s in read_layer([POLICIES], without_tests=True) if Path(s.label).parent == POLICIES
    )
    _compile(layer)


def test_security_txt_takes_any_rfc_3339_spelling(build: BuildFn) -> None:
    document = (
        "apiVersion: policygate/v1\nkind: WellKnown\nmetadata: {name: default}\nspec:\n"
        '  securityTxt: {contact: ["mailto:s@example.com"], expires: "2099-11-01t00:00:00.5z"}\n'
    )
    files = build([Source("wellknown.yaml", document)]).snapshot.well_known.files
    assert "Expires: 2099-11-01t00:00:00.5z" in files[".well-known/security.txt"][1]


@pytest.mark.parametrize(
    ("spec", "code"),
    [
        ("{bulkImport: " + "[" * 700 + "]" * 700 + "}", "yaml.syntax"),
        ("{bulkImport: " + "[" * 30000 + "]" * 30000 + "}", "yaml.syntax"),
        ("&spec {bulkImport: *spec}", "yaml.too_large"),
    ],
    ids=["nested past the recursion limit", "nested past the C stack", "an alias inside its own anchor"],
)
def test_a_document_too_deep_or_endless_is_a_policy_error(build: BuildFn, spec: str, code: str) -> None:
    document = f"apiVersion: policygate/v1\nkind: Features\nmetadata: {{name: default}}\nspec: {spec}\n"
    with pytest.raises(PolicyErrors) as caught:
        build([Source("features.yaml", document)])
    assert [(e.where.file, e.code) for e in caught.value.errors] == [("features.yaml", code)]
