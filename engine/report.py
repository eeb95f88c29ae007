"""Render policy errors for people and for CI, and the effective policy as YAML.

Text is `file:line:col: code: message`, one per line; `github` emits workflow annotations;
`json` and `sarif` are for tools. The effective policy is the documents with every
environment override applied, each override named in a header comment. Overrides never
carry secrets: no secret-bearing variable maps onto a policy value (see `OVERRIDES`).
"""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from typing import Any

from ruamel.yaml import YAML

from engine import __version__
from engine.errors import PolicyError, Severity
from engine.policy import API_VERSION, Build

__all__ = ["effective_yaml", "format_errors"]


def format_errors(errors: Sequence[PolicyError], fmt: str) -> str:
    """Render `errors` in one of `text`, `json`, `github`, `sarif`."""
    if fmt == "json":
        return json.dumps([_as_dict(e) for e in errors], indent=2)
    if fmt == "github":
        return "\n".join(_github(e) for e in errors)
    if fmt == "sarif":
        return json.dumps(_sarif(errors), indent=2)
    count = sum(1 for e in errors if e.severity is Severity.ERROR)
    head = [f"{count} error{'s' if count != 1 else ''} occurred:"] if count else []
    return "\n".join([*head, *map(str, errors)])


def effective_yaml(build: Build) -> str:
    """The policy documents as the gateway will apply them, as one YAML stream."""
    yaml = YAML()
    yaml.default_flow_style = False
    out = io.StringIO()
    out.write(f"# effective policy {build.snapshot.version}\n")
    for applied in build.applied:
        out.write(f"# {applied.env} overrides {applied.kind} {_dotted(applied.path)}\n")
    for document in build.documents:
        out.write("---\n")
        yaml.dump(
            {
                "apiVersion": API_VERSION,
                "kind": document.kind,
                "metadata": {"name": document.name},
                "spec": document.spec,
            },
            out,
        )
    return out.getvalue()


def _dotted(path: Sequence[Any]) -> str:
    return ".".join(step if isinstance(step, str) else f"[{step[0]}={step[1]}]" for step in path)


def _as_dict(error: PolicyError) -> dict[str, Any]:
    return {
        "file": error.where.file,
        "line": error.where.line,
        "col": error.where.col,
        "code": error.code,
        "severity": str(error.severity),
        "message": error.message,
    }


def _github(error: PolicyError) -> str:
    def escape(text: str, *, prop: bool = False) -> str:
        text = text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")
        return text.replace(":", "%3A").replace(",", "%2C") if prop else text

    level = "error" if error.severity is Severity.ERROR else "warning"
    where = error.where
    return (
        f"::{level} file={escape(where.file, prop=True)},line={where.line},col={where.col},"
        f"title={escape(error.code, prop=True)}::{escape(error.message)}"
    )


def _sarif(errors: Sequence[PolicyError]) -> dict[str, Any]:
    codes = sorted({e.code for e in errors})
    return {
        "version": "2.1.0",
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "runs": [
            {
                "tool": {
                    "driver": {
                        "name": "policygate",
                        "version": __version__,
                        "rules": [{"id": code} for code in codes],
                    }
                },
                "results": [
                    {
                        "ruleId": e.code,
                        "level": "error" if e.severity is Severity.ERROR else "warning",
                        "message": {"text": e.message},
                        "locations": [
                            {
                                "physicalLocation": {
                                    "artifactLocation": {"uri": e.where.file},
                                    "region": {"startLine": e.where.line, "startColumn": e.where.col},
                                }
                            }
                        ],
                    }
                    for e in errors
                ],
            }
        ],
    }
